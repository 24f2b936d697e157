"""The click's level follows the image's edges: on a real MRI (cervical spine, expert spinal-cord masks).

Hierarchies are built here from the expert mask (the cord, the cord leaking into its CSF, everything), so the
chain under the click is known; what is tested is which member the engine keeps, with and without the image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from CUTSSegmentationLib.condense.boundary import CONTRAST_MARGIN, boundary_contrast, shell_around
from CUTSSegmentationLib.condense.structures import seed_chain, sharpest_level, structure_at_seed
from CUTSSegmentationLib.core.errors import InputError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from volume_cases import read_array, volumes_dir  # noqa: E402
from volume_engine import innermost_point  # noqa: E402

sys.path.remove(str(REPO / "benchmarks"))

IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


@pytest.fixture(scope="module", params=["t2", "t1"])
def spine(request) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """(image, cord mask, click (x, y, z) at the cord's innermost voxel) of one spine MRI sequence."""
    root = volumes_dir() / "spine"
    if not (root / f"{request.param}.nii.gz").is_file():
        pytest.fail(f"3D volumes not found at {root.parent} (set CUTS_VOLUMES_DIR)")
    image, spacing = read_array(root / f"{request.param}.nii.gz")
    labels, _ = read_array(root / f"{request.param}_cord_label.nii.gz")
    cord = labels == 1
    return image.astype(np.float32), cord, innermost_point(cord, spacing)


def _levels(*regions: np.ndarray) -> np.ndarray:
    """Nested levels: each region labelled 1, the rest 2, then one level of everything."""
    maps = [np.where(region, 1, 2) for region in regions] + [np.ones(regions[0].shape, dtype=int)]
    return np.stack(maps).astype(np.uint16)


@pytest.mark.parametrize("leak_voxels", [1, 2, 3])
def test_a_cord_leaking_into_its_csf_is_kept_at_its_edge(spine, leak_voxels: int) -> None:
    image, cord, click = spine
    leak = ndi.binary_dilation(cord, IN_PLANE, iterations=leak_voxels)
    levels = _levels(cord, leak)
    assert int(leak.sum()) < 2.5 * int(cord.sum())  # the leak is no salient growth: sizes keep it
    assert structure_at_seed(levels, click).level == 1
    kept = structure_at_seed(levels, click, image=image)
    assert kept.level == 0 and np.array_equal(kept.mask, structure_at_seed(levels, click, level=0).mask)
    assert abs(kept.voxels - int(cord.sum())) <= 2  # the cord (cavities filled), not the leak
    assert boundary_contrast(cord, image) > CONTRAST_MARGIN * boundary_contrast(leak, image)


def test_a_core_inside_the_cord_does_not_replace_the_cord(spine) -> None:
    """A finer member whose shell is the structure itself is not sharper: the size rule's choice stands."""
    image, cord, click = spine
    core = ndi.binary_erosion(cord, IN_PLANE)
    assert core[click[2], click[1], click[0]]
    levels = _levels(core, cord)
    chain = seed_chain(levels, (click[2], click[1], click[0]))
    assert chain.chosen_level(total=cord.size) == 1
    assert sharpest_level(levels, chain, 1, image) == 1


def test_without_edges_the_sizes_decide(spine) -> None:
    _image, cord, click = spine
    leak = ndi.binary_dilation(cord, IN_PLANE, iterations=2)
    flat = np.full(cord.shape, 100.0, dtype=np.float32)
    assert structure_at_seed(_levels(cord, leak), click, image=flat).level == 1


def test_an_image_of_another_grid_is_refused(spine) -> None:
    image, cord, click = spine
    with pytest.raises(InputError, match="grid"):
        structure_at_seed(_levels(cord, cord), click, image=image[:-1])


def test_cuts_binarize_reads_the_edges_of_the_recorded_image(tmp_path: Path, capsys) -> None:
    """`cuts binarize` reads the input the hierarchy records (or --image); without one it says that the
    level follows region sizes alone, and keeps the leak."""
    from CUTSSegmentationLib.cli import main
    from CUTSSegmentationLib.condense.hierarchy import Hierarchy
    from CUTSSegmentationLib.io.reading import read_image

    path = volumes_dir() / "spine" / "t2.nii.gz"
    image = read_image(path)
    labels, spacing = read_array(volumes_dir() / "spine" / "t2_cord_label.nii.gz")
    cord = labels == 1
    levels = _levels(cord, ndi.binary_dilation(cord, IN_PLANE, iterations=2))
    hierarchy = Hierarchy(
        levels=levels,
        n_clusters=np.array([2, 2, 1]),
        level_steps=np.array([0, 1, 2]),
        atom_map=(levels[0] - 1).astype(np.uint32),
        merge_tree=np.array([[0, 1], [0, 1], [0, 0]], dtype=np.uint32),
        geometry=image.geometry,
        is_2d=False,
        info={"source": str(path)},
    )
    hierarchy.save(tmp_path / "hierarchy.npz")
    x, y, z = innermost_point(cord, spacing)
    args = ["binarize", str(tmp_path / "hierarchy.npz"), "--seed", f"{x},{y},{z}", "--closer", "never"]

    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "edge.nrrd")]) == 0
    assert "level 0" in capsys.readouterr().err
    edge, _ = read_array(tmp_path / "edge.nrrd")
    assert abs(int(edge.astype(bool).sum()) - int(cord.sum())) <= 2

    hierarchy.info["source"] = str(tmp_path / "moved.nii.gz")  # the recorded input is gone
    hierarchy.save(tmp_path / "hierarchy.npz")
    assert main([*args, "--out", str(tmp_path / "sizes.nrrd")]) == 0
    err = capsys.readouterr().err
    assert "region sizes alone" in err and "level 1" in err
    assert main([*args, "--image", str(path), "--out", str(tmp_path / "given.nrrd")]) == 0
    assert np.array_equal(read_array(tmp_path / "given.nrrd")[0], edge)
    assert main([*args, "--image", str(volumes_dir() / "spine" / "t1.nii.gz"), "--out", str(tmp_path / "x.nrrd")]) == 2
    assert "grid" in capsys.readouterr().err


@pytest.mark.parametrize("shell_voxels", [1, 2, 4])
def test_the_shell_is_scipy_s_iterated_dilation(spine, shell_voxels: int) -> None:
    """The shell by shifted ORs equals scipy's dilation with every neighbour, iterated: around the cord, around
    a region touching the image's border, around one voxel in a corner, in 3D and in one slice."""
    _, cord, _ = spine
    border = np.zeros_like(cord)
    border[:3, :, :5] = True
    corner = np.zeros_like(cord)
    corner[-1, -1, -1] = True
    for region in (cord, border, corner, cord[cord.shape[0] // 2]):
        full = ndi.generate_binary_structure(region.ndim, region.ndim)
        expected = ndi.binary_dilation(region, full, iterations=shell_voxels) & ~region
        np.testing.assert_array_equal(shell_around(region, shell_voxels), expected)
