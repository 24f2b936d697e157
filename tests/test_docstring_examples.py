"""The Examples sections of the public API's docstrings run and print what they say (those not marked SKIP)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "CUTSSegmentationLib.core.distances",
    "CUTSSegmentationLib.core.job_plan",
    "CUTSSegmentationLib.core.label_dtypes",
    "CUTSSegmentationLib.core.overall_progress",
    "CUTSSegmentationLib.core.progress",
    "CUTSSegmentationLib.condense.boundary",
    "CUTSSegmentationLib.condense.edge_growth",
    "CUTSSegmentationLib.condense.edge_snap",
    "CUTSSegmentationLib.condense.hierarchy",
    "CUTSSegmentationLib.condense.structures",
    "CUTSSegmentationLib.condense.zoom",
    "CUTSSegmentationLib.io.validation",
    "CUTSSegmentationLib.learn.objective",
    "CUTSSegmentationLib.learn.objective_registry",
    "CUTSSegmentationLib.learn.training",
    "CUTSSegmentationLib.methods.registry",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
