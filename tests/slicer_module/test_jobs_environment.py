"""CUTSSegmentationJobs.environment: device choice and labels, hidden consoles, missing packages."""

from __future__ import annotations

from pathlib import Path

import pytest
from CUTSSegmentationJobs import (
    BUNDLED_WITH_SLICER,
    DEVICE_CHOICES,
    TORCH_REQUIREMENT,
    Accelerators,
    choose_device,
    device_label,
    find_python_executable,
    missing_requirements,
    read_requirements,
)
from CUTSSegmentationJobs.environment import (
    CREATE_NO_WINDOW,
    apple_gpu,
    hidden_console_options,
)
from slicer_testdata import MODULE_DIR

NVIDIA = Accelerators(nvidia=("NVIDIA H100",))
APPLE = Accelerators(apple=apple_gpu("Darwin", "arm64"))
NONE = Accelerators()


def test_cuda_falls_back_to_cpu_and_names_the_gpu():
    assert choose_device("cuda", NONE) == (
        "cpu",
        "No NVIDIA GPU was found: running on the CPU instead.",
    )
    assert choose_device("cuda", NVIDIA) == ("cuda", "Running on NVIDIA H100.")
    assert choose_device("auto", NONE) == ("auto", "No GPU found: running on the CPU.")
    assert choose_device("cpu", NVIDIA)[0] == "cpu"
    assert device_label("cuda", NVIDIA) == "cuda (NVIDIA H100)" and "no NVIDIA GPU" in device_label("cuda", NONE)
    with pytest.raises(ValueError):
        choose_device("tpu", NONE)


def test_on_a_mac_auto_names_the_apple_gpu_the_engine_picks():
    assert apple_gpu("Darwin", "arm64") == "Apple GPU"
    assert apple_gpu("Linux", "x86_64") == "" and apple_gpu("Windows", "AMD64") == ""
    assert "MPS" in apple_gpu("Darwin", "x86_64")
    assert device_label("auto", APPLE) == "auto (Apple GPU)"
    assert device_label("auto", NONE) == "auto (CPU)"
    assert choose_device("auto", APPLE) == ("auto", "Running on Apple GPU.")
    assert choose_device("mps", APPLE) == ("mps", "Running on the Apple GPU.")
    assert choose_device("mps", NVIDIA)[0] == "cpu"
    assert "mps" in DEVICE_CHOICES
    # NVIDIA first, as the engine's "auto" does.
    assert Accelerators(nvidia=("RTX",), apple="Apple GPU").auto_name == "RTX"


def test_console_programs_start_without_a_window_on_windows():
    assert hidden_console_options("nt") == {"creationflags": CREATE_NO_WINDOW}
    assert hidden_console_options("posix") == {}
    assert CREATE_NO_WINDOW == 0x08000000  # winbase.h


def test_missing_requirements_are_found_without_importing():
    requirements = read_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    assert {r.split(">=")[0] for r in requirements} == {"scikit-image", "safetensors"}
    assert missing_requirements([TORCH_REQUIREMENT, *requirements]) == []  # the test environment has the engine
    assert missing_requirements(["numpy>=1.0", "cuts-no-such-package>=1", "numpy>=999"]) == [
        "cuts-no-such-package>=1",
        "numpy>=999",
    ]
    assert missing_requirements(["torch>=999"]) == ["torch>=999"]  # an old torch counts as missing
    assert Path(find_python_executable()).exists()


def test_packages_slicer_ships_are_never_pip_installed():
    requirements = read_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    names = {r.split(">=")[0].split("==")[0].lower() for r in requirements}
    assert not names & {name.lower() for name in BUNDLED_WITH_SLICER}
    assert not any(name == "torch" for name in names), "torch comes from the PyTorch extension"
