"""Choosing where the encoder runs: CUDA, Apple MPS, or the CPU.

`resolve_device("auto")` prefers CUDA, then MPS, then the CPU. Asking explicitly for a device this machine
does not have is a user-fixable problem (`CUTSError`, one line), not a torch traceback.
"""

from __future__ import annotations

from typing import Union

import torch

from .errors import CUTSError

DeviceLike = Union[str, torch.device, None]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: DeviceLike = "auto") -> torch.device:
    """ "auto" | "cpu" | "cuda" | "cuda:N" | "mps" (or a torch.device) -> a usable `torch.device`.

    "auto" (or None) picks CUDA if available, else MPS if available, else the CPU. An explicit "cuda"/"mps"
    that this machine cannot provide raises `CUTSError` with a hint instead of failing later inside torch.
    """
    if isinstance(name, torch.device):
        name = str(name)
    key = (name or "auto").strip().lower()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "gpu":
        key = "cuda"
    if key.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CUTSError(
                "device 'cuda' was requested but no CUDA GPU is usable here (CPU-only torch build or no driver); "
                "use device 'auto' or 'cpu'"
            )
        try:
            device = torch.device(key)
        except RuntimeError as exc:
            raise CUTSError(f"invalid device name {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
        index = device.index if device.index is not None else torch.cuda.current_device()
        count = torch.cuda.device_count()
        if index >= count:
            raise CUTSError(f"device {name!r} does not exist: this machine has {count} CUDA device(s)")
        return torch.device("cuda", index)
    if key == "mps":
        if not _mps_available():
            raise CUTSError("device 'mps' was requested but Apple MPS is not available here; use 'auto' or 'cpu'")
        return torch.device("mps")
    raise CUTSError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)")


def describe_device(device: DeviceLike) -> str:
    """One human-readable line, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)", "mps (Apple GPU)", "cpu (2 threads)"."""
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        try:
            name = torch.cuda.get_device_name(index)
        except Exception:  # pragma: no cover - driver oddities
            name = "CUDA GPU"
        return f"cuda:{index} ({name})"
    if dev.type == "mps":
        return "mps (Apple GPU)"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


def is_accelerator(device: torch.device) -> bool:
    """True for CUDA and MPS: they get the larger training defaults (more epochs, whole 128x128 crops)."""
    return device.type in ("cuda", "mps")
