"""The engine run in this process on volume nodes (blocks the caller: console and batch use).

The module panel never calls these: it runs the engine in a background process (CUTSSegmentationJobs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from CUTSSegmentationJobs.engine import (
    CancelToken,
    Hierarchy,
    ProgressCallback,
    model_files,
    no_progress,
    pipeline,
)

from .sequences import sequence_volumes, volumes_to_image


# --------------------------------------------------------------------------------------- in-process engine
def segment_volume(
    volume_node: Any,
    model: Any = None,
    *,
    device: str = "auto",
    epochs: int | None = None,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    extra_volumes: Sequence[Any] | None = None,
) -> Hierarchy:
    """Segment a volume node in this process (blocks the caller: console and batch use).

    `model` is a TrainedModel, a path to a .safetensors model, or None (train on this volume first).
    `volume_node` may be a list of nodes, and `extra_volumes` adds more: one case's co-registered sequences,
    stacked as channels in that order on the first one's grid (refused in one line when grids differ).
    """
    return segment_volume_with_encoder(
        volume_node,
        model,
        device=device,
        epochs=epochs,
        seed=seed,
        progress=progress,
        cancel=cancel,
        extra_volumes=extra_volumes,
    )[0]


def segment_volume_with_encoder(
    volume_node: Any,
    model: Any = None,
    *,
    device: str = "auto",
    epochs: int | None = None,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    extra_volumes: Sequence[Any] | None = None,
) -> tuple[Hierarchy, Any]:
    """`segment_volume`, also returning the encoder that embedded the volume (what `structure_at_click` needs)."""
    image = volumes_to_image(sequence_volumes(volume_node, extra_volumes))
    if isinstance(model, (str, os.PathLike)):
        model = load_model_file(model)
    return pipeline().segment_with_encoder(
        image,
        model,
        device=device,
        train_epochs=epochs or None,
        seed=seed,
        progress=progress,
        cancel=cancel,
    )


def structure_at_click(
    hierarchy: Hierarchy,
    seed_xyz: Sequence[float],
    volume_nodes: Sequence[Any],
    model: Any,
    *,
    device: str = "auto",
    progress: ProgressCallback = no_progress,
) -> Any:
    """The engine's structure under a seed (`pipeline.structure_at_click`, what `cuts binarize --seed` keeps):
    the hierarchy's own, grown and snapped to the edges of every sequence, or a closer look's (boxes around
    the seed, `box_mm` set) where the finest region under it is too large to be one structure or holds several.
    """
    image = volumes_to_image(sequence_volumes(list(volume_nodes)))  # the click reads its edges, the look its voxels
    return pipeline().structure_at_click(hierarchy, seed_xyz, image, model, device=device, progress=progress)


def train_on_volumes(
    volume_nodes: Sequence[Any],
    *,
    epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> Any:
    """Train an encoder on one or more cases in this process; returns the engine's TrainedModel.

    Each case is a volume node, or a list of one case's co-registered volume nodes (channels in that order).
    """
    if volume_nodes is None or (hasattr(volume_nodes, "IsA") and volume_nodes.IsA("vtkMRMLVolumeNode")):
        volume_nodes = [volume_nodes]
    images = [volumes_to_image(sequence_volumes(case)) for case in volume_nodes]
    return pipeline().train(
        images,
        epochs=epochs or None,
        device=device,
        seed=seed,
        progress=progress,
        cancel=cancel,
    )


def load_model_file(path: str | Path) -> Any:
    """Read a .safetensors encoder written by `cuts train` / Save encoder (ModelFileError if it is not one)."""
    return model_files().load_model(path, device="cpu")


def save_model_file(model: Any, path: str | Path) -> Path:
    """Write a TrainedModel as MODEL.safetensors + MODEL.json card."""
    return Path(model_files().save_model(model, path))
