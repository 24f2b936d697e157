"""What can honestly be checked of the Slicer module without the Slicer application.

The module file (CUTSSegmentation/CUTSSegmentation.py) imports slicer.ScriptedLoadableModule, qt and ctk,
which exist only inside Slicer, so it is never imported here: it is parsed with `ast` and checked against
its .ui file, its CMakeLists, the extension metadata and Slicer's Qt-free core (PyPI slicer-core). The
Qt-free helpers it delegates to (CUTSSegmentationJobs: background jobs, MRML operations, environment) are
imported and run for real, against a real MRML scene and real child processes.

Not checkable here (see docs/slicer-module.md): that Qt/CTK/Slicer widgets have the members the widget code
uses (the tables below are written from the Qt, CTK and Slicer class documentation), the GUI-only `slicer.*`
names in ALLOWED_GUI_ONLY, the CMake build itself, and anything that needs the Qt event loop.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

import slicer  # PyPI slicer-core: a test requirement, missing it fails (never skips)
import slicer.util

REPO = Path(__file__).resolve().parents[1]
MODULE_NAME = "CUTSSegmentation"
MODULE_DIR = REPO / MODULE_NAME
MODULE_FILE = MODULE_DIR / f"{MODULE_NAME}.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / f"{MODULE_NAME}.ui"
ENGINE_DIR = REPO / "CUTSSegmentationLib"

sys.path.insert(0, str(MODULE_DIR))

from CUTSSegmentationJobs import (  # noqa: E402
    DEVICE_CHOICES,
    EngineJob,
    choose_device,
    device_label,
    engine_directory,
    find_python_executable,
    missing_requirements,
    read_requirements,
    segment_args,
    train_args,
)
from CUTSSegmentationJobs import operations  # noqa: E402
from CUTSSegmentationJobs.runner import child_environment, engine_command  # noqa: E402
from CUTSSegmentationLib.core.errors import InputError  # noqa: E402
from CUTSSegmentationLib.condense.hierarchy import Hierarchy  # noqa: E402
from CUTSSegmentationLib.core.imagedata import Geometry, ImageData  # noqa: E402
from CUTSSegmentationLib.core.progress import PROGRESS_LINE_PREFIX  # noqa: E402
from CUTSSegmentationMRML import image_to_volume_node, volume_node_to_image  # noqa: E402


# =========================================================================================== helpers
def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


def ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def widget_property(widget: ET.Element, name: str) -> Optional[ET.Element]:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def property_text(widget: ET.Element, name: str) -> Optional[str]:
    prop = widget_property(widget, name)
    if prop is None:
        return None
    child = list(prop)[0]
    return child.text


def parameter_fields() -> dict[str, ast.expr]:
    """Fields (name -> annotation) of the @parameterNodeWrapper class of the module file."""
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper") for d in node.decorator_list
        ):
            return {
                stmt.target.id: stmt.annotation
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            }
    raise AssertionError("no @parameterNodeWrapper class in the module file")


def parameter_defaults() -> dict[str, Any]:
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ClassDef) and node.name == f"{MODULE_NAME}ParameterNode":
            return {
                stmt.target.id: ast.literal_eval(stmt.value)
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and stmt.value is not None
            }
    raise AssertionError("no parameter node class")


def ui_uses(tree: ast.Module) -> dict[str, set[str]]:
    """self.ui.<widget>.<member> uses in the widget code: widget name -> members used (may be empty)."""
    uses: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            uses.setdefault(node.attr, set())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Attribute)
            and node.value.value.attr == "ui"
            and isinstance(node.value.value.value, ast.Name)
            and node.value.value.value.id == "self"
        ):
            uses.setdefault(node.value.attr, set()).add(node.attr)
    return uses


def connected_signals(tree: ast.Module) -> list[tuple[str, str]]:
    """(widget name, signal signature) of every self.ui.<widget>.connect("signal(...)", slot)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "connect"
            and isinstance(node.func.value, ast.Attribute)
            and isinstance(node.func.value.value, ast.Attribute)
            and node.func.value.value.attr == "ui"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.func.value.attr, node.args[0].value))
    return found


# =========================================================================================== .ui <-> widget code
#: Class the widget code expects for every self.ui.X it uses (update together with the .ui).
EXPECTED_UI_CLASSES = {
    "inputSelector": "qMRMLNodeComboBox",
    "epochsSpinBox": "QSpinBox",
    "deviceComboBox": "QComboBox",
    "modelPathLineEdit": "QLineEdit",
    "trainButton": "QPushButton",
    "loadModelButton": "QPushButton",
    "saveModelButton": "QPushButton",
    "segmentButton": "QPushButton",
    "levelSliderWidget": "ctkSliderWidget",
    "clusterCountLabel": "QLabel",
    "persistentButton": "QPushButton",
    "seedSelector": "qMRMLNodeComboBox",
    "seedPlaceWidget": "qSlicerMarkupsPlaceWidget",
    "keepSeedButton": "QPushButton",
    "outputSelector": "qMRMLNodeComboBox",
    "showInSegmentEditorButton": "QPushButton",
    "progressBar": "QProgressBar",
    "cancelButton": "QPushButton",
    "statusLabel": "QLabel",
}

