"""What the machine offers the engine: the Python to run it with, GPUs, device choice, missing packages.

Kept apart from the widget so that it is testable here and cheap in Slicer: nothing in this module
imports torch (importing torch into Slicer's own process costs seconds and hundreds of MB just to ask
for a GPU name; the engine's child process imports it instead).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Device choices offered by the module panel (the engine also knows "cuda:N").
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

#: The torch the engine needs. It is installed by the PyTorch extension (PyTorchUtilsLogic.installTorch with
#: this bound as torchVersionRequirement), which picks the build that matches the GPU driver.
TORCH_MINIMUM_VERSION = "2.1"
TORCH_REQUIREMENT = f"torch>={TORCH_MINIMUM_VERSION}"

#: Packages every supported Slicer ships in its own Python; pip must never replace them there.
BUNDLED_WITH_SLICER = ("numpy", "scipy", "SimpleITK")

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
    for candidate in (
        Path(sys.executable).with_name("PythonSlicer"),
        Path(sys.executable).with_name("PythonSlicer.exe"),
    ):
        if candidate.is_file():
            return str(candidate)
    return sys.executable


# --------------------------------------------------------------------------------------- GPUs
#: `creationflags` that keep a console window from flashing up for a child process on Windows.
CREATE_NO_WINDOW = 0x08000000


def hidden_console_options(os_name: str = os.name) -> dict[str, int]:
    """Keyword arguments for subprocess calls: no console window on Windows, nothing elsewhere.

    Slicer is a GUI application; each console program it starts (nvidia-smi, taskkill, the engine's
    Python) would otherwise open a console window for its lifetime.
    """
    return {"creationflags": CREATE_NO_WINDOW} if os_name == "nt" else {}


@dataclass(frozen=True)
class Accelerators:
    """The GPUs the engine's "auto" device can pick, found without importing torch.

    `nvidia`: names `nvidia-smi` reports. `apple`: a description of the Metal GPU torch reaches through
    MPS on macOS ("" elsewhere); the engine's "auto" takes CUDA first, then MPS, then the CPU.
    """

    nvidia: tuple[str, ...] = ()
    apple: str = ""

    @property
    def auto_name(self) -> str:
        """What "auto" runs on, "" for the CPU."""
        return self.nvidia[0] if self.nvidia else self.apple


def apple_gpu(system: str | None = None, machine: str | None = None) -> str:
    """The Metal GPU torch's MPS backend uses on this Mac ("" when this is no Mac)."""
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    if system != "Darwin":
        return ""
    return "Apple GPU" if machine == "arm64" else "Metal GPU (MPS), if this Mac has one"


_nvidia_cache: tuple[str, ...] | None = None


def detect_nvidia_gpus(refresh: bool = False) -> tuple[str, ...]:
    """Names of the NVIDIA GPUs the driver reports (`nvidia-smi`), () when there are none or no driver.

    Cached because the panel asks on every refresh.
    """
    global _nvidia_cache
    if _nvidia_cache is not None and not refresh:
        return _nvidia_cache
    names: tuple[str, ...] = ()
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            completed = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=5,
                check=False,
                **hidden_console_options(),
            )
            if completed.returncode == 0:
                names = tuple(line.strip() for line in completed.stdout.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            names = ()
    _nvidia_cache = names
    return names


def detect_accelerators(refresh: bool = False) -> Accelerators:
    """NVIDIA GPUs and the Apple GPU of this machine."""
    return Accelerators(nvidia=detect_nvidia_gpus(refresh), apple=apple_gpu())


def device_label(choice: str, accelerators: Accelerators) -> str:
    """Text for one device choice in the combobox, e.g. "cuda (NVIDIA H100 80GB HBM3)"."""
    if choice == "cuda":
        return f"cuda ({accelerators.nvidia[0]})" if accelerators.nvidia else "cuda (no NVIDIA GPU found)"
    if choice == "mps":
        return f"mps ({accelerators.apple})" if accelerators.apple else "mps (macOS only)"
    if choice == "auto":
        return f"auto ({accelerators.auto_name or 'CPU'})"
    return choice


def choose_device(requested: str, accelerators: Accelerators) -> tuple[str, str]:
    """(device for the engine, note for the user). "cuda" or "mps" without that GPU falls back to the CPU.

    "auto" is passed through: the engine itself picks CUDA, then Apple MPS, then the CPU.
    """
    requested = (requested or "auto").strip().lower()
    if requested not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got '{requested}'")
    if requested == "cuda":
        if not accelerators.nvidia:
            return "cpu", "No NVIDIA GPU was found: running on the CPU instead."
        return "cuda", f"Running on {accelerators.nvidia[0]}."
    if requested == "mps":
        if not accelerators.apple:
            return "cpu", "MPS exists only on macOS: running on the CPU instead."
        return "mps", f"Running on the {accelerators.apple}."
    if requested == "cpu":
        return "cpu", "Running on the CPU."
    name = accelerators.auto_name
    return (
        "auto",
        f"Running on {name}." if name else "No GPU found: running on the CPU.",
    )


# --------------------------------------------------------------------------------------- packages
def read_requirements(path: str | Path) -> list[str]:
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
