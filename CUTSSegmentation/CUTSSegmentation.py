import logging
import os
import sys
import time
from typing import Annotated, Any, Callable, Optional, Sequence, Union

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    parameterNodeWrapper,
    Choice,
    WithinRange,
)

from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLVectorVolumeNode,
)


def _addEngineToPythonPath() -> None:
    """Make the engine package importable when the module is loaded from a source checkout.

    The extension package installs CUTSSegmentationLib beside this file (see CMakeLists.txt), where it is
    importable already. In a source checkout (module folder added to Slicer's additional module paths)
    the engine sits one folder up, at the repository root, next to its pyproject.toml.
    """
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    for folder in (moduleDir, os.path.dirname(moduleDir)):
        if os.path.isfile(os.path.join(folder, "CUTSSegmentationLib", "__init__.py")):
            if folder not in sys.path:
                sys.path.append(folder)
            return


_addEngineToPythonPath()

from CUTSSegmentationJobs import (  # noqa: E402  (needs the path set above)
    DEVICE_CHOICES,
    EngineJob,
    choose_device,
    detect_gpu_names,
    device_label,
    find_python_executable,
    missing_requirements,
    read_requirements,
    segment_args,
    train_args,
)
from CUTSSegmentationJobs import operations  # noqa: E402
from CUTSSegmentationMRML import (  # noqa: E402
    find_hierarchy_nodes,
    load_hierarchy_from_scene,
    remove_hierarchy_from_scene,
    store_hierarchy_in_scene,
)


#
# CUTSSegmentation
#


