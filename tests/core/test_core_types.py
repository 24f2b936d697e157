"""Geometry conversions and hierarchy files: the shared types every other module relies on."""

from __future__ import annotations

import numpy as np
import pytest

from CUTSSegmentationLib.condense.hierarchy import Hierarchy
from CUTSSegmentationLib.core.errors import InputError
from CUTSSegmentationLib.core.imagedata import Geometry, ImageData, voxel_size_zyx
from CUTSSegmentationLib.core.progress import (
    PROGRESS_LINE_PREFIX,
    LineProgress,
    ProgressUpdate,
    parse_progress_line,
)


def oblique_geometry() -> Geometry:
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Geometry(spacing=(0.5, 0.7, 2.0), origin=(10.0, -20.0, 5.0), direction=tuple(rot.reshape(-1)))


def test_index_lps_ras_round_trip() -> None:
    geo = oblique_geometry()
    idx = np.array([3.0, 7.0, 2.0])
    assert np.allclose(geo.lps_to_index(geo.index_to_lps(idx)), idx)
    assert np.allclose(geo.ras_to_index(geo.index_to_ras(idx)), idx)
    ras = geo.index_to_ras(idx)
    lps = geo.index_to_lps(idx)
    assert np.allclose(ras, [-lps[0], -lps[1], lps[2]])


def test_ijk_to_ras_matrix_round_trip() -> None:
    geo = oblique_geometry()
    m = geo.ijk_to_ras_matrix()
    idx = np.array([1.0, 2.0, 3.0, 1.0])
    assert np.allclose((m @ idx)[:3], geo.index_to_ras(idx[:3]))
    back = Geometry.from_ijk_to_ras_matrix(m)
    assert np.allclose(back.spacing, geo.spacing)
    assert np.allclose(back.origin, geo.origin)
    assert np.allclose(back.direction, geo.direction)


def test_voxel_size_follows_the_array_axes_and_rejects_a_spacing_that_does_not_fit() -> None:
    """Every spacing-aware step (distances, boxes, growth, metrics) reads one conversion: (x, y, z) mm to the
    array's (z, y, x) axes; a 2D array ignores z; a wrong length or a non-positive size is the user's error."""
    assert voxel_size_zyx((0.9, 0.8, 6.5), 3) == (6.5, 0.8, 0.9)
    assert voxel_size_zyx((0.9, 0.8, 6.5), 2) == (0.8, 0.9)
    assert voxel_size_zyx(None, 2) == (1.0, 1.0)
    for bad, ndim in (((1.0, 1.0), 3), ((1.0, 1.0, 1.0, 1.0), 3), ((1.0, 0.0, 2.0), 3), ((1.0, float("nan")), 2)):
        with pytest.raises(InputError):
            voxel_size_zyx(bad, ndim)


def test_imagedata_shapes() -> None:
    img = ImageData(np.zeros((1, 4, 5, 3), np.float32), is_2d=True)
    assert img.spatial_shape == (4, 5) and img.channels == 3 and img.n_pixels == 20
    vol = ImageData(np.zeros((2, 4, 5, 1), np.float32))
    assert vol.spatial_shape == (2, 4, 5)
    with pytest.raises(ValueError):
        ImageData(np.zeros((2, 4, 5, 1), np.float32), is_2d=True)


def _tiny_hierarchy() -> Hierarchy:
    atom_map = np.array([[0, 0, 1], [2, 2, 3]], dtype=np.uint16)
    merge_tree = np.array([[0, 1, 2, 3], [0, 0, 2, 2], [0, 0, 0, 0]], dtype=np.uint16)
    levels = np.stack([merge_tree[s][atom_map] + 1 for s in (1, 2)]).astype(np.uint16)
    return Hierarchy(
        levels=levels,
        n_clusters=[2, 1],
        level_steps=[1, 2],
        atom_map=atom_map,
        merge_tree=merge_tree,
        persistent=levels[0],
        geometry=oblique_geometry(),
        info={"method": "test"},
    )


def test_hierarchy_save_load(tmp_path) -> None:
    h = _tiny_hierarchy()
    path = h.save(tmp_path / "h.npz")
    back = Hierarchy.load(path)
    assert back.levels.dtype == np.uint16
    assert np.array_equal(back.levels, h.levels)
    assert np.array_equal(back.step_map(1), h.levels[0])
    assert back.geometry == h.geometry
    assert back.info["method"] == "test"
    assert [p.name for p in tmp_path.iterdir()] == ["h.npz"]


def test_hierarchy_load_rejects_foreign_file(tmp_path) -> None:
    bad = tmp_path / "x.npz"
    np.savez(bad, levels=np.zeros((1, 2, 2)))
    with pytest.raises(InputError):
        Hierarchy.load(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        Hierarchy.load(tmp_path / "junk.npz")
    with pytest.raises(InputError):
        Hierarchy.load(tmp_path / "missing.npz")


def test_progress_lines_round_trip(capsys) -> None:
    import sys

    LineProgress(stream=sys.stdout, min_interval=0)("train", 0.25, "loss 0.1")
    out = capsys.readouterr().out
    assert parse_progress_line(out) == ("train", 0.25, "loss 0.1", None, None)
    assert parse_progress_line("hello world") is None
    assert parse_progress_line(f"{PROGRESS_LINE_PREFIX} train") is None
    assert parse_progress_line(f"{PROGRESS_LINE_PREFIX} train half") is None


def test_progress_lines_with_the_whole_job_round_trip() -> None:
    import io

    stream = io.StringIO()
    line_progress = LineProgress(stream=stream, min_interval=0)
    line_progress.on_update(ProgressUpdate("embed", 0.5, "slice 3/6", overall=0.4213, eta_s=95.4))
    line_progress.on_update(ProgressUpdate("done", 1.0, "", overall=0.9))
    line_progress.on_update(ProgressUpdate("write", 1.0, "eta=3 is part of the message", overall=1.0, eta_s=0.0))
    first, second, third = stream.getvalue().splitlines()
    assert parse_progress_line(first) == ("embed", 0.5, "slice 3/6", 0.4213, 95.0)
    assert parse_progress_line(second) == ("done", 1.0, "", 0.9, None)
    assert parse_progress_line(third) == ("write", 1.0, "eta=3 is part of the message", 1.0, 0.0)
    # A message that merely starts like a field stays a message in an old-format line.
    assert parse_progress_line(f"{PROGRESS_LINE_PREFIX} train 0.5000 overall=high") == (
        "train",
        0.5,
        "overall=high",
        None,
        None,
    )
