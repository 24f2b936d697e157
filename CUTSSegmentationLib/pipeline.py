"""The whole CUTS job: `train` an encoder, `segment` an image or volume into a hierarchy, keep a click's structure.

The command line, the Slicer module's background process, the batch script and the benchmarks all call
these, so the steps (validate -> train if needed -> embed -> condense -> levels -> persistent map) happen in
one place. Every step reports progress and honours a `CancelToken`.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np

from . import __version__
from .condense.binarize import seed_to_index
from .condense.condensation import CondensationConfig, CondensationResult, condense
from .condense.edge_growth import grow_to_edge
from .condense.edge_snap import snap_outward
from .condense.features import condensation_features
from .condense.hierarchy import Hierarchy, level_maps
from .condense.persistence import persistent_level_indices, persistent_structures
from .condense.structures import Structure, snapped_structure, structure_at_seed
from .condense.zoom import ZOOM_SIDES_MM, is_unresolved, splits_whole, structure_in_boxes
from .core.device import is_accelerator, resolve_device
from .core.errors import InputError
from .core.imagedata import ImageData
from .core.job_plan import JobPlan, plan_segment, plan_train
from .core.overall_progress import track_overall
from .core.progress import CancelToken, ProgressCallback, check_cancel, no_progress
from .core.working_grid import Factors, block_mean, box_on_image_grid, factors_of, to_image_grid, working_factors
from .io.memory import check_fits_in_memory
from .io.validation import validate_image
from .learn.embedding import compute_embeddings, embed_box
from .learn.modelfile import TrainedModel, check_compatible
from .learn.training import TrainConfig, train_encoder, training_schedule


def train(
    images: Sequence[ImageData],
    *,
    epochs: Optional[int] = None,
    device: str = "auto",
    seed: int = 0,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
    checkpoint_path: Optional[str] = None,
    **config_overrides: Any,
) -> TrainedModel:
    """Train a CUTS encoder on a dataset (2D images or 3D volumes), without labels.

    Parameters
    ----------
    images : sequence of ImageData
        The dataset (one image is the smallest dataset); all with the same number of channels. A case of
        several co-registered sequences is one image: `io.sequences.read_sequences([flair, t1c])`.
    epochs : int, optional
        Passes over the slices; None picks a budget for the device and the kind of input.
    device : str
        "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda" or "mps".
    seed : int
        Seed of the weights, crops and pair sampling (the same seed, data and CPU give the same weights).
    progress, cancel
        Progress callback ``(stage, fraction, message)`` and a cancel token checked before every step.
    checkpoint_path : str, optional
        Where the last complete epoch's model is kept, so Ctrl-C or a cancel loses at most one epoch.
    **config_overrides
        Any other `TrainConfig` field.

    Returns
    -------
    TrainedModel
        The encoder and its model card.

    Examples
    --------
    >>> from CUTSSegmentationLib.evaluate.phantom import synthetic_image_2d
    >>> image, _ = synthetic_image_2d(size=48)  # doctest: +SKIP
    >>> model = train([image], epochs=1, device="cpu")  # doctest: +SKIP

    Two cases of two sequences each (FLAIR, contrast T1), the channels in that order:

    >>> from CUTSSegmentationLib.io.sequences import read_sequences
    >>> cases = [read_sequences([f"p{i}_flair.nii.gz", f"p{i}_t1c.nii.gz"]) for i in (1, 2)]  # doctest: +SKIP
    >>> model = train(cases, device="cpu")  # doctest: +SKIP
    >>> model.card["sequences"]  # doctest: +SKIP
    ['p1_flair.nii.gz', 'p1_t1c.nii.gz']
    """
    if not images:
        raise InputError("no images to train on")
    for image in images:
        validate_image(image)
    config = TrainConfig(epochs=epochs, device=device, seed=seed, **config_overrides)
    torch_device = resolve_device(device)
    progress = track_overall(
        progress, plan_train(*_training_schedule(images, config, torch_device), _kind(torch_device))
    )
    return train_encoder(list(images), config, progress=progress, cancel=cancel, checkpoint_path=checkpoint_path)


def build_hierarchy(
    result: CondensationResult,
    image: ImageData,
    *,
    with_persistent: bool = True,
    info: Optional[dict[str, Any]] = None,
) -> Hierarchy:
    """Label maps of the kept levels (uint16, finest first) and the persistent map, in the image's shape."""
    atom_map, levels = level_maps(result.atom_labels, result.merge_tree, result.level_events, image.spatial_shape)
    persistent = None
    if with_persistent and len(levels):
        persistent = persistent_structures(levels[persistent_level_indices(result.level_clusters)])
    return Hierarchy(
        levels=levels,
        n_clusters=result.level_clusters,
        level_steps=result.level_events,
        atom_map=atom_map,
        merge_tree=result.merge_tree,
        persistent=persistent,
        geometry=image.geometry,
        is_2d=image.is_2d,
        info=dict(info or {}),
    )


