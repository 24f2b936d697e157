"""The module file, its .ui and its parameter node, read as source: what Slicer's loader and connectors need.

The module file, `parameters.py` and `panel.py` import Slicer's application layer (ScriptedLoadableModule,
parameterNodeWrapper, qt), so they are parsed here, not imported; test_slicer_conformance.py runs them on
Slicer's own Python when a Slicer source tree is given. The widget members below are from the Qt 5, CTK and
Slicer class documentation, limited to what the module uses.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import slicer
from CUTSSegmentationJobs import DEVICE_CHOICES
from slicer_testdata import MODULE_DIR, MODULE_NAME

MODULE_FILE = MODULE_DIR / f"{MODULE_NAME}.py"
LIB_DIR = MODULE_DIR / f"{MODULE_NAME}ModuleLib"
PANEL_FILE = LIB_DIR / "panel.py"
PARAMETERS_FILE = LIB_DIR / "parameters.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / f"{MODULE_NAME}.ui"


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def property_text(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return next(iter(prop)).text
    return None


def bound_parameters() -> dict[str, str]:
    """Widget name -> SlicerParameterName of each widget the wrapper's connectGui binds."""
    return {
        name: property_text(widget, "SlicerParameterName")
        for name, widget in ui_widgets().items()
        if property_text(widget, "SlicerParameterName") is not None
    }


