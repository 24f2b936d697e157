"""CUTSSegmentationJobs.job_outputs: the encoder and hierarchy a finished job leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from CUTSSegmentationJobs import card_path, copy_model_file, load_job_hierarchy
from CUTSSegmentationJobs.engine import InputError
from slicer_testdata import three_level_hierarchy


def test_copy_model_file_takes_the_card_along(tmp_path: Path):
    source = tmp_path / "job" / "model.safetensors"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    card_path(source).write_text('{"channels": 1}')
    saved = copy_model_file(source, tmp_path / "keep" / "mine")
    assert saved == tmp_path / "keep" / "mine.safetensors" and saved.read_bytes() == b"weights"
    assert (tmp_path / "keep" / "mine.json").read_text() == '{"channels": 1}'
    with pytest.raises(InputError, match="not found"):
        copy_model_file(tmp_path / "nope.safetensors", tmp_path / "x.safetensors")


def test_load_job_hierarchy_reads_what_the_job_wrote(tmp_path: Path):
    with pytest.raises(InputError, match="wrote no hierarchy"):
        load_job_hierarchy(tmp_path)
    hierarchy = three_level_hierarchy()
    hierarchy.save(tmp_path / "hierarchy.npz")
    loaded = load_job_hierarchy(tmp_path)
    assert loaded.n_levels == 3 and list(loaded.n_clusters) == [8, 4, 2]