def segment(
    image: ImageData,
    model: Optional[TrainedModel] = None,
    *,
    device: str = "auto",
    condensation: Optional[CondensationConfig] = None,
    train_epochs: Optional[int] = None,
    seed: int = 0,
    working_grid: Optional[Sequence[int]] = None,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> Hierarchy:
    """Segment one 2D image or 3D volume into a CUTS hierarchy.

    Without a model, an encoder is first trained on the image itself (the paper trains per dataset; one
    image is the smallest dataset). Volumes above 9 M voxels are worked on a grid of coarser blocks (in-plane, and
    along z where the slices are thinner than those blocks) and mapped back (`core.working_grid`); in volumes
    condensation clusters embeddings joined with intensities.

    Parameters
    ----------
    image : ImageData
        The image or volume; several co-registered sequences of one case are its channels
        (`io.sequences.read_sequences`), and the hierarchy takes the first one's grid.
    model : TrainedModel, optional
        An encoder trained on this kind of data (`train`, or `learn.modelfile.load_model`).
    device : str
        "auto", "cpu", "cuda" or "mps".
    condensation : CondensationConfig, optional
        Condensation settings (defaults: those the benchmarks were measured with).
    train_epochs : int, optional
        Epochs of the self-training when no model is given.
    seed : int
        Seed of training and condensation.
    working_grid : sequence of int, optional
        (z, y, x) block sizes of the grid to train, embed and condense on (y = x); None: the image's own grid up
        to 9 M voxels, the blocks of `core.working_grid.working_factors` above.
    progress, cancel
        Progress callback and cancel token, checked between and inside the stages.

    Returns
    -------
    Hierarchy
        Levels (finest first, uint16, the image's shape), cluster counts, merge tree, persistent map; `info`
        holds the model card, the condensation settings and the wall time of every stage.

    Examples
    --------
    >>> from CUTSSegmentationLib.evaluate.phantom import synthetic_phantom_3d
    >>> volume, truth = synthetic_phantom_3d()  # doctest: +SKIP
    >>> hierarchy = segment(volume, device="cpu", train_epochs=2)  # doctest: +SKIP
    >>> hierarchy.levels.shape[1:] == truth.shape  # doctest: +SKIP
    True

    FLAIR and contrast T1 of a glioma, stacked as two channels:

    >>> from CUTSSegmentationLib.io.sequences import read_sequences
    >>> both = read_sequences(["flair.nii.gz", "t1c.nii.gz"])  # doctest: +SKIP
    >>> hierarchy = segment(both, device="cpu")  # doctest: +SKIP
    """
    return segment_with_encoder(
        image,
        model,
        device=device,
        condensation=condensation,
        train_epochs=train_epochs,
        seed=seed,
        working_grid=working_grid,
        progress=progress,
        cancel=cancel,
    )[0]


def segment_with_encoder(
    image: ImageData,
    model: Optional[TrainedModel] = None,
    *,
    device: str = "auto",
    condensation: Optional[CondensationConfig] = None,
    train_epochs: Optional[int] = None,
    seed: int = 0,
    working_grid: Optional[Sequence[int]] = None,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> tuple[Hierarchy, TrainedModel]:
    """`segment`, also returning the encoder that embedded the image (self-trained when `model` is None).

    The encoder is what a click needs to look closer at the image (`structure_at_click`), and what
    `cuts segment` keeps beside the hierarchy.
    """
    validate_image(image)
    check_fits_in_memory(image.array.shape[:3], image.channels)
    timings: dict[str, float] = {}
    torch_device = resolve_device(device)
    factors = working_factors(image) if working_grid is None else factors_of(working_grid)
    working = block_mean(image, factors)
    progress = track_overall(progress, _segment_plan(image, working, model, train_epochs, torch_device))
    if model is None:
        t0 = time.perf_counter()
        model = train([working], epochs=train_epochs, device=device, seed=seed, progress=progress, cancel=cancel)
        timings["train_s"] = time.perf_counter() - t0
    check_compatible(model, working)
    check_cancel(cancel)

    t0 = time.perf_counter()
    embeddings = compute_embeddings(
        model, working, device=torch_device, dtype=np.float16, progress=progress, cancel=cancel
    )
    timings["embed_s"] = time.perf_counter() - t0
    check_cancel(cancel)

    t0 = time.perf_counter()
    config = (condensation or CondensationConfig(seed=seed)).resolved(is_volume=not image.is_2d)
    features = condensation_features(
        embeddings,
        working,
        config.intensity_weight,
        seed=config.seed,
        position_weight=config.position_weight or 0.0,
    )
    result = condense(features, config, device=torch_device, progress=progress, cancel=cancel)
    del embeddings, features
    result.atom_labels = to_image_grid(result.atom_labels, factors, image.array.shape[:3])
    timings["condense_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress("levels", 0.0, "label maps of the kept levels")
    info = {
        "library_version": __version__,
        "source": image.source,
        "model": _card_summary(model),
        "condensation": result.config,
        "condensation_timings": result.timings,
        "working_grid_factors": list(factors),
    }
    hierarchy = build_hierarchy(result, image, info=info)
    timings["levels_s"] = time.perf_counter() - t0
    hierarchy.info["timings"] = timings
    progress("done", 1.0, f"{hierarchy.n_levels} levels: {list(map(int, hierarchy.n_clusters))} clusters")
    return hierarchy, model


def structure_at_click(
    hierarchy: Hierarchy,
    seed_index_xyz: Sequence[float],
    image: Optional[ImageData] = None,
    model: Optional[TrainedModel] = None,
    *,
    device: str = "auto",
    sides_mm: Sequence[float] = ZOOM_SIDES_MM,
    structure: Optional[Structure] = None,
    look_closer: Optional[bool] = None,
    progress: ProgressCallback = no_progress,
    cancel: Optional[CancelToken] = None,
) -> Structure:
    """What one click on a hierarchy keeps: its structure, looked at closer where the hierarchy is too coarse.

    The structure under the seed in the hierarchy (`condense.structures.structure_at_seed`; with the image, the
    member of the seed's chain whose boundary is an edge in the image). In a volume, when the image and its
    encoder are given, the hierarchies of boxes around the seed are condensed too (`condense.zoom
    .structure_in_boxes`, seconds per box on a CPU), and the structure they agree on is kept instead where the
    finest region under the seed is too large to be one structure (`condense.zoom.is_unresolved`) or where it
    is a part of the hierarchy's structure (`condense.zoom.splits_whole`: several small organs in one region).
    With the image, either grows out to the edge the image draws around it where that growth stops
    (`condense.edge_growth.grow_to_edge`) and its outline moves out to the strongest edge just beyond it
    (`condense.edge_snap.snap_outward`).

    Parameters
    ----------
    hierarchy : Hierarchy
        What `segment` returned for `image`.
    seed_index_xyz : sequence of float
        The click as a voxel index (x, y[, z]).
    image, model : optional
        The segmented image and the encoder that embedded it (a self-trained run's model). Without the image
        the structure's level is chosen from region sizes alone; without the encoder the whole-image
        hierarchy's structure is kept (`look_closer=True` then raises InputError).
    device : str
        Where the box's embeddings and condensation run.
    sides_mm : sequence of float
        Sides of the boxes around the seed.
    structure : Structure, optional
        `structure_at_seed(hierarchy.levels, seed_index_xyz, image=..., spacing_xyz=..., snap=False)` when the
        caller has it already: with the image it is snapped here (`condense.structures.snapped_structure`) where
        it is kept or compared, not where the boxes' structure replaces it unseen.
    look_closer : bool, optional
        True: keep the boxes' structure whatever the region's size; False: never look closer; None: look
        closer in a volume with its image and encoder, and keep the boxes' structure where it is needed.
    progress, cancel
        Progress callback and cancel token of the closer look.

    Returns
    -------
    Structure
        The mask in the image's shape; `box_mm` says whether (and in which box) it was looked at closer.

    Examples
    --------
    >>> hierarchy = segment(volume, device="cpu")  # doctest: +SKIP
    >>> kept = structure_at_click(hierarchy, (120, 96, 40), volume, model, device="cpu")  # doctest: +SKIP
    """
    intensities = None if image is None else image_voxels(hierarchy, image)
    spacing = hierarchy.geometry.spacing
    if structure is None:
        structure = structure_at_seed(
            hierarchy.levels, seed_index_xyz, image=intensities, spacing_xyz=spacing, snap=False
        )
    compare = False
    if look_closer is None:
        look_closer = image is not None and model is not None and not hierarchy.is_2d
        compare = look_closer and not needs_closer_look(hierarchy, structure)
    if not look_closer:
        return structure if intensities is None else snapped_structure(structure, intensities, spacing)
    if hierarchy.is_2d:
        raise InputError("looking closer around a seed needs a volume; this hierarchy is of a 2D image")
    if image is None or model is None:
        raise InputError("looking closer around a seed needs the segmented image and the encoder that embedded it")
    factors = working_grid_of(hierarchy, image)
    working = block_mean(image, factors)
    check_compatible(model, working)
    at = tuple(i // f for i, f in zip(seed_to_index(seed_index_xyz, hierarchy.shape), factors))
    torch_device = resolve_device(device)
    zoomed = structure_in_boxes(
        working,
        at,
        lambda box: embed_box(model, working, box, device=torch_device),
        sides_mm,
        CondensationConfig(seed=int((hierarchy.info.get("condensation") or {}).get("seed", 0))),
        device=torch_device,
        progress=progress,
        cancel=cancel,
        box_filling=compare,  # a box the click's region fills is evidence only when checking the whole's
    )
    mask = to_image_grid(zoomed.mask.reshape(-1).view(np.uint8), factors, hierarchy.shape).reshape(hierarchy.shape)
    mask, grown_mm = grow_to_edge(mask.astype(bool), intensities, spacing)
    mask = snap_outward(mask, intensities, spacing)
    if compare:
        structure = snapped_structure(structure, intensities, spacing)
        if not splits_whole(structure.mask, mask, box_on_image_grid(zoomed.box, factors, hierarchy.shape), intensities):
            return structure
    return Structure(
        mask=mask,
        level=zoomed.level,
        persistence=1,
        voxels=int(mask.sum()),
        chain_sizes=structure.chain_sizes,
        box_mm=zoomed.side_mm,
        grown_mm=grown_mm,
    )


def image_voxels(hierarchy: Hierarchy, image: ImageData, name: str = "the image") -> np.ndarray:
    """The segmented image's voxels on the hierarchy's grid, ``(*hierarchy.shape, C)`` (what a click reads the
    image's edges from); InputError, naming the image as `name`, where its grid is another."""
    if tuple(image.spatial_shape) != tuple(hierarchy.shape):
        raise InputError(f"{name}: its grid {image.spatial_shape} is not the hierarchy's {tuple(hierarchy.shape)}")
    return image.array.reshape(*hierarchy.shape, image.channels)


def working_grid_of(hierarchy: Hierarchy, image: ImageData) -> Factors:
    """The (z, y, x) blocks of the grid `hierarchy` was condensed on (`core.working_grid`), as its info records
    them (an in-plane size alone in hierarchies saved before z blocks), or as `segment` would choose them."""
    recorded = hierarchy.info.get("working_grid_factors") or hierarchy.info.get("working_grid_in_plane_factor")
    return factors_of(recorded) if recorded else working_factors(image)


def needs_closer_look(hierarchy: Hierarchy, structure: Structure) -> bool:
    """Whether a click's finest region in a volume's hierarchy is too large to be one structure (`condense.zoom`)."""
    total = int(np.prod(hierarchy.shape))
    return not hierarchy.is_2d and is_unresolved(structure.chain_sizes, total, hierarchy.geometry.spacing)


def _kind(device) -> str:
    """The job plan's kind of device."""
    return "accelerator" if is_accelerator(device) else "cpu"


def _segment_plan(image: ImageData, working: ImageData, model, train_epochs: Optional[int], device) -> JobPlan:
    """The stages `segment` runs (training only without a model) and their estimated seconds."""
    steps, crop, batch = (0, 0, 1)
    if model is None:
        steps, crop, batch = _training_schedule([working], TrainConfig(epochs=train_epochs), device)
    return plan_segment(
        working.n_pixels,
        image_voxels=image.n_pixels,
        train_steps=steps,
        crop_size=crop,
        batch_size=batch,
        device_kind=_kind(device),
    )


def _training_schedule(images: Sequence[ImageData], config: TrainConfig, device) -> tuple[int, int, int]:
    """Optimiser steps, crop side and crops per step `train_encoder` will run with `config` (for the job plan)."""
    schedule = training_schedule(images, config, device)
    return schedule.steps, schedule.crop, schedule.config.batch_size


def _card_summary(model) -> dict[str, Any]:
    card = getattr(model, "card", None)
    if card is None:
        return {}
    if hasattr(card, "to_dict"):
        return card.to_dict()
    if isinstance(card, dict):
        return dict(card)
    return {"card": str(card)}
