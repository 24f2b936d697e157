"""The module's sample data in Slicer's Sample Data module: a small real MRI shipped with the extension.

The volume is a file of the extension (Resources/SampleData), so the sample loads offline: Slicer's Sample
Data logic "downloads" it from its file:// address into the cache (urllib reads local files), checks its
SHA-256 and loads it as a volume. CUTSSpineT2: a cervical spine T2-weighted MRI, 60 x 55 x 52 voxels of
1 mm, from the Spinal Cord Toolbox's test data (NeuroPoly), MIT licence
(Resources/SampleData/LICENSE-CUTSSpineT2.txt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE_CATEGORY = "CUTS Segmentation"
SAMPLE_NAME = "CUTSSpineT2"
SAMPLE_FILE = "CUTSSpineT2.nii.gz"
SAMPLE_THUMBNAIL = "CUTSSpineT2.png"
SAMPLE_SHA256 = "15cde5cdc5e56ad4f7d5fef698b317864c9bd68c0f72d2b3022c9fae6d11d977"


def sample_data_folder(module_dir: str | Path) -> Path:
    """Where the sample files are, inside the module folder."""
    return Path(module_dir) / "Resources" / "SampleData"


def sample_data_source(module_dir: str | Path) -> dict[str, Any]:
    """Keyword arguments of SampleDataLogic.registerCustomSampleDataSource (Slicer 5.8 and later)."""
    folder = sample_data_folder(module_dir)
    return {
        "category": SAMPLE_CATEGORY,
        "sampleName": SAMPLE_NAME,
        "uris": [(folder / SAMPLE_FILE).resolve().as_uri()],
        "fileNames": [SAMPLE_FILE],
        "nodeNames": [SAMPLE_NAME],
        "thumbnailFileName": str(folder / SAMPLE_THUMBNAIL),
        "loadFileTypes": ["VolumeFile"],
        "checksums": [f"SHA256:{SAMPLE_SHA256}"],
    }


def register_sample_data(module_dir: str | Path, sample_data_logic: Any = None) -> None:
    """Register the sample with Slicer's Sample Data module (`SampleData.SampleDataLogic` unless given).

    Called once the application has started: the Sample Data module is loaded by then.
    """
    if sample_data_logic is None:
        import SampleData  # Slicer's Sample Data module: only in the application

        sample_data_logic = SampleData.SampleDataLogic
    sample_data_logic.registerCustomSampleDataSource(**sample_data_source(module_dir))
