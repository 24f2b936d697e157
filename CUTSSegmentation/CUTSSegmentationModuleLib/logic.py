"""The module logic without Slicer's application: console API, background jobs, the hierarchy cache.

`CUTSSegmentationLogic` in the module file adds Slicer's ScriptedLoadableModuleLogic (parameter node) on
top of this class; everything else runs on slicer-core's MRML and is tested there. Two ways to run the
engine:
- console/batch calls (train, segment) run in this process and block, like any Python call;
- the panel uses startTrainingJob/startSegmentationJob, which run it in a background PythonSlicer process
  (CUTSSegmentationJobs.EngineJob) that the caller polls or cancels.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import slicer
from CUTSSegmentationJobs import (
    EngineJob,
    closer_look_args,
    copy_model_file,
    find_python_executable,
    load_job_hierarchy,
    load_job_mask,
    segment_args,
    train_args,
)
from CUTSSegmentationJobs.engine import InputError
from CUTSSegmentationMRML import (
    AUTOMATIC_LEVEL,
    CLOSER_LOOK,
    PERSISTENT,
    SegmentationUndo,
    add_found_structure,
    add_structure,
    default_level,
    find_hierarchy_nodes,
    in_process,
    keep_structure_at_seed,
    levels_to_sequence,
    load_hierarchy_from_scene,
    merge_tree_table,
    place_with_volume,
    preview_segmentation,
    push_level,
    reference_volume_of,
    remove_hierarchy_from_scene,
    seed_voxel,
    show_in_3d,
    store_hierarchy_in_scene,
)
from CUTSSegmentationMRML.sequences import check_sequence_volumes, sequence_volumes
from CUTSSegmentationMRML.volume_files import sequence_file_names, write_volume_file

from .dependencies import DependencyInstaller

logger = logging.getLogger(__name__)

#: Attribute of a hierarchy node: the encoder file that embedded its volume (what a closer look needs).
ENCODER_ATTRIBUTE = "CUTS.EncoderPath"


def default_models_directory() -> str:
    """Where trained encoders are kept: Slicer's cache folder, or the system's temporary folder without Slicer."""
    app = getattr(slicer, "app", None)
    base = getattr(app, "cachePath", None) or tempfile.gettempdir()
    return os.path.join(base, "CUTSSegmentation", "encoders")


def log_progress(stage: str, fraction: float, message: str) -> None:
    """Progress of blocking console calls, into Slicer's log."""
    logger.info(f"CUTS {stage} {100 * fraction:.0f}% {message}")


