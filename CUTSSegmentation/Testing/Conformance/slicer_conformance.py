"""Run Slicer's own pure-Python layer over the CUTSSegmentation module, on slicer-core's real MRML.

    python slicer_conformance.py /path/to/Slicer-source [--report FILE]

Slicer's `Base/Python/slicer` files (parameterNodeWrapper, ScriptedLoadableModule, util, i18n, packaging)
are loaded from the given source tree as `slicer.<name>` on top of PyPI slicer-core; only Qt and CTK are
absent: `qt` and `ctk` are placeholder modules whose classes record attribute writes and accept any call.
Then the module is driven through that code as Slicer would: its module file imported and its module and
logic classes built, a fresh parameter node created, every field set to every allowed value (None
included) and to rejected ones, the scene saved and read back, the .ui's bound widgets connected with
connectGui, the panel controller run on the real wrapper, the Slicer functions the module calls looked
up, and the catalog entry checked against the tree's schema.

Each check prints one line, PASS or FAIL; the exit code is the number of failures (capped at 100). Run it
in a process of its own: it replaces `slicer.util` and adds `qt`/`ctk` to `sys.modules`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import re
import sys
import tempfile
import traceback
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

MODULE_DIR = Path(__file__).resolve().parents[2]
REPO = MODULE_DIR.parent
MODULE_NAME = "CUTSSegmentation"
UI_FILE = MODULE_DIR / "Resources" / "UI" / f"{MODULE_NAME}.ui"


# --------------------------------------------------------------------------------------- placeholders for Qt
class _Signal:
    """A signal or method of a placeholder widget: callable, connectable, does nothing."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None

    def connect(self, *args: Any) -> None:
        return None

    def disconnect(self, *args: Any) -> None:
        return None


class PlaceholderWidget:
    """Stands for any Qt/CTK/Slicer widget class: attributes written are kept, anything else is a no-op call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_properties"] = {}
        self.__dict__["_current_node"] = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Signal()

    def property(self, name: str) -> Any:
        return self._properties.get(name)

    def setProperty(self, name: str, value: Any) -> None:
        self._properties[name] = value

    def isWidgetType(self) -> bool:
        return False  # connectGui then walks the ui namespace's attributes, as for childWidgetVariables

    def setCurrentNode(self, node: Any) -> None:
        self.__dict__["_current_node"] = node

    def currentNode(self) -> Any:
        return self._current_node


class PlaceholderApplication(PlaceholderWidget):
    """Stands for slicer.app (a Qt application): translations return the text, the cache is a temporary folder."""

    cachePath = tempfile.gettempdir()

    def translate(self, context: str, text: str) -> str:
        return text

    def testingEnabled(self) -> bool:
        return False


#: The parameter node's fields and their defaults on a fresh scene.
FIELD_DEFAULTS = {
    "inputVolume": None,
    "secondVolume": None,
    "thirdVolume": None,
    "epochs": 0,
    "device": "auto",
    "modelPath": "",
    "hierarchyNode": None,
    "level": 0,
    "showPersistent": False,
    "automaticLevel": True,
    "seedPoints": None,
    "outputSegmentation": None,
    "previewSegmentation": None,
}


def placeholder_module(name: str) -> types.ModuleType:
    """A module whose every attribute is a distinct PlaceholderWidget subclass named after it."""
    module = types.ModuleType(name)
    classes: dict[str, type] = {}

    def __getattr__(attribute: str) -> type:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if attribute not in classes:
            classes[attribute] = type(attribute, (PlaceholderWidget,), {})
        return classes[attribute]

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return module


# --------------------------------------------------------------------------------------- loading Slicer's Python
def slicer_version(source: Path) -> str:
    text = (source / "CMakeLists.txt").read_text(encoding="utf-8", errors="replace")
    parts = [re.search(rf"set\(Slicer_VERSION_{p}\s+\"?(\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) for m in parts if m) or "unknown"


def load_slicer_python(source: Path) -> types.ModuleType:
    """slicer-core's `slicer` with Slicer's Base/Python/slicer modules of `source` loaded into it."""
    sys.modules["qt"] = placeholder_module("qt")
    sys.modules["ctk"] = placeholder_module("ctk")
    import slicer

    base = source / "Base" / "Python" / "slicer"
    widget_names = set(
        re.findall(
            r"\bslicer\.(q[A-Z]\w+)",
            "".join(p.read_text(encoding="utf-8") for p in (base / "parameterNodeWrapper").glob("*.py")),
        )
    )
    widget_names |= {
        w.get("class") for w in ET.parse(UI_FILE).getroot().iter("widget") if w.get("class").startswith("q")
    }
    for name in widget_names:
        if not hasattr(slicer, name):
            setattr(slicer, name, type(name, (PlaceholderWidget,), {}))
    slicer.app = PlaceholderApplication()

    def load(name: str, path: Path, package: bool = False) -> types.ModuleType:
        location = path / "__init__.py" if package else path
        spec = importlib.util.spec_from_file_location(
            f"slicer.{name}",
            location,
            submodule_search_locations=[str(path)] if package else None,
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"slicer.{name}"] = module
        spec.loader.exec_module(module)
        setattr(slicer, name, module)
        return module

    load("i18n", base / "i18n.py")
    load("util", base / "util.py")
    if (base / "packaging.py").is_file():
        load("packaging", base / "packaging.py")
    load("parameterNodeWrapper", base / "parameterNodeWrapper", package=True)
    load("ScriptedLoadableModule", base / "ScriptedLoadableModule.py")
    return slicer


# --------------------------------------------------------------------------------------- the checks
class Report:
    """PASS/FAIL lines, printed as they come."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures = 0

    def check(self, name: str, run: Callable[[], str | None]) -> Any:
        try:
            detail = run()
        except Exception as exc:
            self.failures += 1
            last = traceback.extract_tb(exc.__traceback__)[-1]
            self.add(f"FAIL {name}: {type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})")
            return None
        self.add(f"PASS {name}" + (f": {detail}" if detail else ""))
        return detail

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def raises(action: Callable[[], Any]) -> str | None:
    """The exception type name `action` raised, None when it raised nothing."""
    try:
        action()
    except Exception as exc:
        return type(exc).__name__
    return None


