"""The 3D benchmark's cases: which scan, which structure of its reference mask, which dataset.

A case is one structure a clinician would click in one scan. Its inputs are a list of co-registered volumes
(the first defines the grid; single-sequence cases have one), its reference is `label == value` (any of
several values for a tumour core, `label > 0` for a whole tumour). The data live in `../shared/data/volumes`
next to the repository, or where `$CUTS_VOLUMES_DIR` points. Cases of the "sanity" group have a pseudo-reference
(TotalSegmentator's own output): they are reported apart and left out of every mean.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]


def volumes_dir() -> Path:
    """The data folder: `$CUTS_VOLUMES_DIR`, else `../shared/data/volumes` beside the repository."""
    env = os.environ.get("CUTS_VOLUMES_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "volumes"


@dataclass(frozen=True)
class Case:
    """One structure in one scan. `label_value` None means "every nonzero label" (whole tumour), a tuple "any
    of these labels" (tumour core)."""

    name: str
    dataset: str
    inputs: tuple[str, ...]  #: volume files relative to the data folder; the first defines the grid
    label: str
    label_value: Optional[Union[int, tuple[int, ...]]]
    structure: str
    group: str = "expert"  #: "expert", "sanity" (pseudo-reference) or "multi-sequence"; only "expert" is averaged
    notes: str = field(default="", compare=False)
    #: The input the baselines see: the sequence a sceptic would threshold or grow for this structure.
    baseline_input: int = 0

    def paths(self, root: Path) -> list[Path]:
        return [root / p for p in self.inputs]

    @property
    def volume_key(self) -> str:
        """Cases with the same inputs share one engine run and one set of baseline label maps."""
        return "+".join(self.inputs)


def _brats(patient: str, sequences: tuple[str, ...] = ("flair",)) -> Case:
    """The whole tumour of one glioma; several sequences make a two-channel case of its own dataset and group."""
    several = len(sequences) > 1
    return Case(
        f"brats-{patient}-{'+'.join(sequences)}-wt",
        "brats-" + "+".join(sequences) if several else "brats",
        tuple(f"brats/{patient}/{s}.nii.gz" for s in sequences),
        f"brats/{patient}/label.nii.gz",
        None,
        "whole tumour (label > 0)",
        group="multi-sequence" if several else "expert",
    )


def _brats_core(patient: str) -> Case:
    """The tumour core (necrosis, non-enhancing and enhancing tumour: BraTS labels 1, 3, 4) of a glioma on FLAIR
    and contrast T1 as two channels: the structure the contrast draws (baselines on the contrast T1)."""
    return Case(
        f"brats-{patient}-flair+t1c-tc",
        "brats-flair+t1c",
        (f"brats/{patient}/flair.nii.gz", f"brats/{patient}/t1c.nii.gz"),
        f"brats/{patient}/label.nii.gz",
        (1, 3, 4),
        "tumour core (labels 1, 3, 4)",
        group="multi-sequence",
        baseline_input=1,
    )


def _lung(value: int, structure: str, short: str) -> Case:
    return Case(
        f"lung1-001-ct-{short}", "lung", ("lung/LUNG1-001_ct.nii.gz",), "lung/LUNG1-001_label.nii.gz", value, structure
    )


def _sarcoma(modality: str) -> Case:
    return Case(
        f"sarcoma-sts001-{modality.replace('_', '')}-gtv",
        "sarcoma",
        (f"sarcoma/STS_001/{modality}/image.nii.gz",),
        f"sarcoma/STS_001/{modality}/label.nii.gz",
        1,
        "GTV",
    )


CASES: tuple[Case, ...] = (
    _brats("pat0001"),
    _brats("pat0002"),
    _brats("pat0003"),
    _sarcoma("ct"),
    _sarcoma("mr_t1"),
    _sarcoma("pet"),
    _lung(4, "GTV", "gtv"),
    _lung(3, "spinal cord", "cord"),
    _lung(1, "left lung", "lung-left"),
    _lung(2, "right lung", "lung-right"),
    Case("spleen2-ct-spleen", "spleen", ("spleen/spleen2_ct.nii.gz",), "spleen/spleen2_label.nii.gz", 1, "spleen"),
    Case("spine-t2-cord", "spine", ("spine/t2.nii.gz",), "spine/t2_cord_label.nii.gz", 1, "spinal cord"),
    Case("spine-t1-cord", "spine", ("spine/t1.nii.gz",), "spine/t1_cord_label.nii.gz", 1, "spinal cord"),
    Case(
        "totalseg-ct-liver",
        "totalseg",
        ("totalseg/example_ct_sm.nii.gz",),
        "totalseg/example_seg.nii.gz",
        5,
        "liver",
        group="sanity",
    ),
    Case(
        "totalseg-ct-spleen",
        "totalseg",
        ("totalseg/example_ct_sm.nii.gz",),
        "totalseg/example_seg.nii.gz",
        1,
        "spleen",
        group="sanity",
    ),
)

#: Several sequences on one grid, segmented as the channels of one image and scored beside the single-sequence
#: runs: the whole tumour (baselines on FLAIR, as the single-sequence case's) and, on the same runs, the tumour
#: core the contrast draws (baselines on the contrast T1). Reported apart from the single-sequence mean. Sarcoma
#: CT + PET are on different grids and would need resampling: not listed.
MULTI_SEQUENCE_CASES: tuple[Case, ...] = tuple(
    case for p in ("pat0001", "pat0002", "pat0003") for case in (_brats(p, ("flair", "t1c")), _brats_core(p))
)

#: Every case the benchmark runs by default.
ALL_CASES: tuple[Case, ...] = CASES + MULTI_SEQUENCE_CASES


def select_cases(patterns: Optional[Sequence[str]], cases: Sequence[Case] = CASES) -> list[Case]:
    """Cases whose name contains any of `patterns` (all cases when none given)."""
    if not patterns:
        return list(cases)
    return [c for c in cases if any(p in c.name for p in patterns)]


@dataclass
class Volume:
    """One scan as arrays: `image` (Z, Y, X) float32 of the first input, all `channels`, spacing (x, y, z)."""

    image: np.ndarray
    channels: list[np.ndarray]
    spacing: tuple[float, float, float]
    paths: list[Path]


def read_array(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Pixels (Z, Y, X) and spacing (x, y, z) of a scalar volume, as SimpleITK reads them."""
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), tuple(float(s) for s in image.GetSpacing())


def load_volume(case: Case, root: Path) -> Volume:
    """The case's input volumes as float32 arrays on the first one's grid (other grids raise ValueError)."""
    channels, spacing = [], None
    for path in case.paths(root):
        array, sp = read_array(path)
        if spacing is None:
            spacing, shape = sp, array.shape
        elif array.shape != shape or not np.allclose(sp, spacing):
            raise ValueError(f"{path} is not on the grid of {case.inputs[0]}: resample it first")
        channels.append(array.astype(np.float32, copy=False))
    return Volume(channels[0], channels, spacing, case.paths(root))


def load_reference(case: Case, root: Path) -> np.ndarray:
    """The structure's bool mask (Z, Y, X)."""
    labels, _ = read_array(root / case.label)
    if case.label_value is None:
        return labels > 0
    return np.isin(labels, np.atleast_1d(case.label_value))
