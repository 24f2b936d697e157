"""The module run through Slicer's own Python (CUTSSegmentation/Testing/Conformance/slicer_conformance.py).

Needs a Slicer source tree: set CUTS_SLICER_SOURCE to one or more trees (separated by os.pathsep), e.g. a
checkout of Slicer/Slicer main and one of the v5.8.0 tag. Without it the test is skipped (CI has none).
Each tree runs in a process of its own: the script replaces slicer.util and adds placeholder qt/ctk modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from slicer_testdata import MODULE_DIR, REPO

SCRIPT = MODULE_DIR / "Testing" / "Conformance" / "slicer_conformance.py"
SOURCES = [Path(p) for p in os.environ.get("CUTS_SLICER_SOURCE", "").split(os.pathsep) if p]


@pytest.mark.skipif(
    not SOURCES,
    reason="no Slicer source tree given: set CUTS_SLICER_SOURCE to run the module "
    "through Slicer's own parameterNodeWrapper, ScriptedLoadableModule and util",
)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_module_passes_on_slicers_own_python(source: Path):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    lines = completed.stdout.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert completed.returncode == 0 and not failures, "\n".join(failures) or completed.stderr[-3000:]
    assert any(line.startswith("PASS fresh parameter node") for line in lines)
    assert any(line.startswith("PASS connectGui") for line in lines)


def test_the_script_refuses_a_folder_that_is_no_slicer_tree(tmp_path: Path):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2 and "is not a Slicer source tree" in completed.stderr