def same_node(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.GetID() == b.GetID())


def run_checks(source: Path, report: Report) -> None:
    slicer = load_slicer_python(source)
    report.add(
        f"Slicer source {source} (version {slicer_version(source)}), slicer-core MRML "
        f"{getattr(slicer, '__version__', '') or 'from PyPI'}"
    )
    sys.path.insert(0, str(MODULE_DIR))
    sys.path.insert(0, str(REPO))
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    state: dict[str, Any] = {}

    def import_module_file() -> str:
        spec = importlib.util.spec_from_file_location(MODULE_NAME, MODULE_DIR / f"{MODULE_NAME}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE_NAME] = module
        spec.loader.exec_module(module)
        state["module"] = module
        return "imports resolve against this Slicer's ScriptedLoadableModule, i18n, util, parameterNodeWrapper"

    report.check("module file imports", import_module_file)
    module = state.get("module")
    if module is None:
        return

    def module_class() -> str:
        parent = types.SimpleNamespace(path=str(MODULE_DIR / f"{MODULE_NAME}.py"))
        instance = getattr(module, MODULE_NAME)(parent)
        assert parent.title == "CUTS Segmentation" and parent.categories == ["Segmentation"], parent.__dict__
        assert MODULE_NAME in slicer.selfTests and instance.moduleName == MODULE_NAME
        return f"title '{parent.title}', category {parent.categories}, self-test registered"

    report.check("module class (ScriptedLoadableModule)", module_class)

    def fresh_parameter_node() -> str:
        logic = getattr(module, f"{MODULE_NAME}Logic")()
        parameters = logic.getParameterNode()
        state["logic"], state["parameters"] = logic, parameters
        defaults = {name: parameters.getValue(name) for name in parameters.allParameters}
        assert defaults == FIELD_DEFAULTS, defaults
        assert logic.getParameterNode().parameterNode is parameters.parameterNode, "not a singleton"
        return f"{len(defaults)} fields at their defaults"

    report.check(
        "fresh parameter node (logic.getParameterNode on a new scene)",
        fresh_parameter_node,
    )
    parameters = state.get("parameters")
    if parameters is None:
        return

    nodes = {
        "scalar": scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "scalar"),
        "vector": scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "vector"),
        "table": scene.AddNewNodeByClass("vtkMRMLTableNode", "table"),
        "markups": scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seed"),
        "segmentation": scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation"),
        "model": scene.AddNewNodeByClass("vtkMRMLModelNode", "model"),
    }
    from CUTSSegmentationJobs import DEVICE_CHOICES
    from CUTSSegmentationModuleLib.parameters import MAX_EPOCHS, MAX_LEVEL

    allowed = {
        "inputVolume": [None, nodes["scalar"], nodes["vector"], None],
        # A vector volume is a scalar volume's subclass, so the wrapper takes it; the selector (showChildNodeTypes
        # false) does not offer it and the controller refuses it among several sequences.
        "secondVolume": [None, nodes["scalar"], nodes["vector"], None],
        "thirdVolume": [None, nodes["scalar"], None],
        "epochs": [0, 1, MAX_EPOCHS // 2, MAX_EPOCHS, 0],
        "device": [*DEVICE_CHOICES, "auto"],
        "modelPath": [
            "",
            "/tmp/encoder.safetensors",
            "C:\\Users\\Zoë\\encoder µm.safetensors",
            "",
        ],
        "hierarchyNode": [None, nodes["table"], None],
        "level": [*range(MAX_LEVEL + 1), 0],
        "showPersistent": [True, False],
        "automaticLevel": [False, True],
        "seedPoints": [None, nodes["markups"], None],
        "outputSegmentation": [None, nodes["segmentation"], None],
        "previewSegmentation": [None, nodes["segmentation"], None],
    }
    rejected = {
        "inputVolume": [nodes["segmentation"], nodes["model"], "scalar"],
        "secondVolume": [nodes["segmentation"], nodes["model"]],
        "thirdVolume": [nodes["table"], "scalar"],
        "epochs": [-1, MAX_EPOCHS + 1],
        "device": ["tpu", ""],
        "hierarchyNode": [nodes["scalar"]],
        "level": [-1, MAX_LEVEL + 1],
        "seedPoints": [nodes["segmentation"]],
        "outputSegmentation": [nodes["table"]],
        "previewSegmentation": [nodes["model"]],
    }

    def every_value(name: str) -> Callable[[], str]:
        def run() -> str:
            for value in allowed[name]:
                setattr(parameters, name, value)
                read = getattr(parameters, name)
                assert same_node(read, value) if hasattr(value, "GetID") or value is None else read == value, (
                    f"{name} = {value!r} read back as {read!r}"
                )
            refused = [raises(lambda v=v: setattr(parameters, name, v)) for v in rejected.get(name, [])]
            assert all(refused), f"{name} accepted {rejected[name][refused.index(None)]!r}"
            return (
                f"{len(allowed[name])} allowed values, {len(refused)} rejected ({', '.join(sorted(set(refused)))})"
                if refused
                else f"{len(allowed[name])} allowed values"
            )

        return run

    for name in allowed:
        report.check(f"field {name}", every_value(name))

    def save_and_reload() -> str:
        choices = [
            {
                "inputVolume": nodes["vector"],
                "secondVolume": nodes["scalar"],
                "thirdVolume": nodes["scalar"],
                "epochs": 7,
                "device": DEVICE_CHOICES[-1],
                "modelPath": "/m/é.safetensors",
                "hierarchyNode": nodes["table"],
                "level": MAX_LEVEL,
                "showPersistent": True,
                "automaticLevel": False,
                "seedPoints": nodes["markups"],
                "outputSegmentation": nodes["segmentation"],
                "previewSegmentation": nodes["segmentation"],
            },
            dict(FIELD_DEFAULTS),
        ]
        ParameterNode = type(parameters)
        for values in choices:
            for name, value in values.items():
                setattr(parameters, name, value)
            with tempfile.TemporaryDirectory() as folder:
                url = str(Path(folder) / "scene.mrml")
                scene.SetURL(url)
                assert scene.Commit(), "the scene was not written"
                other = slicer.vtkMRMLScene()
                other.SetURL(url)
                assert other.Import(), "the scene was not read back"
            found = other.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
            assert found is not None, "no parameter node in the reloaded scene"
            reloaded = ParameterNode(found)
            for name, value in values.items():
                read = getattr(reloaded, name)
                if value is None or hasattr(value, "GetID"):
                    assert (read is None) == (value is None), f"{name}: {read!r} after reload, {value!r} before"
                    assert value is None or read.GetName() == value.GetName(), name
                else:
                    assert read == value, f"{name}: {read!r} after reload, {value!r} before"
        return "every field set and all-None both survive Commit + Import"

    report.check("scene saved and reloaded", save_and_reload)

    def connect_gui() -> str:
        root = ET.parse(UI_FILE).getroot()
        widgets = {}
        for element in root.iter("widget"):
            class_name = element.get("class")
            namespace = (
                slicer if class_name.startswith("q") else sys.modules["ctk" if class_name.startswith("ctk") else "qt"]
            )
            widget = getattr(namespace, class_name)()
            for prop in element.findall("property"):
                value = next(iter(prop))
                text = value.text
                if value.tag == "bool":
                    text = text == "true"
                elif value.tag == "number":
                    text = int(text)
                if prop.get("name") == "SlicerParameterName":
                    widget.setProperty("SlicerParameterName", text)
                elif value.tag in ("bool", "number", "string"):
                    setattr(widget, prop.get("name"), text)
            widgets[element.get("name")] = widget
        ui = types.SimpleNamespace(**widgets)
        from CUTSSegmentationModuleLib.panel import boundWidgets

        tag = parameters.connectParametersToGui(boundWidgets(ui))  # what the panel does
        assert tag is not None, "connectParametersToGui returned no tag"
        connectors = parameters._parameterGUIs[tag]
        kinds = {}
        for name, connector in connectors.items():
            kinds[name] = type(connector).__name__
            for value in allowed[name]:
                connector.write(value)
                read = connector.read()
                if not isinstance(read, _Signal):
                    assert same_node(read, value) if hasattr(value, "GetID") or value is None else read == value, (
                        f"{name}: widget shows {read!r} for {value!r}"
                    )
        parameters.disconnectGui(tag)
        assert all(connector._callback is None for connector in connectors.values()), "still connected after disconnect"
        bound = {w.property("SlicerParameterName") for w in widgets.values() if w.property("SlicerParameterName")}
        assert set(kinds) == bound, f"not connected: {bound - set(kinds)}"
        plain_tag = parameters.connectGui(ui)
        parameters.disconnectGui(plain_tag)
        note = (
            "" if plain_tag is not None else "; this Slicer's connectGui returns no tag (disconnectGui cannot undo it)"
        )
        return ", ".join(f"{name}->{kind}" for name, kind in sorted(kinds.items())) + note

    report.check("connectGui on the .ui's bound widgets", connect_gui)

    def controller_on_wrapper() -> str:
        import numpy as np
        from CUTSSegmentationJobs import Accelerators
        from CUTSSegmentationJobs.engine import Geometry, Hierarchy, ImageData
        from CUTSSegmentationModuleLib import PanelController
        from CUTSSegmentationMRML import (
            ensure_segmentation_converters,
            image_to_volume_node,
        )

        logic = state["logic"]
        image = ImageData(
            array=np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1),
            geometry=Geometry(),
            is_2d=False,
            source="conformance",
            source_dtype="uint8",
        )
        volume = image_to_volume_node(scene, image, name="conformance input")
        fine = (np.arange(2 * 8 * 8).reshape(2, 8, 8) % 4 + 1).astype(np.uint16)
        hierarchy = Hierarchy(
            levels=np.stack([fine, (fine > 2).astype(np.uint16) + 1]),
            n_clusters=[4, 2],
            level_steps=[0, 1],
            atom_map=(fine - 1).astype(np.uint32),
            merge_tree=np.stack([np.arange(4), np.arange(4) // 2]).astype(np.uint32),
            geometry=Geometry(),
            is_2d=False,
        )
        hierarchy_node = logic.addHierarchyToScene(hierarchy, volume)
        controller = PanelController(logic, Accelerators())
        refreshing = []

        def on_modified(caller: Any, event: Any) -> None:  # what the panel's observer does
            if refreshing:
                return
            refreshing.append(True)
            try:
                controller.refresh()
            finally:
                refreshing.clear()

        for name in allowed:
            setattr(parameters, name, allowed[name][0] if name != "level" else 0)
        controller.setParameters(parameters)
        import vtk

        tag = parameters.AddObserver(vtk.vtkCommand.ModifiedEvent, on_modified)
        try:
            ensure_segmentation_converters(scene)  # the application's Segmentations module did this
            user = logic.createSegmentationNode(volume)
            user.GetSegmentation().AddEmptySegment("mine", "Mine", [1.0, 0.0, 0.0])
            parameters.outputSegmentation = user
            parameters.level = 200
            parameters.inputVolume = volume
            assert same_node(parameters.hierarchyNode, hierarchy_node), "the input's hierarchy was not followed"
            assert parameters.level == 1, f"level {parameters.level} outside the hierarchy's 0..1"
            state_ = controller.state()
            assert (state_.levelMaximum, state_.level, state_.levelEnabled) == (
                1,
                1,
                True,
            )
            preview = parameters.previewSegmentation
            assert preview is not None and not same_node(preview, user)
            assert preview.GetSegmentation().GetNumberOfSegments() == 2
            controller.chooseLevel(0)
            assert parameters.level == 0
            assert parameters.previewSegmentation.GetSegmentation().GetNumberOfSegments() == 4
            assert user.GetSegmentation().GetNumberOfSegments() == 1, "the preview touched the user's segmentation"
            seed = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "conformance seed")
            # Voxel (3, 2, 1): the geometry is the identity in LPS, so RAS is (-3, -2, 1).
            seed.AddControlPoint(-3.0, -2.0, 1.0)
            parameters.seedPoints = seed
            parameters.automaticLevel = False  # the level shown, at once (the automatic level is a job)
            kept = controller.addStructureAtSeed()
            assert user.GetSegmentation().GetNumberOfSegments() == 2 and kept.level == 0
            assert controller.state().undoEnabled and controller.undo()
            assert user.GetSegmentation().GetNumberOfSegments() == 1
        finally:
            parameters.RemoveObserver(tag)
        return (
            "input follows its hierarchy, level kept within 0..1, levels previewed apart from the user's "
            "segmentation, a structure added and undone through the real wrapper"
        )

    report.check("panel controller on the real parameter node", controller_on_wrapper)

    def slicer_functions() -> str:
        used = {
            "util": [
                "tryWithErrorDisplay",
                "NodeModify",
                "VTKObservationMixin",
                "loadUI",
                "childWidgetVariables",
                "startupEnvironment",
                "pip_install",
                "confirmOkCancelDisplay",
                "errorDisplay",
                "selectModule",
                "getModuleWidget",
                "getModuleLogic",
                "mainWindow",
                "reloadScriptedModule",
            ],
        }
        missing = [f"slicer.util.{n}" for n in used["util"] if not hasattr(slicer.util, n)]
        assert not missing, missing
        add_observer = inspect.signature(slicer.util.VTKObservationMixin.addObserver)
        assert {"obj", "event", "method"} <= set(add_observer.parameters), add_observer
        reload_source = inspect.getsource(slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget.onReload)
        assert "reloadScriptedModule" in reload_source
        widget_methods = [
            m
            for m in ("setup", "cleanup", "onReload")
            if not hasattr(slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget, m)
        ]
        assert not widget_methods, widget_methods
        pip_install = inspect.getsource(slicer.util.pip_install)
        assert "list" in pip_install, "pip_install does not take a list of requirements"
        packaging = getattr(slicer, "packaging", None)
        if packaging is None:
            note = "no slicer.packaging (before 5.12): pip_install is used"
        else:
            ensure = inspect.signature(packaging.pip_ensure)
            assert {"prompt_install", "requester"} <= set(ensure.parameters), ensure
            assert packaging.pip_check("numpy"), "pip_check cannot see numpy"
            requirements = packaging.load_requirements(MODULE_DIR / "Resources" / "requirements.txt")
            note = f"slicer.packaging.pip_ensure(prompt_install, requester); requirements parse: {len(requirements)}"
        return f"{len(used['util'])} slicer.util names, VTKObservationMixin.addObserver, onReload; {note}"

    report.check("Slicer functions the module calls", slicer_functions)

    def bundled_packages() -> str:
        from CUTSSegmentationJobs import BUNDLED_WITH_SLICER

        superbuild = {p.name for p in (source / "SuperBuild").glob("External_*.cmake")}
        found = {}
        for name in BUNDLED_WITH_SLICER:
            candidates = {f"External_python-{name}.cmake", f"External_{name}.cmake"}
            found[name] = sorted(candidates & superbuild)
            assert found[name], f"{name} is not built with this Slicer"
        python_cmake = (source / "SuperBuild" / "External_python.cmake").read_text(encoding="utf-8")
        utf8 = "PYTHONUTF8" in python_cmake
        return f"{', '.join(BUNDLED_WITH_SLICER)} ship with Slicer; launcher sets PYTHONUTF8: {'yes' if utf8 else 'no'}"

    report.check("packages Slicer ships", bundled_packages)

    def sample_data_module() -> str:
        from CUTSSegmentationModuleLib.sample_data import (
            SAMPLE_NAME,
            register_sample_data,
        )
        from CUTSSegmentationMRML import volume_node_to_image
        from CUTSSegmentationMRML.volume_files import read_volume_file

        if not hasattr(slicer, "modules"):
            slicer.modules = types.SimpleNamespace()  # the application's module registry
        spec = importlib.util.spec_from_file_location(
            "SampleData",
            source / "Modules" / "Scripted" / "SampleData" / "SampleData.py",
        )
        sample_data = importlib.util.module_from_spec(spec)
        sys.modules["SampleData"] = sample_data
        spec.loader.exec_module(sample_data)
        register_sample_data(MODULE_DIR, sample_data.SampleDataLogic)  # what startupCompleted() runs
        register_sample_data(MODULE_DIR, sample_data.SampleDataLogic)  # twice: registered once
        logic = sample_data.SampleDataLogic()
        source_ = logic.sourceForSampleName(SAMPLE_NAME)
        assert source_ is not None, "not registered"
        category = logic.categoryForSource(source_)
        assert [s.sampleName for s in slicer.modules.sampleDataSources[category]].count(SAMPLE_NAME) == 1
        with tempfile.TemporaryDirectory() as cache:
            manager = slicer.vtkCacheManager()
            manager.SetRemoteCacheDirectory(cache)
            slicer.mrmlScene.SetCacheManager(manager)  # the application's scene has one
            paths = logic.downloadSourceIntoCache(source_)  # file:// download and SHA-256 check
            assert len(paths) == 1 and Path(paths[0]).is_file(), paths
            volume = read_volume_file(slicer.vtkMRMLScene(), paths[0], name=source_.nodeNames[0])
            shape = volume_node_to_image(volume).array.shape[:3]
        return (
            f"'{SAMPLE_NAME}' in category '{category}' registered once, fetched from its file:// URI with its "
            f"checksum by this Slicer's SampleDataLogic, loads as a {shape[2]}x{shape[1]}x{shape[0]} volume"
        )

    report.check("Sample Data module", sample_data_module)

    def catalog_entry() -> str:
        entry = json.loads((REPO / f"{MODULE_NAME}.json").read_text(encoding="utf-8"))
        schema_name = entry["$schema"].rstrip("#").rsplit("/", 1)[1]
        schema_path = source / "Schemas" / schema_name
        if not schema_path.is_file():
            return f"this tree has no {schema_name}"
        try:
            import jsonschema
        except ImportError:
            return "jsonschema is not installed: not validated"
        jsonschema.validate(entry, json.loads(schema_path.read_text(encoding="utf-8")))
        return f"valid against {schema_name}"

    report.check("extension catalog entry", catalog_entry)

    def python_syntax() -> str:
        text = (source / "CMakeLists.txt").read_text(encoding="utf-8", errors="replace")
        found = re.search(r'set\(Slicer_REQUIRED_PYTHON_VERSION\s+"(\d+)\.(\d+)', text)
        if found is None:
            return "this tree names no Python version"
        version = (int(found.group(1)), int(found.group(2)))
        files = [
            *MODULE_DIR.rglob("*.py"),
            *(REPO / "CUTSSegmentationLib").rglob("*.py"),
        ]
        for path in files:
            ast.parse(
                path.read_text(encoding="utf-8"),
                filename=str(path),
                feature_version=version,
            )
        return f"{len(files)} files of the module and engine parse as Python {version[0]}.{version[1]}"

    report.check("syntax for this Slicer's Python", python_syntax)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "slicer_source",
        type=Path,
        help="a Slicer source tree (its Base/Python/slicer is used)",
    )
    parser.add_argument("--report", type=Path, help="also append the report to this file")
    args = parser.parse_args(argv)
    if not (args.slicer_source / "Base" / "Python" / "slicer" / "parameterNodeWrapper").is_dir():
        parser.error(f"{args.slicer_source} is not a Slicer source tree (no Base/Python/slicer/parameterNodeWrapper)")
    report = Report()
    try:
        run_checks(args.slicer_source, report)
    except Exception as exc:
        report.failures += 1
        report.add(f"FAIL loading Slicer's Python: {type(exc).__name__}: {exc}")
    passed = sum(line.startswith("PASS") for line in report.lines)
    report.add(f"{passed} passed, {report.failures} failed")
    if args.report:
        with args.report.open("a", encoding="utf-8") as out:
            out.write("\n".join(report.lines) + "\n\n")
    return min(report.failures, 100)


if __name__ == "__main__":
    sys.exit(main())