#: Members (properties, slots, methods) of each class, from the Qt 5, CTK and Slicer class documentation,
#: limited to what this module may use. A use outside this table must be looked up and added on purpose.
KNOWN_MEMBERS = {
    "QPushButton": {"enabled", "checked", "checkable", "text", "toolTip", "click", "connect", "setEnabled"},
    "QLabel": {"text", "setText", "toolTip"},
    "QSpinBox": {"value", "minimum", "maximum", "enabled"},
    "QComboBox": {"setItemText", "currentIndex", "count", "enabled"},
    "QLineEdit": {"text", "enabled"},
    "QProgressBar": {"setValue", "setFormat", "value", "format", "setRange"},
    "ctkSliderWidget": {"value", "minimum", "maximum", "enabled", "singleStep", "connect"},
    "qMRMLNodeComboBox": {"currentNode", "setCurrentNode", "enabled", "connect"},
    "qSlicerMarkupsPlaceWidget": {"setCurrentNode", "placeMultipleMarkups", "placeModeEnabled", "buttonsVisible"},
}

#: Signals of each class (Qt 5 / CTK / Slicer documentation).
KNOWN_SIGNALS = {
    "QPushButton": {"clicked(bool)", "clicked()", "toggled(bool)"},
    "ctkSliderWidget": {"valueChanged(double)", "valueIsChanging(double)"},
    "qMRMLNodeComboBox": {"currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)"},
    "QComboBox": {"currentIndexChanged(int)"},
}


def test_every_widget_the_code_uses_exists_in_the_ui_with_the_expected_class():
    widgets = ui_widgets()
    uses = ui_uses(module_tree())
    assert uses, "the widget code uses no self.ui.X: the parser is broken"
    unknown = sorted(set(uses) - set(EXPECTED_UI_CLASSES))
    assert not unknown, f"self.ui.{unknown} used but not in EXPECTED_UI_CLASSES (add it with its class)"
    for name in uses:
        assert name in widgets, f"self.ui.{name} is used by the widget but missing from {UI_FILE.name}"
        assert widgets[name].get("class") == EXPECTED_UI_CLASSES[name], (
            f"{name} is a {widgets[name].get('class')} in the .ui, the code expects {EXPECTED_UI_CLASSES[name]}"
        )
    for name, members in uses.items():
        cls = EXPECTED_UI_CLASSES[name]
        assert members <= KNOWN_MEMBERS[cls], f"self.ui.{name}: {sorted(members - KNOWN_MEMBERS[cls])} not members of {cls}"


def test_connected_signals_exist_on_their_widgets():
    signals = connected_signals(module_tree())
    assert ("segmentButton", "clicked(bool)") in signals
    for name, signal in signals:
        cls = EXPECTED_UI_CLASSES[name]
        assert signal in KNOWN_SIGNALS.get(cls, set()), f"{name} ({cls}) has no signal {signal}"


def test_ui_is_a_qmrmlwidget_with_declared_custom_widgets_and_scene_connections():
    root = ET.parse(UI_FILE).getroot()
    assert root.findtext("class") == MODULE_NAME
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == MODULE_NAME
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared, "undeclared custom widget classes"
    # Every MRML-aware widget gets the scene through mrmlSceneChanged -> setMRMLScene (template convention).
    receivers = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml_widgets = {w.get("name") for w in root.iter("widget") if w.get("class") in ("qMRMLNodeComboBox", "qSlicerMarkupsPlaceWidget")}
    assert mrml_widgets <= receivers, f"no scene connection for {sorted(mrml_widgets - receivers)}"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate object names in the .ui"


# =========================================================================================== parameter node <-> .ui
def _annotation_parts(annotation: ast.expr) -> tuple[str, list[ast.expr]]:
    """('int', [WithinRange(...)]) for Annotated[int, WithinRange(...)]; ('Union', [...]) for unions."""
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        elements = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        if annotation.value.id == "Annotated":
            return ast.unparse(elements[0]), list(elements[1:])
        return annotation.value.id, list(elements)
    return ast.unparse(annotation), []


def _validator(annotations: list[ast.expr], name: str) -> Optional[ast.Call]:
    for a in annotations:
        if isinstance(a, ast.Call) and isinstance(a.func, ast.Name) and a.func.id == name:
            return a
    return None


def _node_classes(annotation: ast.expr) -> set[str]:
    base, parts = _annotation_parts(annotation)
    if base == "Union":
        return {ast.unparse(p) for p in parts}
    return {base}


def test_every_slicer_parameter_name_is_a_field_of_the_parameter_node():
    fields = parameter_fields()
    bound = {
        name: property_text(widget, "SlicerParameterName")
        for name, widget in ui_widgets().items()
        if widget_property(widget, "SlicerParameterName") is not None
    }
    assert len(bound) >= 8
    for widget_name, parameter in bound.items():
        assert parameter in fields, f"{widget_name} is bound to '{parameter}', not a field of the parameter node"
    assert len(set(bound.values())) == len(bound), "two widgets bound to the same parameter"


def test_bound_widgets_can_represent_their_parameter_types():
    """Mirror of slicer.parameterNodeWrapper.guiConnectors `canRepresent` for the classes used here."""
    fields = parameter_fields()
    for name, widget in ui_widgets().items():
        if widget_property(widget, "SlicerParameterName") is None:
            continue
        parameter = property_text(widget, "SlicerParameterName")
        annotation = fields[parameter]
        base, validators = _annotation_parts(annotation)
        cls = widget.get("class")
        if cls == "qMRMLNodeComboBox":
            classes = _node_classes(annotation)
            assert all(c.startswith("vtkMRML") for c in classes), f"{parameter}: not a node type"
            node_types = [s.text for s in widget_property(widget, "nodeTypes").iter("string")]
            assert set(node_types) == classes, f"{name}: nodeTypes {node_types} != parameter types {classes}"
            for c in classes:
                assert hasattr(slicer, c), f"{c} is not an MRML class of Slicer's core"
        elif cls == "QComboBox":
            assert base == "str" and _validator(validators, "Choice") is not None, f"{parameter} needs Annotated[str, Choice]"
        elif cls in ("QSpinBox", "QSlider"):
            assert base == "int"
            within = _validator(validators, "WithinRange")
            assert within is not None, f"{parameter}: bounded int expected"
            low, high = (ast.literal_eval(a) for a in within.args)
            assert (int(property_text(widget, "minimum")), int(property_text(widget, "maximum"))) == (low, high)
        elif cls == "ctkSliderWidget":
            assert base in ("int", "float") and _validator(validators, "WithinRange") is not None, (
                f"{parameter}: ctkSliderWidget needs a bounded int/float (WithinRange)"
            )
        elif cls in ("QLineEdit", "QLabel"):
            assert base == "str"
        elif cls == "QPushButton":
            assert base == "bool" and property_text(widget, "checkable") == "true", f"{name} must be checkable"
        else:  # pragma: no cover - a new widget class needs a rule here
            raise AssertionError(f"no connector rule for {cls} ({name})")


