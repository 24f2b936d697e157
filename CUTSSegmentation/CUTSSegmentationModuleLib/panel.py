"""Qt side of the module panel: widgets in, PanelState out. Every decision is in `controller`.

Read against Slicer's ScriptedLoadableModule template: the .ui is loaded, its widgets bound to the parameter
node (the SlicerParameterName property, through connectParametersToGui), the scene-close observers added. The granularity
slider is the one widget not bound: its range depends on the hierarchy, so `show` writes range and value
with the slider's signals blocked, and only a user's move reaches the controller.
"""

import logging
import os

import qt
import slicer
import vtk
from CUTSSegmentationJobs import detect_accelerators
from slicer.util import VTKObservationMixin

from .controller import PanelController, PanelState

logger = logging.getLogger(__name__)


def boundWidgets(ui) -> dict:
    """Parameter name -> widget, for the widgets whose SlicerParameterName property names a parameter.

    Given to connectParametersToGui rather than calling connectGui, whose tag (needed to disconnect) Slicer
    returns only from 5.10 on.
    """
    widgets = {}
    for widget in vars(ui).values():
        name = widget.property("SlicerParameterName")
        if name:
            widgets[name] = widget
    return widgets


class Panel(VTKObservationMixin):
    """The widgets of the module panel, connected to a `PanelController`.

    Parameters
    ----------
    uiPath
        The module's .ui file.
    logic
        The module logic.
    parameterNodeFactory
        Returns the scene's parameter node, wrapped (the logic's getParameterNode).
    isEntered
        Whether the module is shown (a closed scene gets a new parameter node only then).
    """

    def __init__(self, uiPath: str, logic, parameterNodeFactory, isEntered) -> None:
        VTKObservationMixin.__init__(self)
        self.uiWidget = slicer.util.loadUI(uiPath)
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self.controller = PanelController(logic, detect_accelerators())
        self._parameterNodeFactory = parameterNodeFactory
        self._isEntered = isEntered
        self._parameterNode = None
        self._guiTag = None
        self._refreshing = False

        self.ui.seedPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.levelSliderWidget.connect("valueChanged(double)", self.onLevelSliderMoved)
        self.ui.trainButton.connect("clicked(bool)", self.onTrainButton)
        self.ui.loadModelButton.connect("clicked(bool)", self.onLoadModelButton)
        self.ui.saveModelButton.connect("clicked(bool)", self.onSaveModelButton)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.addStructureButton.connect("clicked(bool)", self.onAddStructureButton)
        self.ui.lookCloserButton.connect("clicked(bool)", self.onLookCloserButton)
        self.ui.undoButton.connect("clicked(bool)", self.onUndoButton)
        self.ui.show3DButton.connect("toggled(bool)", self.onShow3DButton)
        self.ui.exportHierarchyButton.connect("clicked(bool)", self.onExportHierarchyButton)
        self.ui.showInSegmentEditorButton.connect("clicked(bool)", self.onShowInSegmentEditorButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

    @property
    def parameterNode(self):
        """The parameter node the widgets are bound to (None while no scene is open)."""
        return self._parameterNode

    # ------------------------------------------------------------------------------------------ life cycle
    def enter(self) -> None:
        """The module is shown: observe the scene's parameter node."""
        self.setParameterNode(self._parameterNodeFactory())
        self.controller.selectDefaultInput(slicer.mrmlScene)

    def exit(self) -> None:
        """Another module is shown: stop following the parameter node (a running job keeps running)."""
        self._disconnectParameterNode()

    def cleanup(self) -> None:
        """The application closes."""
        self.timer.stop()
        self.controller.cancel()
        self._disconnectParameterNode()
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        self.timer.stop()
        self.controller.sceneClosing()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self._isEntered():
            self.enter()

    def setParameterNode(self, parameterNode) -> None:
        """Bind the widgets to this parameter node (None: unbind)."""
        self._disconnectParameterNode()
        self._parameterNode = parameterNode
        self.controller.setParameters(parameterNode)
        if parameterNode is not None:
            self._guiTag = parameterNode.connectParametersToGui(boundWidgets(self.ui))
            self.addObserver(
                parameterNode,
                vtk.vtkCommand.ModifiedEvent,
                self.onParameterNodeModified,
            )
            self.onParameterNodeModified()

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None
            self.removeObserver(
                self._parameterNode,
                vtk.vtkCommand.ModifiedEvent,
                self.onParameterNodeModified,
            )

    # ------------------------------------------------------------------------------------------ state -> widgets
    def onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._refreshing:  # the controller's own writes; it finishes the update itself
            return
        self._refreshing = True
        try:
            with slicer.util.tryWithErrorDisplay("Failed to show the segmentation level.", waitCursor=True):
                self.controller.refresh()
        finally:
            self._refreshing = False
            self.show(self.controller.state())

    def show(self, state: PanelState) -> None:
        """Copy the controller's state into the widgets."""
        ui = self.ui
        ui.trainButton.enabled = state.trainEnabled
        ui.segmentButton.enabled = state.segmentEnabled
        ui.loadModelButton.enabled = state.loadModelEnabled
        ui.saveModelButton.enabled = state.saveModelEnabled
        ui.cancelButton.enabled = state.cancelEnabled
        ui.persistentButton.enabled = state.persistentEnabled
        ui.addStructureButton.enabled = state.addStructureEnabled
        ui.lookCloserButton.enabled = state.lookCloserEnabled
        ui.undoButton.enabled = state.undoEnabled
        ui.show3DButton.enabled = state.show3DEnabled
        ui.exportHierarchyButton.enabled = state.exportEnabled
        ui.showInSegmentEditorButton.enabled = state.showInSegmentEditorEnabled
        ui.levelSliderWidget.enabled = state.levelEnabled
        wasBlocked = ui.levelSliderWidget.blockSignals(True)
        ui.levelSliderWidget.maximum = state.levelMaximum
        ui.levelSliderWidget.value = state.level
        ui.levelSliderWidget.blockSignals(wasBlocked)
        ui.clusterCountLabel.text = state.levelText
        ui.statusLabel.text = state.status
        ui.progressBar.setValue(state.progress)
        ui.progressBar.setFormat(state.progressFormat)
        for index, label in enumerate(state.deviceLabels[: ui.deviceComboBox.count]):
            ui.deviceComboBox.setItemText(index, label)
        if self._parameterNode is not None:
            ui.seedPlaceWidget.setCurrentNode(self._parameterNode.seedPoints)

    def _update(self) -> None:
        if self._parameterNode is not None:
            self.onParameterNodeModified()
        else:
            self.show(self.controller.state())

    # ------------------------------------------------------------------------------------------ widgets -> controller
    def onLevelSliderMoved(self, value: float) -> None:
        self.controller.chooseLevel(value)

    def onTrainButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start training.", waitCursor=True):
            if self.controller.train():
                self.timer.start()
        self._update()

    def onSegmentButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the segmentation.", waitCursor=True):
            if self.controller.segment():
                self.timer.start()
        self._update()

    def onLoadModelButton(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(),
            "Load CUTS encoder",
            os.path.dirname(self._parameterNode.modelPath),
            "CUTS encoder (*.safetensors)",
        )
        self.controller.useModel(path)
        self._update()

    def onSaveModelButton(self) -> None:
        from CUTSSegmentationJobs import copy_model_file

        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(),
            "Save CUTS encoder",
            "cuts-encoder.safetensors",
            "CUTS encoder (*.safetensors)",
        )
        if path:
            with slicer.util.tryWithErrorDisplay("Failed to save the encoder.", waitCursor=True):
                saved = copy_model_file(self._parameterNode.modelPath, path)
                self.controller.status = f"Encoder saved: {saved}"
        self._update()

    def _runAction(self, failure: str, action, *args) -> None:
        """Run a controller action behind Slicer's error display, then redraw the panel."""
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            action(*args)
        self._update()

    def onAddStructureButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to add the structure at the seed.", waitCursor=True):
            self.controller.addStructureAtSeed()
            if self.controller.job is not None:  # the automatic level runs in the background
                self.timer.start()
        self._update()

    def onLookCloserButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the closer look.", waitCursor=True):
            if self.controller.lookCloser():
                self.timer.start()
        self._update()

    def onUndoButton(self) -> None:
        self._runAction("Failed to undo.", self.controller.undo)

    def onShow3DButton(self, checked: bool) -> None:
        self._runAction("Failed to show the segmentation in 3D.", self.controller.show3D, checked)

    def onExportHierarchyButton(self) -> None:
        self._runAction("Failed to export the hierarchy.", self.controller.exportHierarchy)

    def onShowInSegmentEditorButton(self) -> None:
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(p.outputSegmentation)
        if p.inputVolume is not None:
            editor.setSourceVolumeNode(p.inputVolume)

    def onCancelButton(self) -> None:
        self.timer.stop()
        self.controller.cancel()
        self._update()

    def onTimer(self) -> None:
        try:
            with slicer.util.tryWithErrorDisplay("Failed to import the results.", waitCursor=True):
                result = self.controller.poll()
                if result is not None:
                    self.timer.stop()
                    if not result.ok and not result.cancelled:
                        slicer.util.errorDisplay(result.message(), detailedText="\n".join(result.stderr_tail))
        except Exception:
            self.timer.stop()
            logger.exception("CUTS job")
        self._update()