def _is_ui(node: ast.AST) -> bool:
    """`self.ui` or a local alias `ui`."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "ui"
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    ) or (isinstance(node, ast.Name) and node.id == "ui")


def ui_uses(tree: ast.Module) -> dict[str, set[str]]:
    """ui.<widget>.<member> uses in the panel code: widget name -> members used (may be empty)."""
    uses: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_ui(node.value):
            uses.setdefault(node.attr, set())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and _is_ui(node.value.value):
            uses[node.value.attr].add(node.attr)
    return uses


def connected_signals(tree: ast.Module) -> list[tuple[str, str]]:
    """(widget name, signal signature) of every ui.<widget>.connect("signal(...)", slot)."""
    return [
        (node.func.value.attr, node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "connect"
        and isinstance(node.func.value, ast.Attribute)
        and _is_ui(node.func.value.value)
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


#: Class the panel code expects for every ui.X it uses (update together with the .ui).
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
    "addStructureButton": "QPushButton",
    "lookCloserButton": "QPushButton",
    "undoButton": "QPushButton",
    "outputSelector": "qMRMLNodeComboBox",
    "showInSegmentEditorButton": "QPushButton",
    "show3DButton": "QPushButton",
    "exportHierarchyButton": "QPushButton",
    "progressBar": "QProgressBar",
    "cancelButton": "QPushButton",
    "statusLabel": "QLabel",
}
KNOWN_MEMBERS = {
    "QPushButton": {
        "enabled",
        "checked",
        "checkable",
        "text",
        "toolTip",
        "click",
        "connect",
        "setEnabled",
    },
    "QLabel": {"text", "setText", "toolTip"},
    "QSpinBox": {"value", "minimum", "maximum", "enabled"},
    "QComboBox": {"setItemText", "currentIndex", "count", "enabled"},
    "QLineEdit": {"text", "enabled"},
    "QProgressBar": {"setValue", "setFormat", "value", "format", "setRange"},
    "ctkSliderWidget": {
        "value",
        "minimum",
        "maximum",
        "enabled",
        "singleStep",
        "connect",
        "blockSignals",
    },
    "qMRMLNodeComboBox": {"currentNode", "setCurrentNode", "enabled", "connect"},
    "qSlicerMarkupsPlaceWidget": {
        "setCurrentNode",
        "placeMultipleMarkups",
        "placeModeEnabled",
        "buttonsVisible",
    },
}
KNOWN_SIGNALS = {
    "QPushButton": {"clicked(bool)", "clicked()", "toggled(bool)"},
    "ctkSliderWidget": {"valueChanged(double)", "valueIsChanging(double)"},
    "qMRMLNodeComboBox": {
        "currentNodeChanged(vtkMRMLNode*)",
        "currentNodeChanged(bool)",
    },
    "QComboBox": {"currentIndexChanged(int)"},
}


def test_every_widget_the_panel_uses_exists_in_the_ui_with_the_expected_class():
    widgets = ui_widgets()
    uses = ui_uses(parse(PANEL_FILE))
    assert len(uses) >= 12, "the panel code uses almost no ui.X: the parser is broken"
    assert set(uses) <= set(EXPECTED_UI_CLASSES), f"add {sorted(set(uses) - set(EXPECTED_UI_CLASSES))} with its class"
    for name, members in uses.items():
        assert name in widgets, f"ui.{name} is used by the panel but missing from {UI_FILE.name}"
        cls = EXPECTED_UI_CLASSES[name]
        assert widgets[name].get("class") == cls, f"{name} is a {widgets[name].get('class')} in the .ui, not {cls}"
        assert members <= KNOWN_MEMBERS[cls], f"ui.{name}: {sorted(members - KNOWN_MEMBERS[cls])} not members of {cls}"


def test_connected_signals_exist_on_their_widgets():
    signals = connected_signals(parse(PANEL_FILE))
    assert ("segmentButton", "clicked(bool)") in signals and (
        "levelSliderWidget",
        "valueChanged(double)",
    ) in signals
    for name, signal in signals:
        assert signal in KNOWN_SIGNALS.get(EXPECTED_UI_CLASSES[name], set()), f"{name} has no signal {signal}"


def test_ui_is_a_qmrmlwidget_with_declared_custom_widgets_and_scene_connections():
    root = ET.parse(UI_FILE).getroot()
    assert root.findtext("class") == MODULE_NAME
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == MODULE_NAME
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared, "undeclared custom widget classes"
    receivers = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml_widgets = {
        w.get("name")
        for w in root.iter("widget")
        if w.get("class") in ("qMRMLNodeComboBox", "qSlicerMarkupsPlaceWidget")
    }
    assert mrml_widgets <= receivers, f"no scene connection for {sorted(mrml_widgets - receivers)}"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate object names in the .ui"


# =========================================================================================== parameter node
def parameter_class() -> ast.ClassDef:
    for node in parse(PARAMETERS_FILE).body:
        if isinstance(node, ast.ClassDef) and any(
            ast.unparse(d) == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return node
    raise AssertionError("no @parameterNodeWrapper class in parameters.py")


def parameter_fields() -> dict[str, ast.expr]:
    return {s.target.id: s.annotation for s in parameter_class().body if isinstance(s, ast.AnnAssign)}


def _parts(annotation: ast.expr) -> tuple[str, list[ast.expr]]:
    """('int', [WithinRange(...)]) for Annotated[int, ...]; ('Optional', [Union[...]]) etc."""
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        elements = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        if annotation.value.id == "Annotated":
            return ast.unparse(elements[0]), list(elements[1:])
        return annotation.value.id, list(elements)
    return ast.unparse(annotation), []


def union_members(annotation: ast.expr) -> list[str] | None:
    """The members of a Union/Optional annotation (Optional[X] -> X, None), None when it is no union."""
    base, parts = _parts(annotation)
    if base == "Optional":
        return (union_members(parts[0]) or [ast.unparse(parts[0])]) + ["None"]
    if base == "Union":
        return [m for p in parts for m in (union_members(p) or [ast.unparse(p)])]
    return None


def test_every_union_of_nodes_can_hold_none():
    """The wrapper writes each field's default into a new parameter node; a Union takes its first member's
    default (None), which only a None member serializes (Slicer: serializers.py UnionSerializer)."""
    unions = {name: union_members(a) for name, a in parameter_fields().items() if union_members(a) is not None}
    assert unions, "the input volume is a union of node types"
    for name, members in unions.items():
        assert "None" in members, f"{name}: Union {members} has no None: getParameterNode() raises on a new scene"


def test_every_slicer_parameter_name_is_a_field_of_the_parameter_node():
    fields, bound = parameter_fields(), bound_parameters()
    assert len(bound) >= 7
    for widget_name, parameter in bound.items():
        assert parameter in fields, f"{widget_name} is bound to '{parameter}', not a field of the parameter node"
    assert len(set(bound.values())) == len(bound), "two widgets bound to the same parameter"


def test_bound_widgets_have_a_connector_in_every_supported_slicer():
    """Mirror of the `canRepresent` rules common to Slicer 5.8 - main (guiConnectors.py)."""
    fields, widgets = parameter_fields(), ui_widgets()
    for name, parameter in bound_parameters().items():
        widget, annotation = widgets[name], fields[parameter]
        base, validators = _parts(annotation)
        cls = widget.get("class")
        validator_names = {ast.unparse(v.func) for v in validators if isinstance(v, ast.Call)}
        if cls == "qMRMLNodeComboBox":
            classes = {m for m in (union_members(annotation) or [base]) if m != "None"}
            node_types = [s.text for s in widget.find("property[@name='nodeTypes']").iter("string")]
            assert set(node_types) == classes and all(hasattr(slicer, c) for c in classes), name
        elif cls == "QComboBox":
            assert base == "str" and "Choice" in validator_names, f"{parameter} needs Annotated[str, Choice]"
        elif cls in ("QSpinBox", "QSlider"):
            assert base == "int" and "WithinRange" in validator_names, f"{parameter}: bounded int expected"
        elif cls == "ctkSliderWidget":
            # Slicer 5.8 connects ctkSliderWidget to float only (int from 5.10 on).
            assert base == "float" and "WithinRange" in validator_names, f"{parameter}: bounded float expected"
        elif cls in ("QLineEdit", "QLabel"):
            assert base == "str"
        elif cls == "QCheckBox":
            assert base == "bool", f"{parameter}: a check box holds a bool"
        elif cls == "QPushButton":
            assert base == "bool" and property_text(widget, "checkable") == "true", f"{name} must be checkable"
        else:  # pragma: no cover - a new widget class needs a rule here
            raise AssertionError(f"no connector rule for {cls} ({name})")


def test_the_granularity_slider_is_driven_by_the_controller_not_bound():
    """Its range depends on the hierarchy, which a WithinRange cannot say; the panel writes range and value."""
    assert "levelSliderWidget" not in bound_parameters()
    assert "level" in parameter_fields()


def test_parameter_defaults_satisfy_their_validators():
    defaults = {s.target.id: s.value for s in parameter_class().body if isinstance(s, ast.AnnAssign) and s.value}
    constants = {
        "MAX_LEVEL": 255,
        "MAX_EPOCHS": 1000,
        "DEVICE_CHOICES": DEVICE_CHOICES,
        "list": list,
    }
    for name, annotation in parameter_fields().items():
        base, validators = _parts(annotation)
        if name not in defaults:
            assert base.startswith("vtkMRML") or union_members(annotation), f"{name} has no default"
            continue
        value = ast.literal_eval(defaults[name])
        for validator in validators:
            arguments = [eval(ast.unparse(a), constants) for a in validator.args]
            if ast.unparse(validator.func) == "WithinRange":
                assert arguments[0] <= value <= arguments[1], name
            if ast.unparse(validator.func) == "Choice":
                assert value in arguments[0], name


# =========================================================================================== module file
ALLOWED_IMPORTS = {
    "os",
    "slicer",
    "slicer.i18n",
    "slicer.ScriptedLoadableModule",
    f"{MODULE_NAME}ModuleLib",
    f"{MODULE_NAME}ModuleLib.dependencies",
    f"{MODULE_NAME}ModuleLib.panel",
    f"{MODULE_NAME}ModuleLib.parameters",
}


def test_module_file_is_a_thin_shell_that_runs_nothing_at_import():
    tree = parse(MODULE_FILE)
    assert len(MODULE_FILE.read_text(encoding="utf-8").splitlines()) <= 150
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef)), (
            f"line {node.lineno}: {type(node).__name__} runs at import of the module file"
        )
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert set(names) <= ALLOWED_IMPORTS, f"line {node.lineno}: import of {names}"
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}
    assert classes == {
        MODULE_NAME: ["ScriptedLoadableModule"],
        f"{MODULE_NAME}Widget": ["ScriptedLoadableModuleWidget"],
        f"{MODULE_NAME}Logic": ["ScriptedLoadableModuleLogic", "SegmentationLogic"],
        f"{MODULE_NAME}Test": ["ScriptedLoadableModuleTest"],
    }
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{MODULE_NAME}Widget")
    assert {"setup", "cleanup", "enter", "exit", "onReload"} <= {
        n.name for n in widget.body if isinstance(n, ast.FunctionDef)
    }


#: Names of Slicer's Python API that exist only in the Slicer application (not in PyPI slicer-core).
GUI_ONLY = {
    "app",
    "mrmlScene",
    "modules",
    "qSlicerMarkupsPlaceWidget",
    "packaging",
    "i18n",
    "ScriptedLoadableModule",
    "parameterNodeWrapper",
    "selfTests",
}


def _slicer_chains(tree: ast.Module) -> set[tuple[str, ...]]:
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, current = [], node
            while isinstance(current, ast.Attribute):
                parts.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id == "slicer":
                chains.add(tuple(reversed(parts)))
        if isinstance(node, ast.ImportFrom) and node.module == "slicer":
            chains |= {(a.name,) for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
            chains |= {("util", a.name) for a in node.names}
    return chains


@pytest.mark.parametrize(
    "path",
    sorted(MODULE_DIR.rglob("*.py")),
    ids=lambda p: str(p.relative_to(MODULE_DIR)),
)
def test_every_slicer_name_used_exists_in_slicer(path: Path):
    for chain in sorted(_slicer_chains(parse(path))):
        head = chain[0]
        if head in GUI_ONLY:
            continue
        assert hasattr(slicer, head), f"slicer.{head} is neither in Slicer's core nor in the GUI-only list"
        if head == "util" and len(chain) > 1:
            assert hasattr(slicer.util, chain[1]), f"slicer.util.{chain[1]} does not exist"
        if head.startswith("vtk") and len(chain) > 1:
            assert hasattr(getattr(slicer, head), chain[1]), f"slicer.{head}.{chain[1]} does not exist"
        if head == "mrmlScene" and len(chain) > 1:
            assert hasattr(slicer.vtkMRMLScene, chain[1]), f"vtkMRMLScene has no {chain[1]}"


QT_FILES = {"panel.py"}  # the Qt glue; parameters.py needs Slicer's wrapper, not Qt


def test_only_the_panel_touches_qt_or_the_application():
    for package in ("Jobs", "MRML", "ModuleLib"):
        for path in (MODULE_DIR / f"{MODULE_NAME}{package}").glob("*.py"):
            tree = parse(path)
            imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            imported |= {
                (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
            }
            if path.name in QT_FILES:
                continue
            assert not imported & {"qt", "ctk"}, f"{path.name} imports Qt"
            used = {c[0] for c in _slicer_chains(tree)} & {
                "mrmlScene",
                "modules",
                "qSlicerMarkupsPlaceWidget",
            }
            assert path.name == "logic.py" or not used, f"{path.name} uses slicer.{sorted(used)}"


def test_engine_names_are_imported_in_one_place():
    """Only CUTSSegmentationJobs/engine.py imports the engine package (a move inside the engine changes one file)."""
    for path in MODULE_DIR.rglob("*.py"):
        if path.name == "engine.py" or "Testing" in path.parts:
            continue
        tree = parse(path)
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
        assert not [m for m in modules if m.split(".")[0] == "CUTSSegmentationLib"], path.name
    assert sys.modules.get("CUTSSegmentationJobs.engine") is not None