class SegmentationLogic:
    """Train, segment, show levels and keep structures on MRML nodes; no GUI, usable in batch mode."""

    def __init__(self, dependencies: DependencyInstaller | None = None) -> None:
        self.dependencies = dependencies
        self._hierarchies: dict = {}  # hierarchy node ID -> Hierarchy (read once, reused by every slider move)
        self._volumes: dict = {}  # id(Hierarchy) -> the volume node it was computed for (console calls)
        self.modelsDirectory: str | None = None  # where trained encoders are kept; None: default_models_directory()
        self.undoHistory = SegmentationUndo()  # checkpoints of the segmentations structures were added to

    # ------------------------------------------------------------------------------------------ dependencies
    def missingDependencies(self) -> list:
        """Requirements of the engine that are not installed (torch included); checks without importing."""
        return self.dependencies.missing() if self.dependencies is not None else []

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what is missing after asking; True when everything is available, False when declined."""
        return self.dependencies.ensure(ask=askConfirmation) if self.dependencies is not None else True

    # ------------------------------------------------------------------------------------------ console API
    def train(
        self,
        volumes,
        epochs: int | None = None,
        device: str = "auto",
        seed: int = 0,
        progress=None,
        extraVolumes=None,
    ):
        """Train an encoder in this process (blocks) and return the model.

        volumes: one volume node, or a list of cases, each a volume node or a list of one case's co-registered
        sequences (channels in that order), e.g. ``[[flair1, t1c1], [flair2, t1c2]]``. extraVolumes: the other
        sequences of a single case, ``train(flair, extraVolumes=[t1c])``.
        """
        if extraVolumes:
            volumes = [sequence_volumes(volumes, extraVolumes)]
        return in_process.train_on_volumes(
            volumes,
            epochs=epochs,
            device=device,
            seed=seed,
            progress=progress or log_progress,
        )

    def segment(
        self,
        volumeNode,
        model=None,
        device: str = "auto",
        epochs: int | None = None,
        seed: int = 0,
        progress=None,
        segmentationNode=None,
        level=None,
        extraVolumes=None,
    ):
        """Segment a volume node in this process (blocks) and return the Hierarchy.

        model: a trained model, a .safetensors path, or None (train on volumeNode first, `epochs` epochs).
        extraVolumes (or a list of nodes as volumeNode): more co-registered sequences of the same case, e.g.
        ``segment(flair, extraVolumes=[t1c])``, stacked as channels in that order on the first volume's grid
        (a volume on another grid is refused: resample it with Modules > Resample Scalar/Vector/DWI Volume).
        The hierarchy is stored in the scene with the first volume (saved with it). With segmentationNode,
        `level` (default: the middle level) is pushed into it.
        """
        volumeNodes = sequence_volumes(volumeNode, extraVolumes)
        hierarchy = in_process.segment_volume(
            volumeNodes,
            model,
            device=device,
            epochs=epochs,
            seed=seed,
            progress=progress or log_progress,
        )
        volumeNode = volumeNodes[0]
        self.addHierarchyToScene(hierarchy, volumeNode)
        if segmentationNode is not None:
            self.pushLevel(
                hierarchy,
                default_level(hierarchy) if level is None else level,
                segmentationNode,
            )
        return hierarchy

    def pushLevel(self, hierarchy, level, segmentationNode=None, referenceVolumeNode=None):
        """Replace the segments of segmentationNode (created if None) with a level (index, or "persistent")."""
        volumeNode = self._referenceVolume(hierarchy, segmentationNode, referenceVolumeNode)
        if segmentationNode is None:
            segmentationNode = self.createSegmentationNode(volumeNode)
        push_level(hierarchy, level, segmentationNode, volumeNode)
        return segmentationNode

    def binarizeAtSeed(
        self,
        hierarchy,
        seed,
        level=None,
        segmentationNode=None,
        referenceVolumeNode=None,
    ):
        """Keep the one structure under `seed` (markups node or voxel (x, y, z)) of `level` (None: persistent map,
        or the coarsest level when there is none) in segmentationNode (created if None); returns the node."""
        volumeNode = self._referenceVolume(hierarchy, segmentationNode, referenceVolumeNode)
        if level is None:
            level = PERSISTENT if hierarchy.persistent is not None else -1
        seedXYZ = seed_voxel(seed, volumeNode)
        if segmentationNode is None:
            segmentationNode = self.createSegmentationNode(volumeNode)
        keep_structure_at_seed(hierarchy, level, seedXYZ, segmentationNode, volumeNode)
        return segmentationNode

    def addStructure(
        self,
        hierarchy,
        seed,
        segmentationNode=None,
        level=None,
        referenceVolumeNode=None,
        name: str | None = None,
        color=None,
    ):
        """Append the structure under `seed` (markups node or voxel (x, y, z)) to segmentationNode as a new segment.

        The segments already in segmentationNode are never changed; an undo checkpoint is saved first
        (`undo(segmentationNode)` goes back). level: None lets the engine choose the level of the
        structure; an index or "persistent" takes it from that map. name/color default to
        "Structure <label> (level <k>)" and the label's palette colour. The segment's tags record level,
        label, persistence and voxel count. segmentationNode None: a new segmentation next to the volume.
        Returns the KeptStructure (segmentation node, segment id, name, level, label, persistence, voxels).
        """
        volumeNode = self._referenceVolume(hierarchy, segmentationNode, referenceVolumeNode)
        seedXYZ = seed_voxel(seed, volumeNode)
        if segmentationNode is None:
            segmentationNode = self.createSegmentationNode(volumeNode)
        kept = add_structure(
            hierarchy,
            seedXYZ,
            segmentationNode,
            volumeNode,
            level=level,
            name=name,
            color=color,
            undo=self.undoHistory,
        )
        if segmentationNode.GetNodeReference("referenceImageGeometryRef") is None:
            place_with_volume(segmentationNode, volumeNode)
        return kept

    def canUndo(self, segmentationNode) -> bool:
        """Whether an addition to this segmentation can be undone."""
        return self.undoHistory.can_undo(segmentationNode)

    def undo(self, segmentationNode) -> bool:
        """Restore the segmentation as it was before the last addition; False when there is nothing to undo."""
        return self.undoHistory.undo(segmentationNode)

    def previewSegmentation(self, volumeNode, current=None):
        """The module-owned segmentation that shows levels for this volume (created when missing)."""
        return preview_segmentation(volumeNode, current)

    def showIn3D(self, segmentationNode, visible: bool = True) -> bool:
        """Show the segmentation's segments as surfaces in the 3D view (or hide them)."""
        return show_in_3d(segmentationNode, visible)

    def exportHierarchy(self, hierarchy, referenceVolumeNode=None):
        """The levels as a sequence of segmentations (with a browser) and the merge tree as a table node.

        Returns (sequenceNode, sequenceBrowserNode, tableNode); all are saved with the scene and open in
        Slicer without this module.
        """
        volumeNode = self._referenceVolume(hierarchy, None, referenceVolumeNode)
        sequenceNode, browserNode = levels_to_sequence(hierarchy, volumeNode)
        tableNode = merge_tree_table(hierarchy, volumeNode.GetScene())
        return sequenceNode, browserNode, tableNode

    def saveModel(self, model, path: str) -> str:
        """Write a trained model as .safetensors (+ .json card)."""
        return str(in_process.save_model_file(model, path))

    def loadModel(self, path: str):
        """Read a .safetensors encoder."""
        return in_process.load_model_file(path)

    # ------------------------------------------------------------------------------------------ scene
    def createSegmentationNode(self, volumeNode):
        """A new, empty segmentation on the volume's grid, next to the volume in the subject hierarchy."""
        scene = volumeNode.GetScene() if volumeNode is not None else slicer.mrmlScene
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS segmentation")
        segmentationNode.CreateDefaultDisplayNodes()
        if volumeNode is not None:
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
            place_with_volume(segmentationNode, volumeNode)
        return segmentationNode

    def addHierarchyToScene(self, hierarchy, volumeNode):
        """Store the hierarchy in the scene (replacing the one kept for this volume before) and cache it."""
        scene = volumeNode.GetScene()
        for oldNode in find_hierarchy_nodes(scene, volumeNode):
            self._hierarchies.pop(oldNode.GetID(), None)
            remove_hierarchy_from_scene(oldNode)
        hierarchyNode = store_hierarchy_in_scene(scene, hierarchy, volumeNode)
        self._hierarchies[hierarchyNode.GetID()] = hierarchy
        self._volumes[id(hierarchy)] = volumeNode
        return hierarchyNode

    def hierarchyForNode(self, hierarchyNode):
        """The Hierarchy of a hierarchy node, read from the scene once and then cached (slider moves are instant)."""
        nodeID = hierarchyNode.GetID()
        if nodeID not in self._hierarchies:
            hierarchy = load_hierarchy_from_scene(hierarchyNode)
            self._hierarchies[nodeID] = hierarchy
            volumeNode = hierarchyNode.GetNodeReference("cutsReferenceVolume")
            if volumeNode is not None:
                self._volumes[id(hierarchy)] = volumeNode
        return self._hierarchies[nodeID]

    def clearCache(self) -> None:
        """Forget the hierarchies read so far (the scene is closing)."""
        self._hierarchies.clear()
        self._volumes.clear()
        self.undoHistory.forget()

    def _referenceVolume(self, hierarchy, segmentationNode, referenceVolumeNode):
        if referenceVolumeNode is not None:
            return referenceVolumeNode
        volumeNode = reference_volume_of(segmentationNode)
        if volumeNode is None:
            remembered = self._volumes.get(id(hierarchy))
            volumeNode = remembered if remembered is not None and remembered.GetScene() is not None else None
        if volumeNode is None:
            raise ValueError("Give referenceVolumeNode: the volume this hierarchy was computed for.")
        return volumeNode

    # ------------------------------------------------------------------------------------------ background jobs
    def _newJob(self, name: str, onProgress, onOutput) -> EngineJob:
        try:
            environment = slicer.util.startupEnvironment()  # the environment Slicer was started with
        except Exception:
            environment = None
        return EngineJob(
            python=find_python_executable(),
            env=environment,
            on_progress=onProgress,
            on_output=onOutput,
            name=name,
        )

    def startTrainingJob(
        self,
        volumeNodes: Sequence[Any],
        epochs: int | None = None,
        device: str = "auto",
        seed: int = 0,
        onProgress=None,
        onOutput=None,
    ) -> EngineJob:
        """Write the volumes to the job's temporary folder and start `cuts train` in the background.

        Each entry of volumeNodes is a case: a volume node, or a list of its co-registered sequences (every case
        with as many; grids are checked before the job starts).
        """
        cases = [sequence_volumes(case) for case in volumeNodes]
        for case in cases:
            check_sequence_volumes(case)
        counts = {len(case) for case in cases}
        if len(counts) != 1:
            raise InputError(f"every case needs the same number of sequences, got {sorted(counts)}")
        job = self._newJob("CUTS training", onProgress, onOutput)
        try:
            inputs = [
                write_volume_file(node, job.path(f"case{i}", name) if len(case) > 1 else job.path(f"input{i}.nrrd"))
                for i, case in enumerate(cases)
                for node, name in zip(case, sequence_file_names(case))
            ]
            job.start(
                train_args(
                    inputs,
                    job.path("model.safetensors"),
                    epochs=epochs,
                    device=device,
                    seed=seed,
                    sequences=counts.pop(),
                )
            )
        except BaseException:
            job.cleanup()
            raise
        return job

    def finishTrainingJob(self, job: EngineJob) -> str:
        """Keep the trained encoder (moved out of the job folder into the models folder); returns its path."""
        folder = self.modelsDirectory or default_models_directory()
        target = os.path.join(folder, time.strftime("cuts-encoder-%Y%m%d-%H%M%S.safetensors"))
        return str(copy_model_file(job.path("model.safetensors"), target))

    def startSegmentationJob(
        self,
        volumeNode,
        modelPath: str | None = None,
        epochs: int | None = None,
        device: str = "auto",
        seed: int = 0,
        onProgress=None,
        onOutput=None,
        extraVolumes=None,
    ) -> EngineJob:
        """Write the volume to the job's temporary folder and start `cuts segment` in the background.

        extraVolumes: more co-registered sequences of the same case (channels after volumeNode, in that
        order); their grids are checked here, before any file is written or process started.
        """
        volumeNodes = sequence_volumes(volumeNode, extraVolumes)
        check_sequence_volumes(volumeNodes)
        job = self._newJob("CUTS segmentation", onProgress, onOutput)
        try:
            names = sequence_file_names(volumeNodes)
            inputPaths = [write_volume_file(node, job.path(name)) for node, name in zip(volumeNodes, names)]
            job.start(
                segment_args(
                    inputPaths,
                    job.path("result"),
                    model=modelPath,
                    epochs=epochs,
                    device=device,
                    seed=seed,
                )
            )
        except BaseException:
            job.cleanup()
            raise
        return job

    def finishSegmentationJob(self, job: EngineJob, volumeNode, modelPath: str | None = None):
        """Read the job's hierarchy and store it in the scene; returns the hierarchy node.

        The encoder that embedded the volume is remembered on the hierarchy node (`ENCODER_ATTRIBUTE`):
        `modelPath` when the job used one, else the self-trained one, moved out of the job folder into the
        models folder.
        """
        hierarchy = load_job_hierarchy(job.path("result"))
        hierarchyNode = self.addHierarchyToScene(hierarchy, volumeNode)
        encoder = modelPath
        if not encoder and os.path.isfile(job.path("result", "model.safetensors")):
            folder = self.modelsDirectory or default_models_directory()
            target = os.path.join(folder, time.strftime("cuts-self-trained-%Y%m%d-%H%M%S.safetensors"))
            encoder = str(copy_model_file(job.path("result", "model.safetensors"), target))
        if encoder:
            hierarchyNode.SetAttribute(ENCODER_ATTRIBUTE, str(encoder))
        return hierarchyNode

    def encoderOf(self, hierarchyNode) -> str | None:
        """The encoder file remembered for a hierarchy node, when it still exists."""
        path = hierarchyNode.GetAttribute(ENCODER_ATTRIBUTE) if hierarchyNode is not None else None
        return path if path and os.path.isfile(path) else None

    def startCloserLookJob(
        self,
        hierarchyNode,
        seed,
        volumeNode,
        device: str = "auto",
        onProgress=None,
        onOutput=None,
        extraVolumes=None,
    ) -> EngineJob:
        """Start a closer look around `seed` (markups node or voxel (x, y, z)) in the background.

        The engine condenses boxes of 100-160 mm around the seed with the encoder that embedded the volume
        and keeps the region their hierarchies agree on (`cuts binarize --closer always`): for a structure no
        level holds, such as a tumour inside the soft tissue of a thorax CT. volumeNode (and extraVolumes) are
        the sequences the hierarchy was computed from, in the same order.
        """
        model = self.encoderOf(hierarchyNode)
        if model is None:
            raise InputError(
                "no encoder is kept for this hierarchy: run condensation again (or load the encoder it was "
                "computed with and run it again)"
            )
        return self._startClickJob(
            "CUTS closer look",
            hierarchyNode,
            seed,
            volumeNode,
            model,
            "always",
            device,
            onProgress,
            onOutput,
            extraVolumes,
        )

    def startAutomaticLevelJob(
        self,
        hierarchyNode,
        seed,
        volumeNode,
        device: str = "auto",
        onProgress=None,
        onOutput=None,
        extraVolumes=None,
    ) -> EngineJob:
        """Start keeping the structure under `seed` at its own level in the background (`cuts binarize --seed`).

        The engine chooses the level from the region's growth across the hierarchy and the image's edges, grows
        the structure out to the edge and snaps its outline to it; where the hierarchy is too coarse (its finest
        region under the seed is litres of tissue) or holds several structures in one region, the boxes around
        the seed decide, with the encoder kept for the hierarchy (without one, the hierarchy's structure is
        kept). The same structure `cuts binarize --seed` keeps.
        """
        return self._startClickJob(
            "CUTS structure at its own level",
            hierarchyNode,
            seed,
            volumeNode,
            self.encoderOf(hierarchyNode),
            "auto",
            device,
            onProgress,
            onOutput,
            extraVolumes,
        )

    def _startClickJob(
        self, title, hierarchyNode, seed, volumeNode, model, closer, device, onProgress, onOutput, extraVolumes
    ) -> EngineJob:
        """`cuts binarize --seed` on the node's hierarchy and the volumes written to the job's folder."""
        hierarchy = self.hierarchyForNode(hierarchyNode)
        volumeNodes = sequence_volumes(volumeNode, extraVolumes)
        check_sequence_volumes(volumeNodes)
        seedXYZ = seed_voxel(seed, volumeNodes[0])
        job = self._newJob(title, onProgress, onOutput)
        try:
            names = sequence_file_names(volumeNodes)
            inputPaths = [write_volume_file(node, job.path(name)) for node, name in zip(volumeNodes, names)]
            hierarchy.save(job.path("hierarchy.npz"))
            job.start(
                closer_look_args(
                    job.path("hierarchy.npz"),
                    seedXYZ,
                    inputPaths,
                    model,
                    job.path("structure.nrrd"),
                    device=device,
                    closer=closer,
                )
            )
        except BaseException:
            job.cleanup()
            raise
        return job

    def finishCloserLookJob(self, job: EngineJob, segmentationNode, volumeNode, name=None, color=None):
        """Append the structure the closer look found to segmentationNode (undo checkpoint first)."""
        return self._finishClickJob(job, segmentationNode, volumeNode, CLOSER_LOOK, name, color)

    def finishAutomaticLevelJob(self, job: EngineJob, segmentationNode, volumeNode, name=None, color=None):
        """Append the structure kept at its own level to segmentationNode (undo checkpoint first)."""
        return self._finishClickJob(job, segmentationNode, volumeNode, AUTOMATIC_LEVEL, name, color)

    def _finishClickJob(self, job: EngineJob, segmentationNode, volumeNode, levelTag, name, color):
        mask = load_job_mask(job.path("structure.nrrd"))
        kept = add_found_structure(
            mask, segmentationNode, volumeNode, name=name, color=color, undo=self.undoHistory, level_tag=levelTag
        )
        if segmentationNode.GetNodeReference("referenceImageGeometryRef") is None:
            place_with_volume(segmentationNode, volumeNode)
        return kept
