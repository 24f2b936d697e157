"""A rough memory budget for a job, checked before pixels are loaded so a huge input fails in a second.

See docs/architecture.md (inputs and outputs) for why the estimate counts what it counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import ResourceError

#: Rough number of hierarchy levels whose uint16 label maps a job keeps in memory.
EXPECTED_LEVELS = 30
#: Slices embedded at once (the float16 embedding buffer and float32 activations scale with this).
SLICE_BATCH = 4
#: float32 activation maps of width `embed_dim` the encoder holds per slice while embedding.
ACTIVATION_MAPS = 3


def estimate_job_bytes(shape_zyx: Sequence[int], channels: int, embed_dim: int = 128) -> int:
    """Rough peak memory of a CUTS job on an image of `shape_zyx` x `channels`.

    Counted (why each term exists): the float32 image twice (as read and normalised for the encoder); the
    per-slice-batch float16 embedding output plus float32 encoder activations (embeddings are produced slice
    by slice, never for the whole volume at once); ~30 uint16 label maps (the hierarchy levels) plus one
    int64 atom map. It is an order-of-magnitude guard against hopeless inputs, not an exact budget.
    """
    z, y, x = (int(s) for s in shape_zyx)
    n_voxels = z * y * x
    slice_pixels = y * x
    image = 2 * n_voxels * int(channels) * 4
    batch = min(z, SLICE_BATCH) * slice_pixels * int(embed_dim) * (2 + 4 * ACTIVATION_MAPS)
    labels = EXPECTED_LEVELS * n_voxels * 2 + n_voxels * 8
    return int(image + batch + labels)


def _meminfo_available() -> Optional[int]:
    """MemAvailable from /proc/meminfo in bytes (Linux), None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> Optional[int]:
    """Memory left under a cgroup v2 limit (containers), None when there is no limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _sysconf_available() -> Optional[int]:
    """Free physical pages x page size (POSIX fallback when /proc/meminfo is missing)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def available_memory_bytes() -> Optional[int]:
    """Memory this process can still use, or None when the platform does not tell (then no check is done)."""
    first = _meminfo_available()
    if first is None:
        first = _sysconf_available()
    candidates = [v for v in (first, _cgroup_available()) if v is not None]
    return min(candidates) if candidates else None


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def check_fits_in_memory(
    shape_zyx: Sequence[int],
    channels: int,
    available_bytes: Optional[int] = None,
    name: str = "image",
    embed_dim: int = 128,
) -> int:
    """Raise `ResourceError` when the job on this shape would not fit in memory; return the estimate.

    `available_bytes` defaults to what the machine reports now; tests pass a small number. When the
    platform reports nothing the check is skipped (better to try than to refuse blindly).
    """
    needed = estimate_job_bytes(shape_zyx, channels, embed_dim)
    if available_bytes is None:
        available_bytes = available_memory_bytes()
    if available_bytes is not None and needed > available_bytes:
        shape = "x".join(str(int(s)) for s in shape_zyx)
        raise ResourceError(
            f"{name}: too large for memory: a {shape} (ZxYxX) x {channels}-channel job needs about "
            f"{_gib(needed)} but only {_gib(available_bytes)} is available; crop or downsample it first"
        )
    return needed
