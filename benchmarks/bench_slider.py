"""Granularity-slider step: one hierarchy level pushed into a segmentation node, 256 x 256 x 128 volume.

Measures `push_level_to_segmentation` (what the module does on every slider move; the hierarchy is cached, so
nothing is recomputed) against the real MRML scene of PyPI slicer-core (no Slicer application here, no
rendering): each level of a nested synthetic hierarchy (2 .. 64 clusters) replaces the segments of one
segmentation node in turn, coarse to fine and back, as a user scrolling the slider would.

    python benchmarks/bench_slider.py [--shape 128,256,256] [--out benchmarks/slider.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "CUTSSegmentation"))
sys.path.insert(0, str(REPO / "benchmarks"))

from report import machine_facts, write_report  # noqa: E402


def nested_levels(shape: tuple[int, int, int], counts: list[int], seed: int = 0) -> np.ndarray:
    """Levels (finest first) of a nested hierarchy: random blob atoms merged by a random tree."""
    rng = np.random.default_rng(seed)
    n_atoms = max(counts)
    # atoms: nearest of n_atoms random centres on a coarse grid, upsampled (blob-shaped regions)
    coarse = tuple(max(1, s // 8) for s in shape)
    centres = rng.random((n_atoms, 3)) * np.array(coarse)
    grid = np.stack(np.meshgrid(*[np.arange(c) + 0.5 for c in coarse], indexing="ij"), -1).reshape(-1, 3)
    nearest = np.argmin(((grid[:, None, :] - centres[None]) ** 2).sum(-1), axis=1).reshape(coarse)
    atoms = np.kron(nearest, np.ones((8, 8, 8), dtype=np.int64))[: shape[0], : shape[1], : shape[2]]
    levels = []
    ids = np.arange(n_atoms)
    for count in sorted(counts, reverse=True):
        while len(np.unique(ids)) > count:
            a, b = rng.choice(np.unique(ids), 2, replace=False)
            ids[ids == b] = a
        _, dense = np.unique(ids, return_inverse=True)
        levels.append((dense[atoms] + 1).astype(np.uint16))
    return np.stack(levels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="128,256,256", help="Z,Y,X (default 128,256,256)")
    parser.add_argument("--out", default="benchmarks/slider.json")
    args = parser.parse_args()

    import slicer
    from CUTSSegmentationMRML import image_to_volume_node, push_level_to_segmentation

    from CUTSSegmentationLib.core.imagedata import Geometry, ImageData

    shape = tuple(int(v) for v in args.shape.split(","))
    counts = [64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2]
    levels = nested_levels(shape, counts)
    scene = slicer.vtkMRMLScene()
    image = ImageData(np.zeros(shape + (1,), np.float32), geometry=Geometry(spacing=(0.8, 0.8, 1.5)), is_2d=False)
    volume = image_to_volume_node(scene, image, "input")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    times = []
    order = list(range(len(levels) - 1, -1, -1)) + list(range(1, len(levels)))  # coarse -> fine -> coarse
    for k in order:
        t0 = time.perf_counter()
        push_level_to_segmentation(levels[k], seg, volume)
        times.append((int(len(np.unique(levels[k]))), time.perf_counter() - t0))
        assert seg.GetSegmentation().GetNumberOfSegments() == times[-1][0]
    secs = np.array([t for _, t in times])
    report = {
        "machine": machine_facts(),
        "shape_zyx": list(shape),
        "steps": len(times),
        "seconds_per_step_mean": float(secs.mean()),
        "seconds_per_step_max": float(secs.max()),
        "seconds_by_clusters": {str(c): round(t, 4) for c, t in times},
    }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
