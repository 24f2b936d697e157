"""Installing what the engine needs into Slicer's Python, only after the user agreed.

torch comes only from the PyTorch extension (a declared dependency of this extension): its
`PyTorchUtilsLogic.installTorch` picks the build that matches the GPU driver, and is asked for
`torch>=2.1` so that an older torch is upgraded rather than accepted. The other packages are pip-installed
(`slicer.packaging.pip_ensure` from Slicer 5.12, `slicer.util.pip_install` before). The parts that
exist only in Slicer are passed in, so the decisions here run and are tested without Slicer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Protocol

from CUTSSegmentationJobs import missing_requirements, read_requirements
from CUTSSegmentationJobs.environment import TORCH_MINIMUM_VERSION

#: Shown when torch is missing and the PyTorch extension is not installed.
NO_PYTORCH_EXTENSION = (
    "CUTS needs PyTorch, which is installed by the 'PyTorch' extension. Install 'PyTorch' from the "
    "Extensions Manager, restart Slicer, and try again."
)


class DependencyError(RuntimeError):
    """The engine's packages could not be made available (not raised when the user declines)."""


class TorchInstaller(Protocol):
    """What is used of the PyTorch extension's `PyTorchUtilsLogic`."""

    def installTorch(
        self,
        askConfirmation: bool = False,
        forceComputationBackend: str | None = None,
        torchVersionRequirement: str | None = None,
        torchvisionVersionRequirement: str | None = None,
    ) -> Any:
        """Install torch; returns the torch module, or None when it was not installed."""


PackageInstaller = Callable[[list[str]], None]
Confirm = Callable[[str], bool]


def is_torch(requirement: str) -> bool:
    """Whether a requirement line is about torch itself."""
    name = requirement.strip().split(";")[0]
    for separator in "<>=!~[ ":
        name = name.split(separator)[0]
    return name.lower() == "torch"


class DependencyInstaller:
    """Finds what is missing and installs it after one confirmation.

    Parameters
    ----------
    requirements_path
        The module's requirements.txt (packages besides torch).
    torch_installer
        Returns the PyTorch extension's logic, or None when that extension is not installed (asked only
        when torch is missing: the extension's module may load after this one).
    install_packages
        Installs pip requirements without asking (the question was asked already).
    confirm
        Asks the user; False means "no": nothing is installed and nothing is reported as an error.
    torch_minimum_version
        The oldest torch the engine runs with; an older one is upgraded through the PyTorch extension.
    """

    def __init__(
        self,
        requirements_path: str | Path,
        torch_installer: Callable[[], TorchInstaller | None],
        install_packages: PackageInstaller,
        confirm: Confirm,
        torch_minimum_version: str = TORCH_MINIMUM_VERSION,
    ) -> None:
        self.requirements_path = Path(requirements_path)
        self.torch_installer = torch_installer
        self.install_packages = install_packages
        self.confirm = confirm
        self.torch_minimum_version = torch_minimum_version

    def requirements(self) -> list[str]:
        """torch first, then the requirements file."""
        return [
            f"torch>={self.torch_minimum_version}",
            *read_requirements(self.requirements_path),
        ]

    def missing(self) -> list[str]:
        """Requirements not installed, or installed older than their bound (checked without importing)."""
        return missing_requirements(self.requirements())

    def question(self, missing: Sequence[str]) -> str:
        """The one question asked before installing."""
        return (
            "CUTS needs these Python packages, which are not installed (or too old): "
            + ", ".join(missing)
            + ". Install them now? This takes a few minutes (PyTorch is about 1 GB to download)."
        )

    def ensure(self, ask: bool = True) -> bool:
        """True when everything is available (installing it first); False when the user said no.

        Raises DependencyError when the install failed or torch is missing without the PyTorch extension.
        """
        missing = self.missing()
        if not missing:
            return True
        torch_missing = any(is_torch(requirement) for requirement in missing)
        torch_installer = self.torch_installer() if torch_missing else None
        if torch_missing and torch_installer is None:
            raise DependencyError(NO_PYTORCH_EXTENSION)
        if ask and not self.confirm(self.question(missing)):
            return False
        if torch_missing:
            torch = torch_installer.installTorch(
                askConfirmation=False,
                torchVersionRequirement=f">={self.torch_minimum_version}",
            )
            if torch is None:
                raise DependencyError("PyTorch was not installed (see the PyTorch extension's log).")
        others = [requirement for requirement in missing if not is_torch(requirement)]
        if others:
            self.install_packages(others)
        still_missing = self.missing()
        if still_missing:
            raise DependencyError("still missing after installing: " + ", ".join(still_missing))
        return True


# --------------------------------------------------------------------------------------- Slicer's parts
def pytorch_extension_logic() -> TorchInstaller | None:
    """The PyTorch extension's logic, made without building its module widget; None when not installed."""
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()


def slicer_package_installer(requester: str = "CUTSSegmentation") -> PackageInstaller:
    """pip install into Slicer's Python: `slicer.packaging.pip_ensure` (Slicer >= 5.12) or `pip_install`."""

    def install(requirements: list[str]) -> None:
        try:
            from slicer import packaging
        except ImportError:
            packaging = None
        if packaging is not None:
            packaging.pip_ensure(requirements, prompt_install=False, requester=requester)
        else:
            import slicer.util

            slicer.util.pip_install(requirements)  # a list: one pip argument per requirement, no quoting

    return install


def slicer_confirm(text: str) -> bool:
    """Slicer's OK/Cancel question."""
    import slicer.util

    return bool(slicer.util.confirmOkCancelDisplay(text))
