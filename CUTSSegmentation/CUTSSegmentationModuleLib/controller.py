"""The module panel without Qt: what is enabled, which level is shown, what each click does.

`PanelController` reads and writes the parameter node (any object with the fields of
`CUTSSegmentationParameterNode`), drives the logic and the background job, and reports a `PanelState`
that the Qt side copies into the widgets. The slider's range and value come from here and are written
into the widget with its signals blocked, so a range that shrinks never writes a level back; the
controller keeps `level` within the hierarchy itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from CUTSSegmentationJobs import (
    DEVICE_CHOICES,
    Accelerators,
    JobResult,
    choose_device,
    device_label,
)
from CUTSSegmentationJobs.engine import InputError, format_time_left
from CUTSSegmentationMRML import (
    PERSISTENT,
    ROLE,
    default_level,
    find_hierarchy_nodes,
    is_preview,
    level_description,
)
from CUTSSegmentationMRML.sequences import check_sequence_volumes, sequence_volumes

logger = logging.getLogger(__name__)

#: Volume classes the panel segments; subclasses (label maps, DWI, DTI) are other kinds of data.
INPUT_VOLUME_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode")


class PanelParameters(Protocol):
    """The fields of the module's parameter node that the panel uses."""

    inputVolume: Any
    secondVolume: Any
    thirdVolume: Any
    epochs: int
    device: str
    modelPath: str
    hierarchyNode: Any
    level: int
    showPersistent: bool
    automaticLevel: bool
    seedPoints: Any
    outputSegmentation: Any
    previewSegmentation: Any


class Job(Protocol):
    """A background job (CUTSSegmentationJobs.EngineJob)."""

    def poll(self) -> JobResult | None: ...

    def cancel(self) -> JobResult: ...

    def cleanup(self) -> None: ...


class PanelLogic(Protocol):
    """What the panel asks of the logic (CUTSSegmentationModuleLib.logic.SegmentationLogic)."""

    def installDependencies(self, askConfirmation: bool = True) -> bool: ...

    def hierarchyForNode(self, hierarchyNode: Any) -> Any: ...

    def createSegmentationNode(self, volumeNode: Any) -> Any: ...

    def pushLevel(
        self,
        hierarchy: Any,
        level: Any,
        segmentationNode: Any = None,
        referenceVolumeNode: Any = None,
    ) -> Any: ...

    def addStructure(
        self,
        hierarchy: Any,
        seed: Any,
        segmentationNode: Any = None,
        level: Any = None,
        referenceVolumeNode: Any = None,
    ) -> Any: ...

    def canUndo(self, segmentationNode: Any) -> bool: ...

    def undo(self, segmentationNode: Any) -> bool: ...

    def previewSegmentation(self, volumeNode: Any, current: Any = None) -> Any: ...

    def showIn3D(self, segmentationNode: Any, visible: bool = True) -> bool: ...

    def exportHierarchy(self, hierarchy: Any, referenceVolumeNode: Any = None) -> Any: ...

    def startTrainingJob(
        self,
        volumeNodes: Any,
        epochs: int | None = None,
        device: str = "auto",
        seed: int = 0,
        onProgress: Any = None,
        onOutput: Any = None,
    ) -> Job: ...

    def finishTrainingJob(self, job: Any) -> str: ...

    def startSegmentationJob(
        self,
        volumeNode: Any,
        modelPath: str | None = None,
        epochs: int | None = None,
        device: str = "auto",
        seed: int = 0,
        onProgress: Any = None,
        onOutput: Any = None,
        extraVolumes: Any = None,
    ) -> Job: ...

    def finishSegmentationJob(self, job: Any, volumeNode: Any, modelPath: str | None = None) -> Any: ...

    def encoderOf(self, hierarchyNode: Any) -> str | None: ...

    def startCloserLookJob(
        self,
        hierarchyNode: Any,
        seed: Any,
        volumeNode: Any,
        device: str = "auto",
        onProgress: Any = None,
        onOutput: Any = None,
        extraVolumes: Any = None,
    ) -> Job: ...

    def finishCloserLookJob(self, job: Any, segmentationNode: Any, volumeNode: Any) -> Any: ...

    def startAutomaticLevelJob(
        self,
        hierarchyNode: Any,
        seed: Any,
        volumeNode: Any,
        device: str = "auto",
        onProgress: Any = None,
        onOutput: Any = None,
        extraVolumes: Any = None,
    ) -> Job: ...

    def finishAutomaticLevelJob(self, job: Any, segmentationNode: Any, volumeNode: Any) -> Any: ...

    def clearCache(self) -> None: ...


