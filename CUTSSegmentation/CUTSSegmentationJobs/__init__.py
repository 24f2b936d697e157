"""Qt-free helpers of the CUTSSegmentation module: background engine jobs, MRML operations, environment checks.

Why a package and not files beside CUTSSegmentation.py: Slicer's scripted-module factory treats every .py
at the top of a module folder as a module of its own and logs an error for each that has no module class,
so helper code goes into a package (as in Slicer's own `<Module>Lib` packages). The name differs from the
engine's `CUTSSegmentationLib`, which is installed beside it.

- `runner`: `EngineJob` runs `python -m CUTSSegmentationLib ...` as a child process with streamed progress
  lines and a Cancel that kills the process tree and deletes the job's temporary folder.
- `operations`: what the module logic does to MRML nodes (levels -> segmentation, seed -> one structure,
  volume files for the child process, in-process segmentation for the console and batch use).
- `environment`: the Python to run the engine with, GPU names, device fallback, missing packages.

Nothing here imports qt, ctk or slicer.app, so CI tests it with plain Python and PyPI slicer-core.
"""

from .environment import (
    DEVICE_CHOICES,
    choose_device,
    detect_gpu_names,
    device_label,
    find_python_executable,
    missing_requirements,
    read_requirements,
)
from .runner import EngineJob, JobResult, engine_directory, kill_process_tree, segment_args, train_args

__all__ = [
    "DEVICE_CHOICES",
    "EngineJob",
    "JobResult",
    "choose_device",
    "detect_gpu_names",
    "device_label",
    "engine_directory",
    "find_python_executable",
    "kill_process_tree",
    "missing_requirements",
    "read_requirements",
    "segment_args",
    "train_args",
]
