"""Qt-free, MRML-free helpers of the CUTSSegmentation module: background engine jobs and the machine they run on.

- `runner`: `EngineJob` runs `python -m CUTSSegmentationLib ...` as a child process with streamed progress
  lines and a Cancel that kills the process tree and deletes the job's temporary folder.
- `environment`: the Python to run the engine with, GPUs, device choice, missing packages.
- `job_outputs`: the encoder and hierarchy a finished job wrote.
- `engine`: the engine names the module uses, imported in one place.

A package, not files beside CUTSSegmentation.py: Slicer's scripted-module factory takes every .py at the
top of a module folder for a module of its own. Nothing here imports qt, ctk or slicer.
"""

from .environment import (
    BUNDLED_WITH_SLICER,
    DEVICE_CHOICES,
    TORCH_REQUIREMENT,
    Accelerators,
    choose_device,
    detect_accelerators,
    device_label,
    find_python_executable,
    missing_requirements,
    read_requirements,
)
from .job_outputs import card_path, copy_model_file, load_job_hierarchy, load_job_mask
from .runner import (
    EngineJob,
    JobResult,
    closer_look_args,
    engine_directory,
    kill_process_tree,
    segment_args,
    train_args,
)

__all__ = [
    "BUNDLED_WITH_SLICER",
    "DEVICE_CHOICES",
    "TORCH_REQUIREMENT",
    "Accelerators",
    "EngineJob",
    "JobResult",
    "card_path",
    "choose_device",
    "closer_look_args",
    "copy_model_file",
    "detect_accelerators",
    "device_label",
    "engine_directory",
    "find_python_executable",
    "kill_process_tree",
    "load_job_hierarchy",
    "load_job_mask",
    "missing_requirements",
    "read_requirements",
    "segment_args",
    "train_args",
]