@dataclass(frozen=True)
class PanelState:
    """Everything the widgets show; computed from the parameter node, the hierarchy and the job."""

    trainEnabled: bool = False
    segmentEnabled: bool = False
    loadModelEnabled: bool = True
    saveModelEnabled: bool = False
    cancelEnabled: bool = False
    levelEnabled: bool = False
    levelMaximum: int = 0
    level: int = 0
    persistentEnabled: bool = False
    addStructureEnabled: bool = False
    lookCloserEnabled: bool = False
    undoEnabled: bool = False
    show3DEnabled: bool = False
    exportEnabled: bool = False
    showInSegmentEditorEnabled: bool = False
    levelText: str = "no hierarchy yet: run condensation"
    status: str = ""
    progress: int = 0
    progressFormat: str = "%p%"
    deviceLabels: tuple[str, ...] = ()


#: The engine's stages as the panel names them (others are shown as the engine names them).
STAGE_TITLES = {
    "train": "Training",
    "checkpoint": "Saving the model",
    "embed": "Embedding",
    "condense": "Condensation",
    "levels": "Building the levels",
    "write": "Writing the results",
    "done": "Finishing",
    "closer": "Looking closer",
}


def progress_text(
    stage: str, fraction: float, message: str, overall: float | None, eta_s: float | None
) -> tuple[int, str, str]:
    """(bar value 0-100, bar format, status line) for one progress report of a background job.

    The bar shows the whole job when the engine reports it (`overall`), else the stage's own fraction with the
    stage in the bar; the status line names the stage, its message and the time left.

    Examples
    --------
    >>> progress_text("embed", 0.5, "slice 3/6", 0.42, 250.0)
    (42, '%p%', 'Embedding: slice 3/6 (about 4 min left)')
    >>> progress_text("train", 0.25, "epoch 1/4", None, None)
    (25, 'train: %p%', 'Training: epoch 1/4')
    """
    shown = fraction if overall is None else overall
    value = round(100 * max(0.0, min(1.0, float(shown))))
    barFormat = f"{stage}: %p%" if overall is None else "%p%"
    status = STAGE_TITLES.get(stage, stage) + (f": {message}" if message else "")
    left = format_time_left(eta_s)
    return value, barFormat, status + (f" ({left})" if left else "")


def node_id(node: Any) -> str | None:
    """A node's ID, None for no node."""
    return node.GetID() if node is not None else None


def is_input_volume(node: Any) -> bool:
    """A volume the panel segments: exactly a scalar or vector volume, and none of the module's own nodes."""
    return node is not None and node.GetClassName() in INPUT_VOLUME_CLASSES and not node.GetAttribute(ROLE)