def test_parameter_defaults_satisfy_their_validators():
    fields = parameter_fields()
    defaults = parameter_defaults()
    for name, annotation in fields.items():
        base, validators = _annotation_parts(annotation)
        if name not in defaults:
            assert base.startswith("vtkMRML") or base == "Union", f"{name} has no default"
            continue
        within = _validator(validators, "WithinRange")
        if within is not None:
            low, high = (ast.literal_eval(a) for a in within.args)
            assert low <= defaults[name] <= high
        choice = _validator(validators, "Choice")
        if choice is not None:
            choices = eval(ast.unparse(choice.args[0]), {"list": list, "DEVICE_CHOICES": DEVICE_CHOICES})
            assert defaults[name] in choices
    assert tuple(DEVICE_CHOICES) == ("auto", "cpu", "cuda")


# =========================================================================================== imports and Slicer API
ALLOWED_TOP_LEVEL = {
    "slicer", "slicer.ScriptedLoadableModule", "slicer.util", "slicer.parameterNodeWrapper", "slicer.i18n",
    "vtk", "qt", "ctk", "CUTSSegmentationJobs", "CUTSSegmentationMRML", "CUTSSegmentationLib",
}
#: Imports allowed inside functions only: numpy ships with Slicer (used by the self-test), slicer.packaging
#: exists from Slicer 5.12 (guarded by ImportError), the engine modules are imported where needed.
ALLOWED_IN_FUNCTIONS = ALLOWED_TOP_LEVEL | {"numpy", "slicer.packaging", "CUTSSegmentationLib.evaluate.phantom",
                                            "CUTSSegmentationLib.condense.hierarchy", "CUTSSegmentationLib.core.imagedata"}
#: Names of Slicer's Python API that exist only in the Slicer application (not in PyPI slicer-core), each
#: checked by hand against Slicer's source (Base/Python/slicer, Base/QTGUI, Modules/Loadable/Markups/Widgets).
ALLOWED_GUI_ONLY = {
    "app": "qSlicerApplication instance (slicer.app.cachePath, processEvents)",
    "mrmlScene": "the application's scene",
    "modules": "module registry",
    "qSlicerMarkupsPlaceWidget": "Markups widget (PlaceMultipleMarkupsType enum)",
    "packaging": "slicer.packaging, Slicer >= 5.12",
    "i18n": "slicer.i18n (tr, translate)",
    "ScriptedLoadableModule": "Base/Python/slicer/ScriptedLoadableModule.py",
    "parameterNodeWrapper": "Base/Python/slicer/parameterNodeWrapper",
}
#: Exported names of Base/Python/slicer/parameterNodeWrapper (validators.py, wrapper.py) that we import.
PARAMETER_NODE_WRAPPER_NAMES = {"parameterNodeWrapper", "WithinRange", "Choice", "Minimum", "Maximum", "Default"}
STDLIB = set(sys.stdlib_module_names)


