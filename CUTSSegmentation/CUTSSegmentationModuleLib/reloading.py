"""Reload of the module's packages: Slicer's Reload re-reads the module file only, not the packages it imports."""

from __future__ import annotations

import sys
from collections.abc import Iterable

#: The packages of the module (and its engine) whose edits a Reload picks up.
MODULE_PACKAGES = (
    "CUTSSegmentationJobs",
    "CUTSSegmentationMRML",
    "CUTSSegmentationModuleLib",
    "CUTSSegmentationLib",
)


def forget_packages(packages: Iterable[str] = MODULE_PACKAGES) -> list[str]:
    """Drop the packages and their submodules from `sys.modules`, so the next import reads them from disk.

    Returns the names dropped. Objects made before (a running job, a cached hierarchy) keep working with
    the code they were made by.
    """
    packages = tuple(packages)
    dropped = [name for name in sys.modules if name in packages or name.startswith(tuple(p + "." for p in packages))]
    for name in dropped:
        del sys.modules[name]
    return dropped
