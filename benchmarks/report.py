"""The JSON report the stand-alone bench scripts share: which machine measured, and where the numbers go.

Every number in docs/benchmarks.md is quoted with the machine it was taken on, so each script records the same
machine facts and writes its report the same way (the file for the docs, stdout for the person running it).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine_facts(**extra: Any) -> dict[str, Any]:
    """Platform, processor and CPU count, plus whatever the script adds (the torch device, for instance)."""
    return {"platform": platform.platform(), "processor": processor_name(), "cpus": os.cpu_count(), **extra}


def processor_name() -> str:
    """The CPU's model name: engine results follow the CPU's floating-point kernels, so a report names the CPU.

    `platform.processor()` is empty on most Linux systems; there the name comes from /proc/cpuinfo.
    """
    name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return name


def write_report(report: dict[str, Any], out: str | Path, shown: dict[str, Any] | None = None) -> None:
    """Write `report` to `out` (folders created) and print `shown` (default: the whole report)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report if shown is None else shown, indent=2))
