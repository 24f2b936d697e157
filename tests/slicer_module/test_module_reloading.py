"""CUTSSegmentationModuleLib.reloading: after Reload, an import reads the module's packages from disk again."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from CUTSSegmentationModuleLib.reloading import MODULE_PACKAGES, forget_packages


def test_forgotten_packages_are_read_again(tmp_path: Path, monkeypatch):
    package = tmp_path / "cutsreloadprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "part.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = importlib.import_module("cutsreloadprobe.part")
    assert first.VALUE == 1
    (package / "part.py").write_text("VALUE = 2\n")
    importlib.invalidate_caches()
    assert importlib.import_module("cutsreloadprobe.part").VALUE == 1  # a plain import keeps the old code
    dropped = forget_packages(["cutsreloadprobe"])
    assert sorted(dropped) == ["cutsreloadprobe", "cutsreloadprobe.part"]
    second = importlib.import_module("cutsreloadprobe.part")
    assert second.VALUE == 2 and second is not first
    forget_packages(["cutsreloadprobe"])


def test_the_module_packages_are_all_listed():
    module_dir = Path(__file__).resolve().parents[2] / "CUTSSegmentation"
    packages = {p.parent.name for p in module_dir.glob("*/__init__.py")}
    assert packages <= set(MODULE_PACKAGES) and "CUTSSegmentationLib" in MODULE_PACKAGES
    assert not any(name.startswith("CUTSSegmentationModuleLibX") for name in sys.modules)
