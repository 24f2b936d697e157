"""What the machine offers the engine: the Python to run it with, GPUs, device choice, missing packages.

Kept apart from the widget so that it is testable here and cheap in Slicer: nothing in this module
imports torch (importing torch into Slicer's own process costs seconds and hundreds of MB just to ask
for a GPU name; the engine's child process imports it instead).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

#: Device choices offered by the module panel (the engine also knows "mps" and "cuda:N").
DEVICE_CHOICES = ("auto", "cpu", "cuda")

#: pip requirement -> import name, for the packages the engine needs besides torch.
IMPORT_NAMES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "scikit-image": "skimage",
    "SimpleITK": "SimpleITK",
    "safetensors": "safetensors",
    "torch": "torch",
}

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(?:([<>=!~]=?)\s*([0-9][0-9A-Za-z.\-]*))?")


# --------------------------------------------------------------------------------------- python
def find_python_executable() -> str:
    """The interpreter for the background process: PythonSlicer inside Slicer, else this interpreter.

    Inside Slicer `sys.executable` is the application itself, not a Python that runs `-m`; PythonSlicer is
    the launcher that gives a child Slicer's Python environment (same site-packages: torch installed by
    the PyTorch extension is found there). It sits in Slicer's bin folder, which is on PATH in Slicer.
    """
    found = shutil.which("PythonSlicer")
    if found:
        return found
    for candidate in (Path(sys.executable).with_name("PythonSlicer"), Path(sys.executable).with_name("PythonSlicer.exe")):
        if candidate.is_file():
            return str(candidate)
    return sys.executable


# --------------------------------------------------------------------------------------- GPUs
_gpu_cache: Optional[list[str]] = None


def detect_gpu_names(refresh: bool = False) -> list[str]:
    """Names of the NVIDIA GPUs the driver reports (`nvidia-smi`), [] when there are none or no driver.

    Used to label the "cuda" choice with the GPU's name; cached because the panel asks on every refresh.
    """
    global _gpu_cache
    if _gpu_cache is not None and not refresh:
        return list(_gpu_cache)
    names: list[str] = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            completed = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if completed.returncode == 0:
                names = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            names = []
    _gpu_cache = names
    return list(names)


def device_label(choice: str, gpu_names: Sequence[str]) -> str:
    """Text for one device choice in the combobox, e.g. "cuda (NVIDIA H100 80GB HBM3)"."""
    if choice == "cuda":
        return f"cuda ({gpu_names[0]})" if gpu_names else "cuda (no NVIDIA GPU found)"
    if choice == "auto":
        return f"auto ({gpu_names[0]})" if gpu_names else "auto (CPU)"
    return choice


def choose_device(requested: str, gpu_names: Sequence[str]) -> tuple[str, str]:
    """(device for the engine, note for the user). "cuda" without a GPU falls back to the CPU.

    "auto" is passed through: the engine itself picks CUDA, then Apple MPS, then the CPU.
    """
    requested = (requested or "auto").strip().lower()
    if requested not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got '{requested}'")
    if requested == "cuda" and not gpu_names:
        return "cpu", "No NVIDIA GPU was found: running on the CPU instead."
    if requested == "cuda":
        return "cuda", f"Running on {gpu_names[0]}."
    if requested == "cpu":
        return "cpu", "Running on the CPU."
    return "auto", f"Running on {gpu_names[0]}." if gpu_names else "No GPU found: running on the CPU."


# --------------------------------------------------------------------------------------- packages
def read_requirements(path: Union[str, Path]) -> list[str]:
    """Requirement lines of a requirements.txt (comments and blanks dropped)."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.\-+]", text):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def missing_requirements(requirements: Iterable[str]) -> list[str]:
    """The requirements that are not importable, or installed older than a `>=` bound asks.

    Checked without importing the packages (find_spec + distribution metadata), so asking is cheap.
    """
    missing = []
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if not match:
            continue
        name, op, version = match.group(1), match.group(2), match.group(3)
        import_name = IMPORT_NAMES.get(name, name.replace("-", "_"))
        if importlib.util.find_spec(import_name) is None:
            missing.append(requirement)
            continue
        if op == ">=" and version:
            try:
                installed = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue  # importable but not pip-installed (e.g. bundled with Slicer): accept it
            if _version_tuple(installed) < _version_tuple(version):
                missing.append(requirement)
    return missing