class CUTSSegmentation(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CUTS Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["CUTSSegmentation developers (CUTSSegmentation project)"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Unsupervised, multigranular segmentation after the CUTS paper (Liu, Amodio et al.): no labels needed.
<ol>
<li>Select an <b>input volume</b> (scalar, or an RGB colour image).</li>
<li>Optionally <b>Train encoder</b> on it (or <b>Load encoder...</b> one trained before); without an encoder,
<b>Run condensation</b> trains one on the input first.</li>
<li><b>Run condensation</b> computes a coarse-to-fine hierarchy of segmentations. Move the <b>Granularity</b>
slider to replace the output segmentation's segments with another level at once, or press
<b>Persistent structures</b>.</li>
<li>Place a seed point and press <b>Keep segment at seed</b> to keep one structure;
<b>Show in Segment Editor</b> to refine it.</li>
</ol>
Training and condensation run in a background process: Slicer stays responsive and <b>Cancel</b> stops the job
and leaves the scene as it was. The hierarchy is stored in the scene, so a saved scene reopens with a working
slider.
<p>Python console (these calls run in Slicer's own process and block until done):</p>
<pre>
logic = slicer.util.getModuleLogic("CUTSSegmentation")  # or CUTSSegmentation.CUTSSegmentationLogic()
model = logic.train([volumeNode], epochs=50, device="auto")
hierarchy = logic.segment(volumeNode, model=model)       # model=None: train on volumeNode first
segmentationNode = logic.pushLevel(hierarchy, 2)          # level index (0 = finest) or "persistent"
segmentationNode = logic.binarizeAtSeed(hierarchy, markupsNode)        # or a voxel (x, y, z); level=None: persistent
logic.saveModel(model, "/path/encoder.safetensors"); model = logic.loadModel("/path/encoder.safetensors")
</pre>
Batch (no GUI): <code>Slicer --no-main-window --python-script &lt;module folder&gt;/Resources/Scripts/batch.py
--input IN --output OUT.seg.nrrd [--model M] [--level K|persistent] [--seed X,Y,Z]</code>.
""")
        self.parent.acknowledgementText = _("""
Implements the method of "CUTS: A Framework for Multigranular Unsupervised Medical Image Segmentation"
(Chen Liu, Matthew Amodio et al.). Extension layout follows the 3D Slicer extension templates.
""")


#
# CUTSSegmentationParameterNode
#


@parameterNodeWrapper
class CUTSSegmentationParameterNode:
    """
    The parameters of the module, saved with the scene.

    inputVolume - The scalar or RGB vector volume to segment.
    epochs - Training epochs; 0 means "auto" (the engine picks for the device).
    device - "auto", "cpu" or "cuda" (cuda falls back to the CPU when there is no NVIDIA GPU).
    modelPath - The encoder (.safetensors) used by condensation; empty: train on the input first.
    hierarchyNode - The table node holding the hierarchy computed for inputVolume (see CUTSSegmentationMRML).
    level - The hierarchy level shown (0 = finest). The slider's range is set to the hierarchy's levels.
    showPersistent - Show the persistent-structures map instead of a level.
    seedPoints - Markups point list whose first point selects the structure to keep.
    outputSegmentation - The segmentation whose segments show the chosen level.
    """

    inputVolume: Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode]
    epochs: Annotated[int, WithinRange(0, 1000)] = 0
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    modelPath: str = ""
    hierarchyNode: vtkMRMLTableNode
    level: Annotated[int, WithinRange(0, 255)] = 0
    showPersistent: bool = False
    seedPoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode


#
# CUTSSegmentationWidget
#


class CUTSSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    Kept thin on purpose: every computation is in the logic (and in CUTSSegmentationJobs / CUTSSegmentationMRML,
    tested without Slicer); the widget only binds the GUI, polls the background job and shows results.
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._onJobSucceeded = None
        self._jobTimer = None
        self._shownKey = None
        self._lastInputVolumeID = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CUTSSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets (the .ui connects mrmlSceneChanged to each MRML widget's setMRMLScene).
        uiWidget.setMRMLScene(slicer.mrmlScene)

        # Create logic class. Logic implements all computations that should be possible to run
        # in batch mode, without a graphical user interface.
        self.logic = CUTSSegmentationLogic()

        self.ui.seedPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
        self.ui.progressBar.setValue(0)

        # The background job is polled from the GUI thread: Qt widgets are only touched here.
        self._jobTimer = qt.QTimer()
        self._jobTimer.setInterval(200)
        self._jobTimer.connect("timeout()", self._pollJob)

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Buttons
        self.ui.trainButton.connect("clicked(bool)", self.onTrainButton)
        self.ui.loadModelButton.connect("clicked(bool)", self.onLoadModelButton)
        self.ui.saveModelButton.connect("clicked(bool)", self.onSaveModelButton)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.keepSeedButton.connect("clicked(bool)", self.onKeepSeedButton)
        self.ui.showInSegmentEditorButton.connect("clicked(bool)", self.onShowInSegmentEditorButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._stopJob()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        # Make sure parameter node exists and observed
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module).
        # A running job keeps running: its timer is independent of the GUI and it shows its result when done.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        # The job's input volume is about to disappear: stop it. Parameter node will be reset.
        self._stopJob()
        self.logic.clearCache()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        # If this module is shown while the scene is closed then recreate a new parameter node immediately
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        # Parameter node stores all user choices in parameter values, node selections, etc.
        # so that when the scene is saved and reloaded, these settings are restored.

        self.setParameterNode(self.logic.getParameterNode())

        # Select default input nodes if nothing is selected yet to save a few clicks for the user
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[CUTSSegmentationParameterNode]) -> None:
        """
        Set and observe parameter node.
        Observation is needed because when the parameter node is changed then the GUI must be updated immediately.
        """

        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._labelDeviceChoices()
            self._lastInputVolumeID = self._nodeID(self._parameterNode.inputVolume)
            # What the scene shows already (a saved scene keeps its segmentation): do not push it again.
            self._shownKey = self._displayKey()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    # ------------------------------------------------------------------------------------------ GUI state
    @staticmethod
    def _nodeID(node) -> Optional[str]:
        return node.GetID() if node is not None else None

    def _labelDeviceChoices(self) -> None:
        """The parameter connector fills the combobox with the bare choices; name the GPU in the item texts."""
        gpuNames = detect_gpu_names()
        for index, choice in enumerate(DEVICE_CHOICES):
            self.ui.deviceComboBox.setItemText(index, device_label(choice, gpuNames))

    def _displayKey(self) -> tuple:
        p = self._parameterNode
        return (self._nodeID(p.hierarchyNode), int(p.level), bool(p.showPersistent), self._nodeID(p.outputSegmentation))

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        inputID = self._nodeID(p.inputVolume)
        if inputID != self._lastInputVolumeID:
            # A hierarchy belongs to one volume: follow the input to its own hierarchy (if computed before).
            self._lastInputVolumeID = inputID
            found = find_hierarchy_nodes(slicer.mrmlScene, p.inputVolume) if p.inputVolume else []
            hierarchyNode = found[-1] if found else None
            if self._nodeID(hierarchyNode) != self._nodeID(p.hierarchyNode):
                p.hierarchyNode = hierarchyNode
                return  # that assignment triggered another update
        hierarchy = self._currentHierarchy()
        busy = self._job is not None
        hasInput = p.inputVolume is not None
        self.ui.trainButton.enabled = hasInput and not busy
        self.ui.segmentButton.enabled = hasInput and not busy
        self.ui.loadModelButton.enabled = not busy
        self.ui.saveModelButton.enabled = bool(p.modelPath) and os.path.isfile(p.modelPath)
        self.ui.cancelButton.enabled = busy
        self.ui.levelSliderWidget.enabled = hierarchy is not None
        self.ui.persistentButton.enabled = hierarchy is not None and hierarchy.persistent is not None
        # Placed points do not modify the parameter node: an empty point list is reported when the button is used.
        self.ui.keepSeedButton.enabled = hierarchy is not None and p.seedPoints is not None
        self.ui.showInSegmentEditorButton.enabled = p.outputSegmentation is not None
        self.ui.seedPlaceWidget.setCurrentNode(p.seedPoints)
        if hierarchy is None:
            self.ui.levelSliderWidget.maximum = 0
            self.ui.clusterCountLabel.text = _("no hierarchy yet: run condensation")
            return
        self.ui.levelSliderWidget.maximum = max(0, hierarchy.n_levels - 1)
        level = operations.PERSISTENT if p.showPersistent else min(int(p.level), hierarchy.n_levels - 1)
        self.ui.clusterCountLabel.text = operations.level_description(hierarchy, level)
        self._updateDisplayedLevel()

    def _currentHierarchy(self):
        p = self._parameterNode
        if p is None or p.hierarchyNode is None:
            return None
        try:
            return self.logic.hierarchyForNode(p.hierarchyNode)
        except Exception as exc:  # a damaged or foreign table node: say so once, keep the panel usable
            self._setStatus(str(exc))
            return None

    def _updateDisplayedLevel(self) -> None:
        """Replace the output segmentation's segments with the chosen level, when the choice changed."""
        p = self._parameterNode
        shown = self._shownKey
        if (
            shown is not None and p.showPersistent and shown[2] and shown[0] == self._nodeID(p.hierarchyNode)
            and shown[1] != int(p.level)
        ):
            p.showPersistent = False  # moving the slider leaves the persistent map for that level
        key = self._displayKey()
        if key == self._shownKey:
            return
        self._shownKey = key
        hierarchy = self._currentHierarchy()
        if hierarchy is None or p.outputSegmentation is None or p.inputVolume is None:
            return
        level = operations.PERSISTENT if p.showPersistent else min(int(p.level), hierarchy.n_levels - 1)
        with slicer.util.tryWithErrorDisplay(_("Failed to show the segmentation level."), waitCursor=True):
            self.logic.pushLevel(hierarchy, level, p.outputSegmentation, p.inputVolume)

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        if text:
            logging.info(f"CUTSSegmentation: {text}")

    # ------------------------------------------------------------------------------------------ buttons
    def onTrainButton(self) -> None:
        """Train an encoder on the input volume in the background."""
        p = self._parameterNode
        if not self._ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start training."), waitCursor=True):
            device = self._deviceForJob()
            job = self.logic.startTrainingJob(
                [p.inputVolume], epochs=p.epochs or None, device=device,
                onProgress=self._onJobProgress, onOutput=self._onJobOutput,
            )
            self._runJob(job, self._onTrainingSucceeded)

    def _onTrainingSucceeded(self, job) -> None:
        self._parameterNode.modelPath = self.logic.finishTrainingJob(job)
        self._setStatus(_("Encoder trained: {path}").format(path=self._parameterNode.modelPath))

    def onLoadModelButton(self) -> None:
        """Use an encoder trained before (the engine validates it when it runs)."""
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), _("Load CUTS encoder"), os.path.dirname(self._parameterNode.modelPath),
            _("CUTS encoder (*.safetensors)"),
        )
        if path:
            self._parameterNode.modelPath = path
            self._setStatus(_("Encoder: {path}").format(path=path))

    def onSaveModelButton(self) -> None:
        """Copy the current encoder (weights and card) to a file of the user's choice."""
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Save CUTS encoder"), "cuts-encoder.safetensors", _("CUTS encoder (*.safetensors)"),
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to save the encoder."), waitCursor=True):
            saved = operations.copy_model_file(self._parameterNode.modelPath, path)
            self._setStatus(_("Encoder saved: {path}").format(path=saved))

    def onSegmentButton(self) -> None:
        """Compute the hierarchy of the input volume in the background."""
        p = self._parameterNode
        if not self._ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            device = self._deviceForJob()
            volumeNode = p.inputVolume
            job = self.logic.startSegmentationJob(
                volumeNode, modelPath=p.modelPath or None, epochs=p.epochs or None, device=device,
                onProgress=self._onJobProgress, onOutput=self._onJobOutput,
            )
            self._runJob(job, lambda finishedJob: self._onSegmentationSucceeded(finishedJob, volumeNode))

    def _onSegmentationSucceeded(self, job, volumeNode) -> None:
        hierarchyNode = self.logic.finishSegmentationJob(job, volumeNode)
        hierarchy = self.logic.hierarchyForNode(hierarchyNode)
        p = self._parameterNode
        with slicer.util.NodeModify(p.parameterNode):
            if p.outputSegmentation is None:
                p.outputSegmentation = self.logic.createSegmentationNode(volumeNode)
            p.hierarchyNode = hierarchyNode
            p.showPersistent = False
            p.level = operations.default_level(hierarchy)
        # Shown even when the module was left while the job ran (the observer is removed then).
        self._updateDisplayedLevel()
        self._setStatus(operations.level_description(hierarchy, p.level))

    def onKeepSeedButton(self) -> None:
        """Keep only the structure under the seed point in the output segmentation."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to keep the structure at the seed."), waitCursor=True):
            if p.outputSegmentation is None:
                p.outputSegmentation = self.logic.createSegmentationNode(p.inputVolume)
            level = operations.PERSISTENT if p.showPersistent else int(p.level)
            hierarchy = self._currentHierarchy()
            self.logic.binarizeAtSeed(hierarchy, p.seedPoints, level, p.outputSegmentation, p.inputVolume)
            self._setStatus(_("Kept the structure under the seed point."))

    def onShowInSegmentEditorButton(self) -> None:
        """Open the output segmentation (with the input as source volume) in the Segment Editor."""
        p = self._parameterNode
        segmentationNode, volumeNode = p.outputSegmentation, p.inputVolume
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(segmentationNode)
        if volumeNode is not None:
            # Slicer >= 5.4 calls it the source volume, older releases the master volume.
            setSource = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode
            setSource(volumeNode)

    def onCancelButton(self) -> None:
        """Kill the background process tree; nothing is imported, the scene stays as it was."""
        self._stopJob()
        self._setStatus(_("Cancelled: nothing was changed."))

    # ------------------------------------------------------------------------------------------ background jobs
    def _ensureDependencies(self) -> bool:
        """Check the engine's Python packages; install them only after the user agreed."""
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to install the required Python packages.")):
                if self.logic.installDependencies(askConfirmation=True):
                    return True
        except Exception:
            pass  # already shown to the user by tryWithErrorDisplay
        self._setStatus(_("The CUTS engine needs PyTorch and a few Python packages; nothing was run."))
        return False

    def _deviceForJob(self) -> str:
        device, note = choose_device(self._parameterNode.device, detect_gpu_names())
        self._setStatus(note)
        return device

    def _runJob(self, job, onSucceeded: Callable) -> None:
        self._job = job
        self._onJobSucceeded = onSucceeded
        self.ui.progressBar.setValue(0)
        self._jobTimer.start()
        self._onParameterNodeModified()

    def _onJobProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.ui.progressBar.setFormat(f"{stage}: %p%")
        self.ui.statusLabel.text = message

    def _onJobOutput(self, line: str) -> None:
        logging.info(f"CUTS engine: {line}")

    def _pollJob(self) -> None:
        job = self._job
        if job is None:
            self._jobTimer.stop()
            return
        result = job.poll()
        if result is None:
            return
        self._jobTimer.stop()
        onSucceeded, self._job, self._onJobSucceeded = self._onJobSucceeded, None, None
        try:
            if result.ok:
                self.ui.progressBar.setValue(100)
                with slicer.util.tryWithErrorDisplay(_("Failed to import the results."), waitCursor=True):
                    onSucceeded(job)
            else:
                self._setStatus(result.message())
                slicer.util.errorDisplay(result.message(), detailedText="\n".join(result.stderr_tail))
        finally:
            job.cleanup()
            if self._parameterNode:
                self._onParameterNodeModified()

    def _stopJob(self) -> None:
        if self._jobTimer is not None:
            self._jobTimer.stop()
        job, self._job, self._onJobSucceeded = self._job, None, None
        if job is not None:
            job.cancel()
            self.ui.progressBar.setValue(0)
        if self._parameterNode:
            self._onParameterNodeModified()


#
# CUTSSegmentationLogic
#


class CUTSSegmentationLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual
    computation done by your module.  The interface
    should be such that other python code can import
    this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    Two ways to run the engine:
    - console/batch calls (train, segment) run in this process and block, like any Python call;
    - the panel uses startTrainingJob/startSegmentationJob, which run it in a background PythonSlicer
      process (CUTSSegmentationJobs.EngineJob) that the caller polls or cancels.
    The MRML work itself is in CUTSSegmentationJobs.operations and CUTSSegmentationMRML (tested without Slicer).
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)
        self._hierarchies = {}  # hierarchy node ID -> Hierarchy (loaded once, reused by every slider move)
        self._volumeIDs = {}  # id(Hierarchy) -> ID of the volume it was computed for (console calls)
        self.modelsDirectory = None  # where trained encoders are kept; default: Slicer's cache folder

    def getParameterNode(self):
        return CUTSSegmentationParameterNode(super().getParameterNode())

    # ------------------------------------------------------------------------------------------ dependencies
    def missingDependencies(self) -> list:
        """Requirements of the engine that are not installed (torch included); checks without importing."""
        requirements = read_requirements(os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt"))
        return missing_requirements(["torch>=2.1"] + requirements)

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what is missing, asking first. torch comes from the PyTorch extension when it is installed
        (it picks the build matching the GPU driver); the rest through slicer.packaging.pip_ensure (Slicer >= 5.12)
        or slicer.util.pip_install. Returns True when everything is available afterwards."""
        missing = self.missingDependencies()
        if not missing:
            return True
        if any(requirement.startswith("torch") for requirement in missing):
            torchLogic = None
            try:
                torchLogic = slicer.util.getModuleLogic("PyTorchUtils")
            except Exception:
                torchLogic = None
            if torchLogic is not None:
                if torchLogic.installTorch(askConfirmation=askConfirmation) is None:
                    return False
            else:
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("CUTS needs PyTorch. Install the 'PyTorch' extension (recommended: it matches your GPU driver) "
                      "or press OK to install the default PyTorch build with pip now (several minutes, about 1 GB).")
                ):
                    return False
                slicer.util.pip_install("torch")
        others = [requirement for requirement in missing if not requirement.startswith("torch")]
        if others:
            try:
                import slicer.packaging as packaging  # Slicer >= 5.12
            except ImportError:
                packaging = None
            if packaging is not None:
                packaging.pip_ensure(others, prompt_install=askConfirmation, requester="CUTSSegmentation")
            else:
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("CUTS needs these Python packages: {names}. Install them now?").format(names=", ".join(others))
                ):
                    return False
                slicer.util.pip_install(others)  # a list: one pip argument per requirement, no quoting
        return not self.missingDependencies()

    # ------------------------------------------------------------------------------------------ console API
    def train(self, volumes, epochs: Optional[int] = None, device: str = "auto", seed: int = 0, progress=None):
        """Train an encoder on one volume node or a list of them, in this process (blocks). Returns the model."""
        return operations.train_on_volumes(
            volumes, epochs=epochs, device=device, seed=seed, progress=progress or self._logProgress
        )

    def segment(
        self, volumeNode, model=None, device: str = "auto", epochs: Optional[int] = None, seed: int = 0,
        progress=None, segmentationNode=None, level=None,
    ):
        """Segment a volume node in this process (blocks) and return the Hierarchy.

        model: a trained model, a .safetensors path, or None (train on volumeNode first, `epochs` epochs).
        The hierarchy is also stored in the scene (saved with it). With segmentationNode, `level` (default:
        the middle level) is pushed into it.
        """
        hierarchy = operations.segment_volume(
            volumeNode, model, device=device, epochs=epochs, seed=seed, progress=progress or self._logProgress
        )
        self.addHierarchyToScene(hierarchy, volumeNode)
        if segmentationNode is not None:
            self.pushLevel(hierarchy, operations.default_level(hierarchy) if level is None else level, segmentationNode)
        return hierarchy

    def pushLevel(self, hierarchy, level, segmentationNode=None, referenceVolumeNode=None):
        """Replace the segments of segmentationNode (created if None) with a level (index, or "persistent")."""
        volumeNode = self._referenceVolume(hierarchy, segmentationNode, referenceVolumeNode)
        if segmentationNode is None:
            segmentationNode = self.createSegmentationNode(volumeNode)
        operations.push_level(hierarchy, level, segmentationNode, volumeNode)
        return segmentationNode

    def binarizeAtSeed(self, hierarchy, seed, level=None, segmentationNode=None, referenceVolumeNode=None):
        """Keep the one structure under `seed` (markups node or voxel (x, y, z)) of `level` (None: persistent map,
        or the coarsest level when there is none) in segmentationNode (created if None); returns the node."""
        volumeNode = self._referenceVolume(hierarchy, segmentationNode, referenceVolumeNode)
        if level is None:
            level = operations.PERSISTENT if hierarchy.persistent is not None else -1
        seedXYZ = operations.seed_voxel(seed, volumeNode)
        if segmentationNode is None:
            segmentationNode = self.createSegmentationNode(volumeNode)
        operations.keep_structure_at_seed(hierarchy, level, seedXYZ, segmentationNode, volumeNode)
        return segmentationNode

    def saveModel(self, model, path: str) -> str:
        """Write a trained model as .safetensors (+ .json card)."""
        return str(operations.save_model_file(model, path))

    def loadModel(self, path: str):
        """Read a .safetensors encoder."""
        return operations.load_model_file(path)

    # ------------------------------------------------------------------------------------------ scene
    def createSegmentationNode(self, volumeNode):
        """A new, empty segmentation on the volume's grid."""
        scene = volumeNode.GetScene() if volumeNode is not None else slicer.mrmlScene
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS segmentation")
        segmentationNode.CreateDefaultDisplayNodes()
        if volumeNode is not None:
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        return segmentationNode

    def addHierarchyToScene(self, hierarchy, volumeNode):
        """Store the hierarchy in the scene (replacing the one kept for this volume before) and cache it."""
        scene = volumeNode.GetScene()
        for oldNode in find_hierarchy_nodes(scene, volumeNode):
            self._hierarchies.pop(oldNode.GetID(), None)
            remove_hierarchy_from_scene(oldNode)
        hierarchyNode = store_hierarchy_in_scene(scene, hierarchy, volumeNode)
        self._hierarchies[hierarchyNode.GetID()] = hierarchy
        self._volumeIDs[id(hierarchy)] = volumeNode.GetID()
        return hierarchyNode

    def hierarchyForNode(self, hierarchyNode):
        """The Hierarchy of a hierarchy node, read from the scene once and then cached (slider moves are instant)."""
        nodeID = hierarchyNode.GetID()
        if nodeID not in self._hierarchies:
            hierarchy = load_hierarchy_from_scene(hierarchyNode)
            self._hierarchies[nodeID] = hierarchy
            volumeNode = hierarchyNode.GetNodeReference("cutsReferenceVolume")
            if volumeNode is not None:
                self._volumeIDs[id(hierarchy)] = volumeNode.GetID()
        return self._hierarchies[nodeID]

    def clearCache(self) -> None:
        self._hierarchies.clear()
        self._volumeIDs.clear()

    def _referenceVolume(self, hierarchy, segmentationNode, referenceVolumeNode):
        if referenceVolumeNode is not None:
            return referenceVolumeNode
        volumeNode = operations.reference_volume_of(segmentationNode)
        if volumeNode is None and id(hierarchy) in self._volumeIDs:
            volumeNode = slicer.mrmlScene.GetNodeByID(self._volumeIDs[id(hierarchy)])
        if volumeNode is None:
            raise ValueError("Give referenceVolumeNode: the volume this hierarchy was computed for.")
        return volumeNode

    @staticmethod
    def _logProgress(stage: str, fraction: float, message: str) -> None:
        logging.info(f"CUTS {stage} {100 * fraction:.0f}% {message}")

    # ------------------------------------------------------------------------------------------ background jobs
    def _newJob(self, name: str, onProgress, onOutput) -> EngineJob:
        try:
            environment = slicer.util.startupEnvironment()  # the environment Slicer was started with
        except Exception:
            environment = None
        return EngineJob(
            python=find_python_executable(), env=environment, on_progress=onProgress, on_output=onOutput, name=name
        )

    def startTrainingJob(
        self, volumeNodes: Sequence[Any], epochs: Optional[int] = None, device: str = "auto", seed: int = 0,
        onProgress=None, onOutput=None,
    ) -> EngineJob:
        """Write the volumes to the job's temporary folder and start `cuts train` in the background."""
        job = self._newJob("CUTS training", onProgress, onOutput)
        try:
            inputs = [operations.write_volume_file(node, job.path(f"input{i}.nrrd")) for i, node in enumerate(volumeNodes)]
            job.start(train_args(inputs, job.path("model.safetensors"), epochs=epochs, device=device, seed=seed))
        except BaseException:
            job.cleanup()
            raise
        return job

    def finishTrainingJob(self, job: EngineJob) -> str:
        """Keep the trained encoder (moved out of the job folder into the models folder); returns its path."""
        folder = self.modelsDirectory or os.path.join(slicer.app.cachePath, "CUTSSegmentation", "encoders")
        target = os.path.join(folder, time.strftime("cuts-encoder-%Y%m%d-%H%M%S.safetensors"))
        return str(operations.copy_model_file(job.path("model.safetensors"), target))

    def startSegmentationJob(
        self, volumeNode, modelPath: Optional[str] = None, epochs: Optional[int] = None, device: str = "auto",
        seed: int = 0, onProgress=None, onOutput=None,
    ) -> EngineJob:
        """Write the volume to the job's temporary folder and start `cuts segment` in the background."""
        job = self._newJob("CUTS segmentation", onProgress, onOutput)
        try:
            inputPath = operations.write_volume_file(volumeNode, job.path("input.nrrd"))
            job.start(segment_args(inputPath, job.path("result"), model=modelPath, epochs=epochs, device=device, seed=seed))
        except BaseException:
            job.cleanup()
            raise
        return job

    def finishSegmentationJob(self, job: EngineJob, volumeNode):
        """Read the job's hierarchy and store it in the scene; returns the hierarchy node."""
        hierarchy = operations.load_job_hierarchy(job.path("result"))
        return self.addHierarchyToScene(hierarchy, volumeNode)


#
# CUTSSegmentationTest
#


class CUTSSegmentationTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_CUTSSegmentationPushLevel()
        self.setUp()
        self.test_CUTSSegmentationEndToEnd()

    def _phantomVolume(self):
        from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
        from CUTSSegmentationMRML import image_to_volume_node

        image, truth = synthetic_image_2d(size=64, seed=0)
        return image_to_volume_node(slicer.mrmlScene, image, name="CUTS phantom"), truth

    def test_CUTSSegmentationPushLevel(self):
        """Levels go into the segmentation and the seed keeps one structure (no torch needed)."""
        import numpy as np

        from CUTSSegmentationLib.condense.hierarchy import Hierarchy
        from CUTSSegmentationLib.core.imagedata import Geometry

        self.delayDisplay("Starting the level push test")
        volumeNode, truth = self._phantomVolume()
        fine = truth.astype(np.uint16) + 1
        coarse = np.where(fine > 1, 2, 1).astype(np.uint16)
        hierarchy = Hierarchy(
            levels=np.stack([fine, coarse]),
            n_clusters=[len(np.unique(fine)), 2],
            level_steps=[0, 1],
            atom_map=fine.astype(np.uint32),
            merge_tree=np.zeros((2, int(fine.max()) + 1), dtype=np.uint32),
            geometry=Geometry(),
            is_2d=True,
        )
        logic = CUTSSegmentationLogic()
        segmentationNode = logic.pushLevel(hierarchy, 0, referenceVolumeNode=volumeNode)
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), len(np.unique(fine)))
        logic.pushLevel(hierarchy, 1, segmentationNode, volumeNode)
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 2)

        seedNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        ys, xs = np.nonzero(fine == fine.max())
        ras = [0.0, 0.0, 0.0, 1.0]
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        ijkToRas.MultiplyPoint([float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), 0.0, 1.0], ras)
        seedNode.AddControlPoint(ras[:3])
        logic.binarizeAtSeed(hierarchy, seedNode, 0, segmentationNode, volumeNode)
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("Level push test passed")

    def test_CUTSSegmentationEndToEnd(self):
        """Train briefly and condense in this process, then show a level (needs torch)."""
        logic = CUTSSegmentationLogic()
        missing = logic.missingDependencies()
        if missing:
            # Not skipTest: "Reload and Test" calls runTest directly, outside a unittest runner.
            logging.warning("CUTS end-to-end test not run, missing: " + ", ".join(missing))
            self.delayDisplay("End-to-end test not run: the engine's Python packages are not installed")
            return
        self.delayDisplay("Starting the end-to-end test")
        volumeNode, _truth = self._phantomVolume()
        segmentationNode = logic.createSegmentationNode(volumeNode)
        hierarchy = logic.segment(volumeNode, epochs=2, device="cpu", segmentationNode=segmentationNode)
        self.assertGreaterEqual(hierarchy.n_levels, 1)
        self.assertGreater(segmentationNode.GetSegmentation().GetNumberOfSegments(), 0)
        self.assertEqual(len(find_hierarchy_nodes(slicer.mrmlScene, volumeNode)), 1)
        self.delayDisplay("End-to-end test passed")
