"""CUTSSegmentationModuleLib.dependencies: one question, torch only through the PyTorch extension, never an error
dialog for a "no". The PyTorch extension and Slicer's pip exist only in Slicer: `RecordingTorchInstaller` and
`recorded_pip` stand in for them and record what they were asked; the requirement checks are real."""

from __future__ import annotations

from pathlib import Path

import pytest
from CUTSSegmentationJobs.environment import TORCH_MINIMUM_VERSION
from CUTSSegmentationModuleLib import DependencyError, DependencyInstaller
from CUTSSegmentationModuleLib.dependencies import (
    NO_PYTORCH_EXTENSION,
    is_torch,
    pytorch_extension_logic,
)
from slicer_testdata import MODULE_DIR

REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"


class RecordingTorchInstaller:
    """The PyTorchUtilsLogic.installTorch signature; returns a module-like object as the real one does."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def installTorch(
        self,
        askConfirmation=False,
        forceComputationBackend=None,
        torchVersionRequirement=None,
        torchvisionVersionRequirement=None,
    ):
        self.calls.append(
            {
                "askConfirmation": askConfirmation,
                "torchVersionRequirement": torchVersionRequirement,
            }
        )
        return object()


def installer(
    tmp_path: Path,
    lines: list[str],
    torch: RecordingTorchInstaller | None,
    answer: bool,
    torch_minimum: str = TORCH_MINIMUM_VERSION,
):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(["# comment", *lines]) + "\n")
    pip: list[list[str]] = []
    questions: list[str] = []

    def confirm(text: str) -> bool:
        questions.append(text)
        return answer

    deps = DependencyInstaller(
        requirements,
        lambda: torch,
        pip.append,
        confirm,
        torch_minimum_version=torch_minimum,
    )
    return deps, pip, questions


def test_nothing_missing_asks_nothing(tmp_path: Path):
    deps, pip, questions = installer(tmp_path, ["numpy>=1.0"], None, answer=False)
    assert deps.ensure() is True and pip == [] and questions == []
    module_deps = DependencyInstaller(REQUIREMENTS, lambda: None, pip.append, lambda text: False)
    assert module_deps.missing() == [] and module_deps.ensure() is True  # CI has the engine's packages


def test_an_old_torch_is_upgraded_through_the_pytorch_extension_with_the_bound(
    tmp_path: Path,
):
    """The installed torch is older than asked: installTorch gets the bound, pip never sees torch."""
    torch = RecordingTorchInstaller()
    deps, pip, questions = installer(tmp_path, ["numpy>=1.0"], torch, answer=True, torch_minimum="999")
    assert deps.missing() == ["torch>=999"]
    with pytest.raises(DependencyError, match="still missing after installing: torch>=999"):
        deps.ensure()  # the stand-in installs nothing, so torch is still too old afterwards
    assert torch.calls == [{"askConfirmation": False, "torchVersionRequirement": ">=999"}]
    assert pip == [] and len(questions) == 1 and "torch>=999" in questions[0]


def test_without_the_pytorch_extension_torch_is_not_pip_installed(tmp_path: Path):
    deps, pip, questions = installer(tmp_path, ["cuts-no-such-package>=1"], None, answer=True, torch_minimum="999")
    with pytest.raises(DependencyError) as raised:
        deps.ensure()
    assert str(raised.value) == NO_PYTORCH_EXTENSION
    assert pip == [] and questions == []
    assert pytorch_extension_logic() is None  # no PyTorch extension outside Slicer


def test_declining_installs_nothing_and_is_no_error(tmp_path: Path):
    torch = RecordingTorchInstaller()
    deps, pip, questions = installer(tmp_path, ["cuts-no-such-package>=1"], torch, answer=False, torch_minimum="999")
    assert deps.ensure(ask=True) is False
    assert pip == [] and torch.calls == [] and len(questions) == 1


def test_other_packages_go_to_pip_in_one_call_after_one_question(tmp_path: Path):
    deps, pip, questions = installer(
        tmp_path,
        ["numpy>=1.0", "cuts-no-such-package>=1", "cuts-other[x]>=2"],
        None,
        answer=True,
    )
    with pytest.raises(DependencyError, match="still missing"):
        deps.ensure()
    assert pip == [["cuts-no-such-package>=1", "cuts-other[x]>=2"]] and len(questions) == 1


def test_is_torch_reads_requirement_names():
    assert is_torch("torch>=2.1") and is_torch("torch") and is_torch(" torch [cuda] == 2.2")
    assert not is_torch("torchvision>=0.16") and not is_torch("torchio")
