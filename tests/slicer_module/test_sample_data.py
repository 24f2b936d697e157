"""The module's sample data: the shipped file, the arguments given to Slicer's Sample Data module, the credit.

Slicer's own SampleData.py is run over these arguments by the conformance script (registration, the file://
download with its SHA-256 check); here the same path is followed with urllib and slicer-core's real MRML.
"""

from __future__ import annotations

import ast
import hashlib
import urllib.request
from pathlib import Path

import numpy as np
import slicer
from CUTSSegmentationModuleLib.sample_data import (
    SAMPLE_FILE,
    SAMPLE_NAME,
    SAMPLE_SHA256,
    register_sample_data,
    sample_data_folder,
    sample_data_source,
)
from CUTSSegmentationMRML import volume_node_to_image
from CUTSSegmentationMRML.volume_files import read_volume_file
from PIL import Image
from slicer_testdata import MODULE_DIR

#: Shipped inside the extension package: kept small.
MAX_SAMPLE_BYTES = 300_000


def test_the_sample_is_a_small_real_volume_with_its_licence():
    folder = sample_data_folder(MODULE_DIR)
    volume_file = folder / SAMPLE_FILE
    assert 0 < volume_file.stat().st_size <= MAX_SAMPLE_BYTES
    assert hashlib.sha256(volume_file.read_bytes()).hexdigest() == SAMPLE_SHA256
    licence = (folder / "LICENSE-CUTSSpineT2.txt").read_text()
    assert "MIT License" in licence and "NeuroPoly" in licence
    with Image.open(folder / "CUTSSpineT2.png") as thumbnail:
        assert max(thumbnail.size) <= 256


def test_the_module_credits_the_sample_and_registers_it_after_startup():
    tree = ast.parse((MODULE_DIR / "CUTSSegmentation.py").read_text())
    source = ast.unparse(tree)
    acknowledgement = next(
        ast.unparse(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "self.parent.acknowledgementText"
    )
    for word in ("CUTSSpineT2", "Spinal Cord Toolbox", "NeuroPoly", "MIT"):
        assert word in acknowledgement
    registration = "slicer.app.connect('startupCompleted()', lambda: register_sample_data(here))"
    assert registration in source


def test_registration_hands_the_source_to_the_sample_data_logic():
    registered = []

    class SampleDataLogic:  # the one static method of SampleData.SampleDataLogic that is called
        @staticmethod
        def registerCustomSampleDataSource(**arguments):
            registered.append(arguments)

    register_sample_data(MODULE_DIR, SampleDataLogic)
    assert registered == [sample_data_source(MODULE_DIR)]


def test_the_registered_source_downloads_and_loads_as_slicer_would(tmp_path: Path):
    source = sample_data_source(MODULE_DIR)
    assert source["sampleName"] == SAMPLE_NAME and source["nodeNames"] == [SAMPLE_NAME]
    assert all(len(source[key]) == 1 for key in ("uris", "fileNames", "nodeNames", "loadFileTypes", "checksums"))
    assert Path(source["thumbnailFileName"]).is_file()
    algorithm, digest = source["checksums"][0].split(":")
    # What SampleDataLogic.downloadFile does: urllib into the cache folder, then the checksum.
    cached = tmp_path / source["fileNames"][0]
    urllib.request.urlretrieve(source["uris"][0], str(cached))
    assert algorithm == "SHA256" and hashlib.sha256(cached.read_bytes()).hexdigest() == digest

    scene = slicer.vtkMRMLScene()
    volume = read_volume_file(scene, cached, name=SAMPLE_NAME)
    image = volume_node_to_image(volume)
    assert volume.GetName() == SAMPLE_NAME and image.array.shape[:3] == (52, 55, 60)
    assert np.ptp(image.array) > 100  # a real MRI, not an empty or constant file