def default_input_volume(scene: Any) -> Any:
    """The first volume of the scene the panel can segment, or None."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLVolumeNode")
        if is_input_volume(node):
            return node
    return None


class PanelController:
    """The panel's state and actions on one parameter node at a time.

    Parameters
    ----------
    logic
        The module logic (or anything with the `PanelLogic` methods).
    accelerators
        The GPUs of this machine, for the device labels and the device of each job.
    """

    def __init__(self, logic: PanelLogic, accelerators: Accelerators) -> None:
        self.logic = logic
        self.accelerators = accelerators
        self.parameters: PanelParameters | None = None
        self.job: Job | None = None
        self.status = ""
        self.progress = 0
        self.progressFormat = "%p%"
        self._onJobSucceeded: Callable[[Any], None] | None = None
        self._shownKey: tuple | None = None
        self._inputID: str | None = None

    # ------------------------------------------------------------------------------------------ parameters
    def setParameters(self, parameters: PanelParameters | None) -> None:
        """Work on this parameter node from now on (None: no scene)."""
        self.parameters = parameters
        if parameters is not None:
            self._inputID = node_id(parameters.inputVolume)
            # What the scene shows already (a saved scene keeps its preview) is not pushed again.
            self._shownKey = self._displayKey() if parameters.previewSegmentation is not None else None

    def selectDefaultInput(self, scene: Any) -> None:
        """Pick the first volume the panel can segment when none is selected yet (saves a click)."""
        p = self.parameters
        if p is not None and p.inputVolume is None:
            volumeNode = default_input_volume(scene)
            if volumeNode is not None:
                p.inputVolume = volumeNode

    def _displayKey(self) -> tuple:
        p = self.parameters
        return (
            node_id(p.hierarchyNode),
            int(p.level),
            bool(p.showPersistent),
            node_id(p.inputVolume),
            node_id(p.previewSegmentation),
        )

    def sequenceVolumes(self) -> list:
        """The input volume and the other sequences chosen for it, in channel order (none chosen: no volume)."""
        p = self.parameters
        if p is None or p.inputVolume is None:
            return []
        return sequence_volumes(p.inputVolume, [p.secondVolume, p.thirdVolume])

    def sequenceProblem(self) -> str:
        """Why the chosen sequences cannot be stacked (one line: which grids differ, how to resample), or ""."""
        volumes = self.sequenceVolumes()
        if len(volumes) < 2:
            return ""  # one volume is checked by the engine when it runs, as it always was
        try:
            check_sequence_volumes(volumes)
        except InputError as exc:
            return str(exc)
        return ""

    def currentHierarchy(self) -> Any:
        """The hierarchy of the parameter node's hierarchy node, None when there is none or it is unreadable."""
        p = self.parameters
        if p is None or p.hierarchyNode is None:
            return None
        try:
            return self.logic.hierarchyForNode(p.hierarchyNode)
        except Exception as exc:
            self.status = str(exc)
            return None

    def refresh(self) -> None:
        """Bring the parameter node and the output segmentation in line after any change of the parameters.

        A new input volume brings its own hierarchy (if it has one); the level is kept within the
        hierarchy's levels; the output segmentation is updated when the level or map to show changed.
        """
        p = self.parameters
        if p is None:
            return
        inputID = node_id(p.inputVolume)
        if inputID != self._inputID:
            self._inputID = inputID
            found = find_hierarchy_nodes(p.inputVolume.GetScene(), p.inputVolume) if p.inputVolume is not None else []
            hierarchyNode = found[-1] if found else None
            if node_id(hierarchyNode) != node_id(p.hierarchyNode):
                p.hierarchyNode = hierarchyNode
        hierarchy = self.currentHierarchy()
        if hierarchy is not None and int(p.level) > hierarchy.n_levels - 1:
            p.level = hierarchy.n_levels - 1
        if hierarchy is not None and p.showPersistent and hierarchy.persistent is None:
            p.showPersistent = False
        self._showChosenLevel(hierarchy)

    def _showChosenLevel(self, hierarchy: Any) -> None:
        p = self.parameters
        key = self._displayKey()
        if key == self._shownKey:
            return
        self._shownKey = key
        if hierarchy is None or p.inputVolume is None:
            return
        preview = self.logic.previewSegmentation(p.inputVolume, p.previewSegmentation)
        if node_id(preview) != node_id(p.previewSegmentation):
            p.previewSegmentation = preview
            # The key now names the new preview, so the push below is not repeated for it.
            self._shownKey = self._displayKey()
        level = PERSISTENT if p.showPersistent else int(p.level)
        self.logic.pushLevel(hierarchy, level, preview, p.inputVolume)

    def state(self) -> PanelState:
        """What the widgets show now."""
        labels = tuple(device_label(choice, self.accelerators) for choice in DEVICE_CHOICES)
        p = self.parameters
        busy = self.job is not None
        if p is None:
            return PanelState(
                loadModelEnabled=not busy,
                cancelEnabled=busy,
                status=self.status,
                progress=self.progress,
                progressFormat=self.progressFormat,
                deviceLabels=labels,
            )
        hierarchy = self.currentHierarchy()
        problem = self.sequenceProblem()  # other sequences off the input's grid: nothing can be run
        hasInput = p.inputVolume is not None and not problem
        levelMaximum = max(0, hierarchy.n_levels - 1) if hierarchy is not None else 0
        level = min(int(p.level), levelMaximum)
        if hierarchy is None:
            levelText = PanelState.levelText
        else:
            levelText = level_description(hierarchy, PERSISTENT if p.showPersistent else level)
        return PanelState(
            trainEnabled=hasInput and not busy,
            segmentEnabled=hasInput and not busy,
            loadModelEnabled=not busy,
            saveModelEnabled=bool(p.modelPath) and os.path.isfile(p.modelPath),
            cancelEnabled=busy,
            levelEnabled=hierarchy is not None,
            levelMaximum=levelMaximum,
            level=level,
            persistentEnabled=hierarchy is not None and hierarchy.persistent is not None,
            # Placed points do not modify the parameter node: an empty point list is reported on the click.
            # The automatic level runs the engine on the input's voxels: it needs the input as for condensation.
            addStructureEnabled=hierarchy is not None
            and p.seedPoints is not None
            and not busy
            and (hasInput or not self._automaticLevel()),
            lookCloserEnabled=hierarchy is not None
            and p.seedPoints is not None
            and hasInput
            and not busy
            and self.logic.encoderOf(p.hierarchyNode) is not None,
            undoEnabled=p.outputSegmentation is not None and self.logic.canUndo(p.outputSegmentation),
            show3DEnabled=p.outputSegmentation is not None or p.previewSegmentation is not None,
            exportEnabled=hierarchy is not None and p.inputVolume is not None and not busy,
            showInSegmentEditorEnabled=p.outputSegmentation is not None,
            levelText=levelText,
            status=problem or self.status,
            progress=self.progress,
            progressFormat=self.progressFormat,
            deviceLabels=labels,
        )

    # ------------------------------------------------------------------------------------------ clicks
    def chooseLevel(self, value: float) -> None:
        """The slider moved: show that level (leaving the persistent map)."""
        p = self.parameters
        hierarchy = self.currentHierarchy()
        if p is None or hierarchy is None:
            return
        level = min(max(0, round(value)), hierarchy.n_levels - 1)
        p.showPersistent = False
        p.level = level

    def ensureDependencies(self) -> bool:
        """Ask to install what the engine lacks; False (and a status line, no error) when the user says no."""
        if self.logic.installDependencies(askConfirmation=True):
            return True
        self.status = "The CUTS engine needs PyTorch and a few Python packages; nothing was run."
        return False

    def train(self) -> bool:
        """Start training an encoder on the input volume (and its other sequences); False when nothing was started."""
        p = self.parameters
        if p is None or p.inputVolume is None or self.job is not None or not self.ensureDependencies():
            return False
        volumes = self.sequenceVolumes()
        device, self.status = choose_device(p.device, self.accelerators)
        job = self.logic.startTrainingJob(
            [volumes if len(volumes) > 1 else p.inputVolume],
            epochs=p.epochs or None,
            device=device,
            onProgress=self._onProgress,
            onOutput=_logOutput,
        )
        self._begin(job, self._trainingSucceeded)
        return True

    def _trainingSucceeded(self, job: Any) -> None:
        self.parameters.modelPath = self.logic.finishTrainingJob(job)
        self.status = f"Encoder trained: {self.parameters.modelPath}"

    def segment(self) -> bool:
        """Start computing the hierarchy of the input volume (its other sequences as more channels); False when
        nothing was started. Sequences on different grids are refused (InputError) before any job starts."""
        p = self.parameters
        if p is None or p.inputVolume is None or self.job is not None or not self.ensureDependencies():
            return False
        volumeNode, *extraVolumes = self.sequenceVolumes()
        device, self.status = choose_device(p.device, self.accelerators)
        job = self.logic.startSegmentationJob(
            volumeNode,
            modelPath=p.modelPath or None,
            epochs=p.epochs or None,
            device=device,
            onProgress=self._onProgress,
            onOutput=_logOutput,
            extraVolumes=extraVolumes,
        )
        modelPath = p.modelPath or None
        self._begin(job, lambda finished: self._segmentationSucceeded(finished, volumeNode, modelPath))
        return True

    def _segmentationSucceeded(self, job: Any, volumeNode: Any, modelPath: str | None = None) -> None:
        hierarchyNode = self.logic.finishSegmentationJob(job, volumeNode, modelPath)
        hierarchy = self.logic.hierarchyForNode(hierarchyNode)
        p = self.parameters
        p.hierarchyNode = hierarchyNode
        p.showPersistent = False
        p.level = default_level(hierarchy)
        self.refresh()  # shown even when the module was left while the job ran
        self.status = level_description(hierarchy, int(p.level))

    def useModel(self, path: str) -> None:
        """Use an encoder trained before (the engine validates it when it runs)."""
        if path:
            self.parameters.modelPath = path
            self.status = f"Encoder: {path}"

    def addStructureAtSeed(self) -> Any:
        """Append the structure under the seed point to the output segmentation.

        With the automatic level (the default), the engine keeps the structure at its own level, grown and
        snapped to the image's edge, or looked at closer where the hierarchy is too coarse (`cuts binarize
        --seed`), in the background: None is returned and the segment is appended when the job ends. Otherwise
        the structure at the level (or persistent map) shown is appended at once and returned. The output
        segmentation is created (next to the input volume) when none is chosen; its own segments are never
        changed, and Undo takes the addition back.
        """
        p = self.parameters
        hierarchy = self.currentHierarchy()
        if p is None or hierarchy is None or p.seedPoints is None or p.inputVolume is None:
            return None
        if self._automaticLevel():
            self._startClickJob(automatic=True)
            return None
        if p.outputSegmentation is None or is_preview(p.outputSegmentation):
            p.outputSegmentation = self.logic.createSegmentationNode(p.inputVolume)
        level = PERSISTENT if p.showPersistent else int(p.level)
        kept = self.logic.addStructure(hierarchy, p.seedPoints, p.outputSegmentation, level, p.inputVolume)
        self.status = f"Added '{kept.name}' ({kept.voxels} voxels) to {p.outputSegmentation.GetName()}."
        return kept

    def _automaticLevel(self) -> bool:
        """Whether "Add" keeps the structure at its own level: asked for, and the persistent map not shown (a
        structure of the persistent map is kept as the map holds it)."""
        p = self.parameters
        return p is not None and bool(p.automaticLevel) and not p.showPersistent

    def lookCloser(self) -> bool:
        """Start a closer look around the seed point (boxes around it condensed with the volume's encoder) in the
        background; its structure is appended to the output segmentation when it ends. False: nothing started."""
        p = self.parameters
        if p is None or p.hierarchyNode is None or p.seedPoints is None or p.inputVolume is None:
            return False
        return self._startClickJob(automatic=False)

    def _startClickJob(self, automatic: bool) -> bool:
        """Start the engine's click on the seed point in the background: the structure at its own level
        (`automatic`) or the closer look; what it finds is appended when the job ends. False: nothing started."""
        p = self.parameters
        if self.job is not None or not self.ensureDependencies():
            return False
        volumeNode, *extraVolumes = self.sequenceVolumes()
        device, self.status = choose_device(p.device, self.accelerators)
        start = self.logic.startAutomaticLevelJob if automatic else self.logic.startCloserLookJob
        job = start(
            p.hierarchyNode,
            p.seedPoints,
            volumeNode,
            device=device,
            onProgress=self._onProgress,
            onOutput=_logOutput,
            extraVolumes=extraVolumes,
        )
        self._begin(job, lambda finished: self._foundStructureAdded(finished, volumeNode, automatic))
        return True

    def _foundStructureAdded(self, job: Any, volumeNode: Any, automatic: bool) -> None:
        """Append what a closer look or the automatic level found (the output segmentation made if needed)."""
        p = self.parameters
        if p.outputSegmentation is None or is_preview(p.outputSegmentation):
            p.outputSegmentation = self.logic.createSegmentationNode(volumeNode)
        finish = self.logic.finishAutomaticLevelJob if automatic else self.logic.finishCloserLookJob
        kept = finish(job, p.outputSegmentation, volumeNode)
        self.status = f"Added '{kept.name}' ({kept.voxels} voxels) to {p.outputSegmentation.GetName()}."

    def undo(self) -> bool:
        """Take back the last addition to the output segmentation."""
        p = self.parameters
        if p is None or p.outputSegmentation is None:
            return False
        undone = self.logic.undo(p.outputSegmentation)
        self.status = "Undone: the segmentation is as it was." if undone else "Nothing to undo."
        return undone

    def show3D(self, visible: bool = True) -> bool:
        """Show the output segmentation (the preview when there is none) as surfaces in the 3D view."""
        p = self.parameters
        if p is None:
            return False
        node = p.outputSegmentation if p.outputSegmentation is not None else p.previewSegmentation
        return self.logic.showIn3D(node, visible)

    def exportHierarchy(self) -> Any:
        """Put the levels in the scene as a sequence of segmentations and the merge tree as a table."""
        p = self.parameters
        hierarchy = self.currentHierarchy()
        if p is None or hierarchy is None or p.inputVolume is None:
            return None
        exported = self.logic.exportHierarchy(hierarchy, p.inputVolume)
        self.status = (
            f"Exported {hierarchy.n_levels} levels as the sequence '{exported[0].GetName()}' "
            f"and the merge tree as the table '{exported[2].GetName()}'."
        )
        return exported

    # ------------------------------------------------------------------------------------------ the job
    def _begin(self, job: Job, onSucceeded: Callable[[Any], None]) -> None:
        self.job = job
        self._onJobSucceeded = onSucceeded
        self.progress = 0
        self.progressFormat = "%p%"

    def _onProgress(
        self, stage: str, fraction: float, message: str, overall: float | None = None, eta_s: float | None = None
    ) -> None:
        self.progress, self.progressFormat, self.status = progress_text(stage, fraction, message, overall, eta_s)

    def poll(self) -> JobResult | None:
        """Handle the job's output so far; once it ended, take its results and return how it ended."""
        job = self.job
        if job is None:
            return None
        result = job.poll()
        if result is None:
            return None
        onSucceeded, self.job, self._onJobSucceeded = self._onJobSucceeded, None, None
        try:
            if result.ok:
                self.progress = 100
                onSucceeded(job)
            else:
                self.status = result.message()
        finally:
            job.cleanup()
        return result

    def cancel(self) -> None:
        """Kill the background process tree; nothing is imported, the scene stays as it was."""
        job, self.job, self._onJobSucceeded = self.job, None, None
        if job is not None:
            job.cancel()
            self.progress = 0
            self.status = "Cancelled: nothing was changed."

    def sceneClosing(self) -> None:
        """The scene is about to close: stop the job (its input disappears) and forget the parameter node."""
        self.cancel()
        self.logic.clearCache()
        self.setParameters(None)


def _logOutput(line: str) -> None:
    logger.info(f"CUTS engine: {line}")
