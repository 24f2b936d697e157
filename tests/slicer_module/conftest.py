"""Shared setup of the Slicer module's tests: the module folder on sys.path, a scene with an oblique volume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "CUTSSegmentation"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # the module's packages, as Slicer's module path puts them


@pytest.fixture()
def scene_and_volume():
    """A slicer-core scene holding a 4 x 20 x 24 volume with an oblique, anisotropic geometry."""
    import numpy as np
    import slicer
    from CUTSSegmentationMRML import image_to_volume_node
    from slicer_testdata import image_data, oblique_geometry

    scene = slicer.vtkMRMLScene()
    rng = np.random.default_rng(0)
    image = image_data(rng.integers(0, 200, size=(4, 20, 24, 1)), oblique_geometry())
    return scene, image_to_volume_node(scene, image, name="input")
