"""CUTSSegmentationMRML.volume_files: the job's input file and the batch script's input, with their geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
from CUTSSegmentationJobs.engine import InputError, image_reader
from CUTSSegmentationMRML import image_to_volume_node, volume_node_to_image
from CUTSSegmentationMRML.volume_files import read_volume_file, write_volume_file
from slicer_testdata import image_data


def test_volume_files_round_trip_for_the_child_process(tmp_path: Path, scene_and_volume):
    read_image = image_reader().read_image
    scene, volume = scene_and_volume
    path = write_volume_file(volume, tmp_path / "job" / "input.nrrd")
    on_disk = read_image(path)
    in_scene = volume_node_to_image(volume)
    np.testing.assert_array_equal(on_disk.array, in_scene.array)
    np.testing.assert_allclose(
        on_disk.geometry.ijk_to_ras_matrix(),
        in_scene.geometry.ijk_to_ras_matrix(),
        atol=1e-6,
    )

    other_scene = slicer.vtkMRMLScene()  # kept referenced: a scene that is freed takes its storage nodes along
    loaded = read_volume_file(other_scene, path)
    assert loaded.IsA("vtkMRMLScalarVolumeNode") and loaded.GetStorageNode() is not None
    np.testing.assert_array_equal(volume_node_to_image(loaded).array, in_scene.array)

    rgb = image_data(np.random.default_rng(1).integers(0, 255, (1, 16, 18, 3)), is_2d=True)
    vector_node = image_to_volume_node(scene, rgb)
    back = read_image(write_volume_file(vector_node, tmp_path / "rgb.nrrd"))
    assert back.channels == 3 and back.is_2d
    with pytest.raises(InputError, match="not found"):
        read_volume_file(scene, tmp_path / "missing.nrrd")