def _imports(tree: ast.Module) -> list[tuple[str, bool, ast.AST]]:
    """(module, at top level?, node) for every import."""
    top = set(id(n) for n in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", id(node) in top, node))
    return found


def test_module_file_imports_only_slicer_api_and_own_packages():
    for module, top_level, node in _imports(module_tree()):
        root = module.split(".")[0]
        if root in STDLIB:
            continue
        allowed = ALLOWED_TOP_LEVEL if top_level else ALLOWED_IN_FUNCTIONS
        assert module in allowed or (not top_level and root in ("CUTSSegmentationLib", "CUTSSegmentationMRML")), (
            f"line {node.lineno}: import of {module} is not allowed {'at top level' if top_level else ''}"
        )


def _slicer_attribute_chains(tree: ast.Module) -> set[tuple[str, ...]]:
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = []
            current: ast.AST = node
            while isinstance(current, ast.Attribute):
                parts.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id == "slicer":
                chains.add(tuple(reversed(parts)))
    return chains


@pytest.mark.parametrize(
    "path",
    [MODULE_FILE, MODULE_DIR / "Testing" / "Python" / f"{MODULE_NAME}ModuleTest.py", MODULE_DIR / "Resources" / "Scripts" / "batch.py"],
    ids=lambda p: p.name,
)
def test_every_slicer_name_used_exists_in_slicer(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    chains = _slicer_attribute_chains(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "slicer":
            chains |= {(a.name,) for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
            chains |= {("util", a.name) for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.parameterNodeWrapper":
            unknown = {a.name for a in node.names} - PARAMETER_NODE_WRAPPER_NAMES
            assert not unknown, f"{unknown} not exported by slicer.parameterNodeWrapper"
    assert chains
    for chain in sorted(chains):
        head = chain[0]
        if head in ALLOWED_GUI_ONLY:
            continue
        assert hasattr(slicer, head), f"slicer.{head} is neither in Slicer's core nor in the GUI-only allow-list"
        if head == "util" and len(chain) > 1:
            assert hasattr(slicer.util, chain[1]), f"slicer.util.{chain[1]} does not exist"
        if head.startswith("vtk") and len(chain) > 1:
            assert hasattr(getattr(slicer, head), chain[1]), f"slicer.{head}.{chain[1]} does not exist"
    # slicer.mrmlScene.X: methods and events of vtkMRMLScene.
    for chain in chains:
        if chain[0] == "mrmlScene" and len(chain) > 1:
            assert hasattr(slicer.vtkMRMLScene, chain[1]), f"vtkMRMLScene has no {chain[1]}"


def test_module_file_follows_the_scripted_module_template():
    tree = module_tree()
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = {name: [ast.unparse(b) for b in c.bases] for name, c in classes.items()}
    assert bases[MODULE_NAME] == ["ScriptedLoadableModule"]
    assert bases[f"{MODULE_NAME}Widget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert bases[f"{MODULE_NAME}Logic"] == ["ScriptedLoadableModuleLogic"]
    assert bases[f"{MODULE_NAME}Test"] == ["ScriptedLoadableModuleTest"]
    widget_methods = {n.name for n in classes[f"{MODULE_NAME}Widget"].body if isinstance(n, ast.FunctionDef)}
    assert {"setup", "cleanup", "enter", "exit", "onSceneStartClose", "onSceneEndClose",
            "initializeParameterNode", "setParameterNode"} <= widget_methods
    logic_methods = {n.name for n in classes[f"{MODULE_NAME}Logic"].body if isinstance(n, ast.FunctionDef)}
    assert {"train", "segment", "pushLevel", "binarizeAtSeed", "getParameterNode"} <= logic_methods
    source = MODULE_FILE.read_text(encoding="utf-8")
    help_text = re.search(r'helpText = _\("""(.*?)"""\)', source, re.S).group(1)
    for call in ("logic.train(", "logic.segment(", "logic.pushLevel(", "logic.binarizeAtSeed("):
        assert call in help_text, f"{call} is not documented in helpText"
    # Nothing heavy or installing at import time: torch and pip only inside functions.
    top_level_source = "\n".join(ast.unparse(n) for n in tree.body if not isinstance(n, (ast.ClassDef, ast.FunctionDef)))
    assert "torch" not in top_level_source and "pip_install" not in top_level_source


def test_helpers_never_touch_qt_or_the_application():
    """The helper package is importable without Qt (it was imported above), never imports qt/ctk and never
    uses GUI-only slicer names (slicer.app, slicer.mrmlScene, ...)."""
    for path in (MODULE_DIR / "CUTSSegmentationJobs").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module, _top, node in _imports(tree):
            assert module.split(".")[0] not in ("qt", "ctk"), f"{path.name}:{node.lineno} imports {module}"
        gui_only = {chain[0] for chain in _slicer_attribute_chains(tree)} & set(ALLOWED_GUI_ONLY)
        assert not gui_only, f"{path.name} uses slicer.{sorted(gui_only)}"


# =========================================================================================== CMake
def cmake_sets(path: Path) -> dict[str, list[str]]:
    """set(NAME v1 v2 ...) blocks of a CMakeLists (comments stripped; ${MODULE_NAME} etc. substituted)."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
    sets: dict[str, list[str]] = {}
    for name, body in re.findall(r"\bset\(\s*(\w+)\s+(.*?)\)", text, re.S):
        sets[name] = body.split()
    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: " ".join(sets.get(m.group(1), [m.group(0)])), value)
    return {name: [expand(v) for v in values] for name, values in sets.items()}


def cmake_calls(path: Path, command: str) -> list[list[str]]:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
    return [body.split() for body in re.findall(rf"\b{command}\(\s*(.*?)\)", text, re.S)]


def _relative_files(folder: Path, pattern: str) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts}


def test_module_cmakelists_lists_every_python_file_and_resource():
    sets = cmake_sets(MODULE_DIR / "CMakeLists.txt")
    scripts = set(sets["MODULE_PYTHON_SCRIPTS"])
    expected = {p for p in _relative_files(MODULE_DIR, "*.py") if not p.startswith(("Testing/", "Resources/"))}
    assert scripts == expected, f"missing {sorted(expected - scripts)}, stale {sorted(scripts - expected)}"
    assert "CUTSSegmentationMRML/bridge.py" in scripts and f"{MODULE_NAME}.py" in scripts
    resources = set(sets["MODULE_PYTHON_RESOURCES"])
    expected_resources = _relative_files(MODULE_DIR, "Resources/**/*") | _relative_files(MODULE_DIR / "Resources", "*")
    expected_resources = {p if p.startswith("Resources/") else f"Resources/{p}" for p in expected_resources}
    assert resources == expected_resources, f"missing {sorted(expected_resources - resources)}, stale {sorted(resources - expected_resources)}"
    (call,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "slicerMacroBuildScriptedModule")
    assert call[:2] == ["NAME", "${MODULE_NAME}"] and "SCRIPTS" in call and "RESOURCES" in call and "WITH_GENERIC_TESTS" in call
    assert sets["MODULE_NAME"] == [MODULE_NAME]


def test_engine_package_is_shipped_next_to_the_module():
    sets = cmake_sets(MODULE_DIR / "CMakeLists.txt")
    scripts = set(sets["CUTS_ENGINE_PYTHON_SCRIPTS"])
    expected = _relative_files(ENGINE_DIR, "*.py")
    assert scripts == expected, f"engine files missing from CMake: {sorted(expected - scripts)}, stale: {sorted(scripts - expected)}"
    resources = set(sets["CUTS_ENGINE_PYTHON_RESOURCES"])
    assert resources == {p for p in _relative_files(ENGINE_DIR, "*") if not p.endswith((".py", ".pyc"))}
    assert (MODULE_DIR / sets["CUTS_ENGINE_SOURCE_DIR"][0].replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")).resolve() == ENGINE_DIR
    (call,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "ctkMacroCompilePythonScript")
    args = dict(zip(call[::2], call[1::2])) if "NO_INSTALL_SUBDIR" not in call else dict(
        zip([a for a in call if a != "NO_INSTALL_SUBDIR"][::2], [a for a in call if a != "NO_INSTALL_SUBDIR"][1::2])
    )
    assert "NO_INSTALL_SUBDIR" in call
    assert args["SOURCE_DIR"] == "${CUTS_ENGINE_SOURCE_DIR}"
    assert args["SCRIPTS"] == '"${CUTS_ENGINE_PYTHON_SCRIPTS}"'
    assert args["DESTINATION_DIR"] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${CUTS_ENGINE_NAME}"
    assert args["INSTALL_DIR"] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${CUTS_ENGINE_NAME}"
    assert sets["CUTS_ENGINE_NAME"] == ["CUTSSegmentationLib"]


def test_in_slicer_tests_are_registered():
    (call,) = cmake_calls(MODULE_DIR / "CMakeLists.txt", "slicer_add_python_unittest")
    assert call == ["SCRIPT", "${MODULE_NAME}.py"]
    assert cmake_calls(MODULE_DIR / "Testing" / "CMakeLists.txt", "add_subdirectory") == [["Python"]]
    registered = {c[1].replace("${MODULE_NAME}", MODULE_NAME) for c in cmake_calls(MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt", "slicer_add_python_unittest")}
    assert registered == {p.name for p in (MODULE_DIR / "Testing" / "Python").glob("*.py")}
    tree = ast.parse((MODULE_DIR / "Testing" / "Python" / f"{MODULE_NAME}ModuleTest.py").read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.ClassDef) and n.name == f"{MODULE_NAME}ModuleTest" for n in tree.body)


# =========================================================================================== extension metadata
def top_cmake() -> dict[str, str]:
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    values = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))
    values["project"] = re.search(r"^project\((\w+)\)", text, re.M).group(1)
    return values


def s4ext() -> dict[str, str]:
    values = {}
    for line in (REPO / f"{MODULE_NAME}.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            values[key] = value.strip()
    return values


#: Properties of Slicer's Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json (additionalProperties: false).
CATALOG_SCHEMA_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                             "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
CATALOG_SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}


def test_top_cmakelists_follows_the_extension_template():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    values = top_cmake()
    assert values["project"] == MODULE_NAME
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert values.get(f"EXTENSION_{key}"), f"EXTENSION_{key} missing"
    assert values["EXTENSION_CATEGORY"] == "Segmentation" and values["EXTENSION_DEPENDS"] == "NA"
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", f"add_subdirectory({MODULE_NAME})",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text
    # The patterns the ExtensionsIndex checker (scripts/check_description_files.py) uses to find the URLs.
    assert re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text)
    assert re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text)


def test_urls_point_to_files_of_this_repository():
    values = top_cmake()
    homepage = values["EXTENSION_HOMEPAGE"]
    owner_repo = re.match(r"https://github\.com/([^/]+/[^/]+)$", homepage).group(1)
    assert owner_repo.split("/")[1].startswith("Slicer"), "ExtensionsIndex wants the repository name to start with Slicer"
    for url in [values["EXTENSION_ICONURL"], *values["EXTENSION_SCREENSHOTURLS"].split()]:
        match = re.match(rf"https://raw\.githubusercontent\.com/{re.escape(owner_repo)}/main/(.+)$", url)
        assert match, f"{url} is not a raw URL of {owner_repo}"
        assert (REPO / match.group(1)).is_file(), f"{url} points to a file that is not in the repository"


def test_s4ext_and_catalog_entry_agree_with_cmakelists():
    cmake, desc = top_cmake(), s4ext()
    assert desc["homepage"] == cmake["EXTENSION_HOMEPAGE"]
    assert desc["contributors"] == cmake["EXTENSION_CONTRIBUTORS"]
    assert desc["category"] == cmake["EXTENSION_CATEGORY"]
    assert desc["iconurl"] == cmake["EXTENSION_ICONURL"]
    assert desc["description"] == cmake["EXTENSION_DESCRIPTION"]
    assert desc["screenshoturls"] == cmake["EXTENSION_SCREENSHOTURLS"]
    assert desc["depends"] == cmake["EXTENSION_DEPENDS"]
    assert desc["scm"] == "git" and desc["scmurl"].removesuffix(".git") == cmake["EXTENSION_HOMEPAGE"]

    path = REPO / f"{MODULE_NAME}.json"
    assert b"\r" not in path.read_bytes(), "ExtensionsIndex requires LF line endings"
    entry = json.loads(path.read_text(encoding="utf-8"))
    assert path.stem == cmake["project"], "the catalog entry is named after the extension (project name)"
    assert set(entry) <= CATALOG_SCHEMA_PROPERTIES and CATALOG_SCHEMA_REQUIRED <= set(entry)
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1\.0\.\d\.json#?",
        entry["$schema"],
    )
    assert entry["category"] == cmake["EXTENSION_CATEGORY"]
    assert entry["scm_url"] == desc["scmurl"] and entry["scm_revision"] == desc["scmrevision"]
    depends = [] if cmake["EXTENSION_DEPENDS"] == "NA" else cmake["EXTENSION_DEPENDS"].split()
    assert entry["build_dependencies"] == depends
    assert isinstance(entry.get("tier", 1), int) and 1 <= entry.get("tier", 1) <= 5
    # The module shows up in the same category of the module selector.
    assert f'translate("qSlicerAbstractCoreModule", "{cmake["EXTENSION_CATEGORY"]}")' in MODULE_FILE.read_text(encoding="utf-8")


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(MODULE_DIR / "Resources" / "Icons" / f"{MODULE_NAME}.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)
        assert len(np.unique(np.asarray(icon.convert("RGB")).reshape(-1, 3), axis=0)) > 6, "the icon should show several coloured regions"


# =========================================================================================== environment
def test_device_choice_falls_back_to_cpu_and_names_the_gpu():
    assert choose_device("cuda", []) == ("cpu", "No NVIDIA GPU was found: running on the CPU instead.")
    assert choose_device("cuda", ["NVIDIA H100"])[0] == "cuda"
    assert choose_device("auto", [])[0] == "auto" and choose_device("cpu", ["X"])[0] == "cpu"
    assert device_label("cuda", ["NVIDIA H100"]) == "cuda (NVIDIA H100)"
    assert "no NVIDIA GPU" in device_label("cuda", [])
    with pytest.raises(ValueError):
        choose_device("tpu", [])


def test_missing_requirements_are_found_without_importing():
    requirements = read_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    assert {r.split(">=")[0] for r in requirements} >= {"scikit-image", "SimpleITK", "safetensors"}
    assert missing_requirements(requirements) == []  # the test environment has the engine installed
    assert missing_requirements(["numpy>=1.0", "cuts-no-such-package>=1", "numpy>=999"]) == [
        "cuts-no-such-package>=1",
        "numpy>=999",
    ]
    assert Path(find_python_executable()).exists()


# =========================================================================================== background jobs
def test_commands_run_the_engine_module_with_progress_lines(tmp_path: Path):
    args = segment_args(tmp_path / "in.nrrd", tmp_path / "out", model=tmp_path / "m.safetensors", epochs=5, device="cpu")
    assert args[:4] == ["segment", str(tmp_path / "in.nrrd"), "--out", str(tmp_path / "out")]
    assert "--model" in args and "--epochs" not in args  # epochs only matter when training on the input
    assert args[-2:] == ["--progress", "lines"] and args[args.index("--device") + 1] == "cpu"
    args = train_args([tmp_path / "a.nrrd", tmp_path / "b.nrrd"], tmp_path / "m.safetensors", epochs=3)
    assert args[:3] == ["train", str(tmp_path / "a.nrrd"), str(tmp_path / "b.nrrd")] and "--epochs" in args
    assert engine_command("py", ["x"]) == ["py", "-m", "CUTSSegmentationLib", "x"]
    assert (engine_directory() / "CUTSSegmentationLib" / "__init__.py").is_file()
    env = child_environment({"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(engine_directory()), "/elsewhere"]


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_job_streams_progress_and_output(tmp_path: Path):
    seen: list[tuple[str, float, str]] = []
    output: list[str] = []
    job = EngineJob(work_dir=tmp_path / "job", on_progress=lambda *p: seen.append(p), on_output=output.append)
    job.start_command(_script(f"""
        import sys
        print("{PROGRESS_LINE_PREFIX} train 0.5000 epoch 1/2", flush=True)
        print("plain line", flush=True)
        print("{PROGRESS_LINE_PREFIX} condense 1.0000 7 levels", flush=True)
        print("warning on stderr", file=sys.stderr)
    """))
    result = job.wait(timeout=60)
    assert result.ok and result.returncode == 0 and result.message().startswith("Finished")
    assert seen == [("train", 0.5, "epoch 1/2"), ("condense", 1.0, "7 levels")]
    assert "plain line" in output and "warning on stderr" in output
    assert job.last_progress == ("condense", 1.0, "7 levels")
    job.cleanup()
    assert not job.work_dir.exists()


def test_job_failure_reports_the_engine_error_line(tmp_path: Path):
    job = EngineJob(work_dir=tmp_path / "job")
    job.start_command(_script("""
        import sys
        print("some detail", file=sys.stderr)
        print("cuts: error: input.nrrd: the image is constant", file=sys.stderr)
        sys.exit(2)
    """))
    result = job.wait(timeout=60)
    assert not result.ok and result.returncode == 2
    assert result.error == "cuts: error: input.nrrd: the image is constant" == result.message()


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_kills_the_process_tree_and_removes_the_work_folder():
    progress: list[tuple[str, float, str]] = []
    output: list[str] = []
    job = EngineJob(on_progress=lambda *p: progress.append(p), on_output=output.append)
    (job.path("result")).mkdir()
    (job.path("result", "partial.npz")).write_bytes(b"half written")
    # A child that reports progress, starts a grandchild (as the PythonSlicer launcher does) and keeps working.
    job.start_command(_script(f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("GRANDCHILD", grandchild.pid, flush=True)
        for i in range(1200):
            print("{PROGRESS_LINE_PREFIX} train", f"{{i / 1200:.4f}}", "epoch", i, flush=True)
            time.sleep(0.1)
    """))
    deadline = time.monotonic() + 60
    grandchild = None
    while time.monotonic() < deadline and (grandchild is None or not progress):
        assert job.poll() is None
        grandchild = next((int(line.split()[1]) for line in output if line.startswith("GRANDCHILD")), None)
        time.sleep(0.05)
    assert grandchild is not None and progress, "the child did not start"
    child = job.pid
    assert _alive(child) and _alive(grandchild)

    result = job.cancel()
    assert result.cancelled and not result.ok and result.message().startswith("Cancelled")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_alive(child) or _alive(grandchild)):
        time.sleep(0.05)
    assert not _alive(child), "the job process survived cancel"
    assert not _alive(grandchild), "a grandchild of the job survived cancel"
    assert not job.work_dir.exists(), "the job's temporary folder (with its partial output) was not removed"
    assert job.poll() is result and job.cancel() is result  # idempotent


# =========================================================================================== MRML operations
def _oblique_geometry() -> Geometry:
    c, s = np.cos(0.3), np.sin(0.3)
    return Geometry(spacing=(0.8, 0.6, 2.0), origin=(-12.0, 30.5, 7.0), direction=(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))


def _hierarchy(shape=(4, 20, 24), geometry: Optional[Geometry] = None) -> Hierarchy:
    """Hand-made 3-level hierarchy: 8 blocks -> 4 -> 2, plus a persistent map."""
    z, y, x = shape
    blocks = (np.arange(x) * 4 // x)[None, None, :] + 4 * (np.arange(y) * 2 // y)[None, :, None]
    fine = np.broadcast_to(blocks, shape).astype(np.uint16) + 1
    middle = ((fine - 1) // 2 + 1).astype(np.uint16)
    coarse = ((fine - 1) // 4 + 1).astype(np.uint16)
    persistent = np.where(fine <= 2, fine, 0).astype(np.uint16)
    return Hierarchy(
        levels=np.stack([fine, middle, coarse]),
        n_clusters=[8, 4, 2],
        level_steps=[0, 1, 2],
        atom_map=(fine - 1).astype(np.uint32),
        merge_tree=np.stack([np.arange(8), np.arange(8) // 2, np.arange(8) // 4]).astype(np.uint32),
        persistent=persistent,
        geometry=geometry or Geometry(),
        is_2d=False,
    )


@pytest.fixture()
def scene_and_volume():
    scene = slicer.vtkMRMLScene()
    rng = np.random.default_rng(0)
    image = ImageData(
        array=rng.integers(0, 200, size=(4, 20, 24, 1)).astype(np.float32),
        geometry=_oblique_geometry(),
        is_2d=False,
        source="test",
        source_dtype="uint8",
    )
    return scene, image_to_volume_node(scene, image, name="input")


def test_levels_parse_describe_and_push(scene_and_volume):
    scene, volume = scene_and_volume
    hierarchy = _hierarchy()
    assert operations.parse_level(None) == "persistent" == operations.parse_level(" Persistent ")
    assert operations.parse_level("2") == 2 and operations.parse_level(-1) == -1
    with pytest.raises(InputError, match="integer level index"):
        operations.parse_level("coarse")
    with pytest.raises(InputError, match="out of range"):
        operations.level_label_map(hierarchy, 3)
    assert operations.default_level(hierarchy) == 1
    assert operations.level_description(hierarchy, 0) == "Level 0 of 2 (0 = finest): 8 clusters"
    assert operations.level_description(hierarchy, "persistent") == "Persistent structures: 2"

    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    for level, count in ((0, 8), (1, 4), (-1, 2), ("persistent", 2)):
        operations.push_level(hierarchy, level, segmentation, volume)
        segments = segmentation.GetSegmentation()
        assert segments.GetNumberOfSegments() == count
    assert segments.GetNthSegment(0).GetName() == "Structure 1"
    operations.push_level(hierarchy, 0, segmentation, volume)
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == "Cluster 1"
    assert operations.reference_volume_of(segmentation) is volume


def test_keep_structure_at_seed(scene_and_volume):
    scene, volume = scene_and_volume
    hierarchy = _hierarchy()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    label = operations.keep_structure_at_seed(hierarchy, 1, (20, 15, 2), segmentation, volume)
    assert label == int(hierarchy.level(1)[2, 15, 20])
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == f"Cluster {label}"
    with pytest.raises(InputError, match="unlabelled"):
        operations.keep_structure_at_seed(hierarchy, "persistent", (20, 15, 2), segmentation, volume)
    with pytest.raises(InputError, match="outside"):
        operations.keep_structure_at_seed(hierarchy, 0, (99, 0, 0), segmentation, volume)

    # A markups seed is mapped through the volume's oblique geometry to the voxel it lies in.
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    ras = volume_node_to_image(volume).geometry.index_to_ras((5, 3, 1))
    markups.AddControlPoint(*[float(v) for v in ras])
    assert operations.seed_voxel(markups, volume) == (5, 3, 1)
    assert operations.seed_voxel((4.6, 2.8), volume) == (5, 3, 0)


def test_volume_files_round_trip_for_the_child_process(tmp_path: Path, scene_and_volume):
    from CUTSSegmentationLib.io.reading import read_image

    scene, volume = scene_and_volume
    path = operations.write_volume_file(volume, tmp_path / "job" / "input.nrrd")
    on_disk = read_image(path)
    in_scene = volume_node_to_image(volume)
    np.testing.assert_array_equal(on_disk.array, in_scene.array)
    np.testing.assert_allclose(on_disk.geometry.ijk_to_ras_matrix(), in_scene.geometry.ijk_to_ras_matrix(), atol=1e-6)

    other_scene = slicer.vtkMRMLScene()  # kept referenced: a scene that is freed takes its storage nodes along
    loaded = operations.read_volume_file(other_scene, path)
    assert loaded.IsA("vtkMRMLScalarVolumeNode") and loaded.GetStorageNode() is not None
    np.testing.assert_array_equal(volume_node_to_image(loaded).array, in_scene.array)

    rgb = ImageData(array=np.random.default_rng(1).integers(0, 255, (1, 16, 18, 3)).astype(np.float32),
                    geometry=Geometry(), is_2d=True, source="rgb", source_dtype="uint8")
    vector_node = image_to_volume_node(scene, rgb)
    back = read_image(operations.write_volume_file(vector_node, tmp_path / "rgb.nrrd"))
    assert back.channels == 3 and back.is_2d
    with pytest.raises(InputError, match="not found"):
        operations.read_volume_file(scene, tmp_path / "missing.nrrd")


def test_copy_model_file_takes_the_card_along(tmp_path: Path):
    source = tmp_path / "job" / "model.safetensors"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    operations.card_path(source).write_text('{"channels": 1}')
    saved = operations.copy_model_file(source, tmp_path / "keep" / "mine")
    assert saved == tmp_path / "keep" / "mine.safetensors" and saved.read_bytes() == b"weights"
    assert (tmp_path / "keep" / "mine.json").read_text() == '{"channels": 1}'
    with pytest.raises(InputError, match="not found"):
        operations.copy_model_file(tmp_path / "nope.safetensors", tmp_path / "x.safetensors")


def test_background_segmentation_job_end_to_end(tmp_path: Path):
    """What the panel does, minus Qt: volume node -> NRRD -> child `cuts segment` -> hierarchy -> segmentation."""
    from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d

    scene = slicer.vtkMRMLScene()
    image, _truth = synthetic_image_2d(size=40, seed=3)
    volume = image_to_volume_node(scene, image, name="phantom")
    stages: list[str] = []
    job = EngineJob(python=sys.executable, on_progress=lambda stage, fraction, message: stages.append(stage))
    input_path = operations.write_volume_file(volume, job.path("input.nrrd"))
    job.start(segment_args(input_path, job.path("result"), epochs=1, device="cpu"))
    result = job.wait(timeout=600)
    assert result.ok, result.message() + "\n" + "\n".join(result.stderr_tail)
    assert {"train", "embed", "condense"} <= set(stages)
    hierarchy = operations.load_job_hierarchy(job.path("result"))
    job.cleanup()
    assert not job.work_dir.exists()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    for level in range(hierarchy.n_levels):
        operations.push_level(hierarchy, level, segmentation, volume)
        assert segmentation.GetSegmentation().GetNumberOfSegments() == int(hierarchy.n_clusters[level])


# =========================================================================================== module logic (console API)
def _load_module_with_stubbed_gui(monkeypatch, scene):
    """Import CUTSSegmentation.py with minimal stand-ins for the parts of Slicer that need the application.

    Stubbed: slicer.ScriptedLoadableModule (base classes with no behaviour the logic relies on),
    slicer.parameterNodeWrapper (identity decorator), slicer.i18n (identity), qt and ctk (empty), and
    slicer.mrmlScene (set to a real slicer-core scene). Everything the logic does to MRML runs for real.
    The widget class is defined but never instantiated: it needs Qt.
    """
    import importlib.util
    import types
    import unittest

    base = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[: -len("Logic")]

    class ScriptedLoadableModuleTest(unittest.TestCase):
        pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest):
        setattr(base, cls.__name__, cls)
    base.__all__ = [c.__name__ for c in (ScriptedLoadableModule, ScriptedLoadableModuleWidget,
                                         ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest)]
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    for name, module in (("slicer.ScriptedLoadableModule", base), ("slicer.parameterNodeWrapper", wrapper),
                         ("slicer.i18n", i18n), ("qt", types.ModuleType("qt")), ("ctk", types.ModuleType("ctk"))):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, MODULE_NAME, module)
    spec.loader.exec_module(module)
    return module


def test_logic_console_api_runs_on_a_real_scene(monkeypatch, tmp_path: Path):
    from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
    from CUTSSegmentationMRML import find_hierarchy_nodes

    scene = slicer.vtkMRMLScene()
    module = _load_module_with_stubbed_gui(monkeypatch, scene)
    logic = module.CUTSSegmentationLogic()
    assert logic.missingDependencies() == []
    image, _truth = synthetic_image_2d(size=40, seed=5)
    volume = image_to_volume_node(scene, image, name="phantom")

    model = logic.train(volume, epochs=1, device="cpu")
    model_path = logic.saveModel(model, str(tmp_path / "encoder.safetensors"))
    assert Path(model_path).is_file() and operations.card_path(model_path).is_file()

    hierarchy = logic.segment(volume, model=logic.loadModel(model_path), device="cpu")
    assert len(find_hierarchy_nodes(scene, volume)) == 1
    segmentation = logic.pushLevel(hierarchy, 0)  # reference volume remembered from segment()
    assert segmentation.GetSegmentation().GetNumberOfSegments() == int(hierarchy.n_clusters[0])
    logic.pushLevel(hierarchy, -1, segmentation)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == int(hierarchy.n_clusters[-1])

    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    markups.AddControlPoint(*[float(v) for v in image.geometry.index_to_ras((20, 20, 0))])
    kept = logic.binarizeAtSeed(hierarchy, markups, level=0, segmentationNode=segmentation)
    assert kept is segmentation and segmentation.GetSegmentation().GetNumberOfSegments() == 1

    # A second segmentation replaces the first hierarchy kept for this volume.
    logic.segment(volume, model=model_path, device="cpu")
    assert len(find_hierarchy_nodes(scene, volume)) == 1

    # The panel's background path: write the volume, run `cuts segment` in a child, import the hierarchy.
    job = logic.startSegmentationJob(volume, modelPath=model_path, device="cpu")
    result = job.wait(timeout=600)
    assert result.ok, result.message()
    hierarchy_node = logic.finishSegmentationJob(job, volume)
    job.cleanup()
    assert logic.hierarchyForNode(hierarchy_node).n_levels >= 1
    assert find_hierarchy_nodes(scene, volume) == [hierarchy_node]
