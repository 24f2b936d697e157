"""The files a segmented input gets: hierarchy.npz, persistent.nrrd, segmentation.seg.nrrd, levels.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.progress import ProgressCallback, no_progress
from .montage import save_montage
from .segnrrd import write_seg_nrrd
from .writing import write_label_image

#: The files `write_segmentation_outputs` writes into its folder.
SEGMENTATION_OUTPUTS = ("hierarchy.npz", "persistent.nrrd", "segmentation.seg.nrrd", "levels.png")


def write_segmentation_outputs(hierarchy, image, folder: Path, progress: ProgressCallback = no_progress) -> list[Path]:
    """hierarchy.npz, persistent.nrrd, segmentation.seg.nrrd and levels.png for one segmented input."""
    folder.mkdir(parents=True, exist_ok=True)
    progress("write", 0.0, f"writing {len(SEGMENTATION_OUTPUTS)} files")
    written = [hierarchy.save(folder / "hierarchy.npz")]
    progress("write", 0.25, "hierarchy.npz")
    persistent = hierarchy.persistent if hierarchy.persistent is not None else hierarchy.levels[-1]
    written.append(write_label_image(persistent, hierarchy.geometry, folder / "persistent.nrrd", hierarchy.is_2d))
    progress("write", 0.5, "persistent.nrrd")
    present = [int(v) for v in np.unique(persistent) if v != 0]
    names = {v: f"Structure {v}" for v in present}
    written.append(
        write_seg_nrrd(
            persistent, hierarchy.geometry, folder / "segmentation.seg.nrrd", names=names, is_2d=hierarchy.is_2d
        )
    )
    progress("write", 0.75, "segmentation.seg.nrrd")
    written.append(save_montage(hierarchy, folder / "levels.png", image=image.array))
    progress("write", 1.0, "levels.png")
    return written
