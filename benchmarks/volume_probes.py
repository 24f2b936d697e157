"""Probes of the 3D engine's open questions, on the benchmark's cases (not part of the benchmark's tables).

``seeds``: how much a case depends on the encoder run. Per volume, one encoder per training seed (the
defaults), then condensation with each (intensity weight, position weight) pair; prints the click's Dice and
the best member of the seed's chain (an oracle) for every case of the volume.

``runs``: how much a click depends on the run: per volume, encoders of several training seeds, each condensed
with several condensation seeds (the two sources of randomness of a self-trained run); prints, per (encoder,
condensation) pair and as mean and range, the Dice of the click with the level chosen from region sizes alone
and of the engine's click (which also reads the image's edges, `condense.boundary`, and grows to them,
`condense.edge_growth`), the chain's best (an oracle), the click with an intensity-edge stop (a growth step
whose added voxels' median lies more than `--edge` robust spreads of the region's own intensities away also
ends the structure; a candidate rule not kept), and per encoder the engine click most of its condensation
seeds agree on (the medoid of their masks); where the image's edges replace the size rule's member with a finer
one, how much of that finer member's 2-voxel shell lies inside the size rule's member (near 1: a core inside the
structure, such as the PET's hot core in its uptake, or a spinal cord inside its CSF; a candidate gate not kept).

``zoom``: whether a hierarchy computed only in a box around the click holds a structure the whole-volume
hierarchy does not (the thorax CT's tumour, whose region under the click at the finest whole-volume level is
the body's soft tissue). Per box side (mm, a cube on the working grid) the click's Dice and the chain's best,
then what the engine's closer look (`condense.zoom.structure_in_boxes`, the member the boxes agree on) keeps,
whether or not the engine would take the look on that click.

    python benchmarks/volume_probes.py seeds spine-t2 --seeds 0 1 2 --weights 1:1 2:1 3:1
    python benchmarks/volume_probes.py seeds spine-t2 --seeds 0 1 2 --steps 400
    python benchmarks/volume_probes.py runs spine-t2 spleen2 --seeds 0 1 2 --condensation-seeds 0 1 2 3
    python benchmarks/volume_probes.py zoom lung1-001-ct-gtv --boxes 100 128 160

Labels score; they never choose anything the engine does. Encoders are cached under benchmarks/.cache/probes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from volume_cases import ALL_CASES, Case, load_reference, select_cases, volumes_dir  # noqa: E402
from volume_engine import innermost_point  # noqa: E402
from volume_scoring import dice  # noqa: E402

from CUTSSegmentationLib.condense import structures, zoom  # noqa: E402
from CUTSSegmentationLib.condense.binarize import seed_to_index  # noqa: E402
from CUTSSegmentationLib.condense.boundary import shell_around  # noqa: E402
from CUTSSegmentationLib.condense.condensation import CondensationConfig, condense  # noqa: E402
from CUTSSegmentationLib.condense.features import condensation_features  # noqa: E402
from CUTSSegmentationLib.core.imagedata import ImageData  # noqa: E402
from CUTSSegmentationLib.core.working_grid import NO_BLOCKS, Factors, block_mean, to_image_grid, working_factors  # noqa: E402
from CUTSSegmentationLib.io.sequences import read_sequences  # noqa: E402
from CUTSSegmentationLib.learn.embedding import compute_embeddings  # noqa: E402
from CUTSSegmentationLib.learn.modelfile import load_model, save_model  # noqa: E402
from CUTSSegmentationLib.learn.training import MAX_EPOCHS, TrainConfig, training_schedule  # noqa: E402
from CUTSSegmentationLib.pipeline import build_hierarchy, train  # noqa: E402

CACHE = HERE / ".cache" / "probes"


def _epochs_for_steps(working: ImageData, steps: int) -> int:
    """Epochs that give `working` about `steps` optimiser steps, rounded and capped as the CPU budget is."""
    per_epoch = training_schedule([working], TrainConfig(epochs=1), torch.device("cpu")).steps_per_epoch
    return int(min(MAX_EPOCHS, max(1, round(steps / per_epoch))))


def _encoder(case: Case, working: ImageData, seed: int, steps: Optional[int] = None):
    """The self-trained encoder of the case's volume for `seed` (the default budget, or about `steps` optimiser
    steps), trained once, then cached."""
    budget = "" if steps is None else f".steps{steps}"
    path = CACHE / f"{case.volume_key.replace('/', '_')}.seed{seed}{budget}.safetensors"
    if path.is_file():
        return load_model(path, device="cpu")
    epochs = None if steps is None else _epochs_for_steps(working, steps)
    model = train([working], epochs=epochs, device="cpu", seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    return model


@dataclass
class _Volume:
    """One volume of the probed cases: the image, its working grid, and each case's reference and click."""

    image: ImageData
    factors: Factors
    working: ImageData
    truths: dict[str, np.ndarray]
    clicks: dict[str, tuple[int, ...]]


def _volumes(cases: list[Case]):
    """(cases of one volume, _Volume) for every volume the cases use, read once each."""
    root = volumes_dir()
    for key in dict.fromkeys(c.volume_key for c in cases):
        group = [c for c in cases if c.volume_key == key]
        image = read_sequences(group[0].paths(root))
        factors = working_factors(image)
        truths = {c.name: load_reference(c, root) for c in group}
        clicks = {c.name: innermost_point(truths[c.name], image.geometry.spacing) for c in group}
        yield group, _Volume(image, factors, block_mean(image, factors), truths, clicks)


def _levels(embeddings: np.ndarray, volume: _Volume, config: CondensationConfig) -> np.ndarray:
    """(L, Z, Y, X) levels of the volume's working grid condensed with `config` (volume defaults filled in),
    on the image's grid."""
    resolved = config.resolved(is_volume=True)
    features = condensation_features(
        embeddings,
        volume.working,
        resolved.intensity_weight,
        seed=resolved.seed,
        position_weight=resolved.position_weight,
    )
    levels = build_hierarchy(condense(features, resolved), volume.working, with_persistent=False).levels
    if volume.factors == NO_BLOCKS:
        return levels
    shape = volume.image.array.shape[:3]
    return np.stack([to_image_grid(lv.reshape(-1), volume.factors, shape).reshape(shape) for lv in levels])


def _click_and_best(levels: np.ndarray, seed_xyz: Sequence[int], truth: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The click's mask and Dice, and the best Dice of a member of the seed's chain (an oracle)."""
    mask = structures.structure_at_seed(levels, seed_xyz).mask
    chain = structures.seed_chain(levels, seed_to_index(seed_xyz, levels.shape[1:]))
    best = max(dice(structures.chain_member(levels, chain, k), truth) for k in range(len(levels)))
    return mask, dice(mask, truth), best


def probe_seeds(cases: list[Case], seeds: Sequence[int], weights: Sequence[str], steps: Optional[int] = None) -> None:
    for group, volume in _volumes(cases):
        working = volume.working
        for seed in seeds:
            embeddings = compute_embeddings(
                _encoder(group[0], working, seed, steps), working, device="cpu", dtype=np.float16
            )
            for pair in weights:
                intensity, position = (float(v) for v in pair.split(":"))
                config = CondensationConfig(seed=seed, intensity_weight=intensity, position_weight=position)
                levels = _levels(embeddings, volume, config)
                scores = [
                    (c.name, *_click_and_best(levels, volume.clicks[c.name], volume.truths[c.name])[1:]) for c in group
                ]
                text = " | ".join(f"{name} {click:.3f} / {best:.3f}" for name, click, best in scores)
                print(f"seed {seed} weights {pair}: {text}", flush=True)


def _edge_shift(levels: np.ndarray, chain: structures.SeedChain, level: int, intensities: np.ndarray) -> float:
    """Median of the voxels level `level + 1` adds to the region under the seed, in robust spreads (10th-90th
    percentile / 2.56) of the region's own intensities away from its median (largest over the channels)."""
    box = chain.boxes[level + 1]
    local = tuple(i - b.start for i, b in zip(chain.index, box))
    outer = structures.component_at(levels[level + 1][box], local)
    inner = structures.component_at(levels[level][box], local)
    added = outer & ~inner
    if not added.any():
        return 0.0
    values = intensities[box]
    shift = 0.0
    for channel in range(values.shape[-1]):
        lo, mid, hi = np.percentile(values[..., channel][inner], [10, 50, 90])
        spread = max((hi - lo) / 2.56, 1e-6)
        shift = max(shift, abs(float(np.median(values[..., channel][added])) - mid) / spread)
    return shift


def _edge_click(
    levels: np.ndarray, seed_xyz: Sequence[int], intensities: np.ndarray, edge: float, engine_mask: np.ndarray
) -> np.ndarray:
    """The click with the intensity-edge stop: the member before the first growth step that is salient in size
    (`structures.SALIENT_JUMP`) or adds voxels more than `edge` spreads away; else `engine_mask`, the engine's
    own choice."""
    chain = structures.seed_chain(levels, seed_to_index(seed_xyz, levels.shape[1:]))
    sizes = chain.sizes
    for level in range(len(sizes) - 1):
        if sizes[level] < structures.MIN_STRUCTURE_VOXELS or sizes[level + 1] == sizes[level]:
            continue
        if sizes[level + 1] >= structures.SALIENT_JUMP * sizes[level]:
            break
        if _edge_shift(levels, chain, level, intensities) > edge:
            return structures.chain_member(levels, chain, level)
    return engine_mask


def _edge_change(levels: np.ndarray, seed_xyz: Sequence[int], sharp: int, truth: np.ndarray) -> str:
    """Where the image's edges replaced the size rule's member with a finer one (the engine's click kept level
    `sharp`): both members' Dice and the fraction of the finer member's 2-voxel shell inside the size rule's
    member; "" where they did not."""
    chain = structures.seed_chain(levels, seed_to_index(seed_xyz, levels.shape[1:]))
    size_level = chain.chosen_level(total=int(np.prod(levels.shape[1:])))
    if sharp == size_level:
        return ""
    outer = structures.chain_member(levels, chain, size_level)
    inner = structures.chain_member(levels, chain, sharp)
    shell = shell_around(inner, 2)
    inside = np.count_nonzero(shell & outer) / max(np.count_nonzero(shell), 1)
    return (
        f", edges replace the size rule's member {dice(outer, truth):.3f} by a finer one {dice(inner, truth):.3f} "
        f"whose shell lies {inside:.2f} inside it"
    )


def _medoid(masks: Sequence[np.ndarray]) -> np.ndarray:
    """The mask with the highest mean Dice to the others (the structure most runs agree on)."""
    if len(masks) == 1:
        return masks[0]
    agreement = [np.mean([dice(a, b) for j, b in enumerate(masks) if j != i]) for i, a in enumerate(masks)]
    return masks[int(np.argmax(agreement))]


def probe_runs(cases: list[Case], seeds: Sequence[int], condensation_seeds: Sequence[int], edge: float) -> None:
    for group, volume in _volumes(cases):
        truths, clicks = volume.truths, volume.clicks
        rows: dict[str, list[tuple[float, float, float]]] = {c.name: [] for c in group}
        medoids: dict[str, list[float]] = {c.name: [] for c in group}
        for seed in seeds:
            embeddings = compute_embeddings(
                _encoder(group[0], volume.working, seed), volume.working, device="cpu", dtype=np.float16
            )
            kept: dict[str, list[np.ndarray]] = {c.name: [] for c in group}
            for condensation_seed in condensation_seeds:
                levels = _levels(embeddings, volume, CondensationConfig(seed=condensation_seed))
                for c in group:
                    mask, click, best = _click_and_best(levels, clicks[c.name], truths[c.name])
                    engine_click = structures.structure_at_seed(
                        levels, clicks[c.name], image=volume.image.array, spacing_xyz=volume.image.geometry.spacing
                    )
                    engine = engine_click.mask
                    kept[c.name].append(engine)
                    edged = dice(_edge_click(levels, clicks[c.name], volume.image.array, edge, mask), truths[c.name])
                    rows[c.name].append((click, best, edged, dice(engine, truths[c.name])))
                    change = _edge_change(levels, clicks[c.name], engine_click.level, truths[c.name])
                    print(
                        f"{c.name} encoder seed {seed} condensation seed {condensation_seed}: click (sizes only) "
                        f"{click:.3f}, engine click {rows[c.name][-1][3]:.3f}, best {best:.3f}, edge stop {edged:.3f}"
                        f"{change}",
                        flush=True,
                    )
            for c in group:
                medoids[c.name].append(dice(_medoid(kept[c.name]), truths[c.name]))
                print(
                    f"{c.name} encoder seed {seed}: medoid of the condensation seeds' clicks {medoids[c.name][-1]:.3f}"
                )
        for name, scores in rows.items():
            click, best, edged, engine = (np.array(v) for v in zip(*scores))
            print(
                f"SUMMARY {name} ({len(scores)} runs): click (sizes only) first run {click[0]:.3f}, mean "
                f"{click.mean():.3f}, range {click.min():.3f}-{click.max():.3f}; engine click (the image's edges) "
                f"first run {engine[0]:.3f}, mean {engine.mean():.3f}, range {engine.min():.3f}-{engine.max():.3f}; "
                f"best mean {best.mean():.3f}; "
                f"edge stop mean {edged.mean():.3f}, range {edged.min():.3f}-{edged.max():.3f}; "
                f"medoid per encoder {' / '.join(f'{m:.3f}' for m in medoids[name])} (mean {np.mean(medoids[name]):.3f})",
                flush=True,
            )


def _box_rows(embeddings: np.ndarray):
    """``embed(box)`` of the working grid's (Z, Y, X, D) embeddings: the box's rows in raster order."""
    return lambda box: np.ascontiguousarray(embeddings[box]).reshape(-1, embeddings.shape[-1])


def probe_zoom(cases: list[Case], boxes_mm: Sequence[float]) -> None:
    root = volumes_dir()
    for case in cases:
        image = read_sequences(case.paths(root))
        fz, fy, fx = working_factors(image)
        working = block_mean(image, (fz, fy, fx))
        embeddings = compute_embeddings(_encoder(case, working, 0), working, device="cpu", dtype=np.float16)
        grid = working.array.shape[:3]
        embeddings = embeddings.reshape(*grid, -1)
        reference = load_reference(case, root)
        truth = reference[::fz, ::fy, ::fx]  # scored on the working grid
        x, y, z = innermost_point(reference, image.geometry.spacing)
        at = (z // fz, y // fy, x // fx)
        for side in boxes_mm:
            t0 = time.perf_counter()
            box = zoom.box_around(at, side, working.geometry.spacing, grid)
            levels = zoom.box_hierarchy_levels(working, box, _box_rows(embeddings)(box), CondensationConfig())
            local = tuple(i - b.start for i, b in zip(at, box))[::-1]
            scores = []
            for k in range(len(levels)):
                mask = np.zeros(truth.shape, dtype=bool)
                mask[box] = structures.structure_at_seed(levels, local, level=k).mask
                scores.append(dice(mask, truth))
            chosen = structures.structure_at_seed(levels, local).level
            voxels = int(np.prod([b.stop - b.start for b in box]))
            print(
                f"{case.name} box {side:g} mm ({voxels:,} working voxels): click {scores[chosen]:.3f} "
                f"(level {chosen} of {len(levels)}), best {max(scores):.3f} [{time.perf_counter() - t0:.0f} s]",
                flush=True,
            )
        kept = zoom.structure_in_boxes(working, at, _box_rows(embeddings), boxes_mm)
        print(
            f"{case.name}: the engine's closer look (box {kept.side_mm:g} mm, agreement {kept.agreement:.2f}): "
            f"{dice(kept.mask, truth):.3f}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    seeds = sub.add_parser("seeds", help="the same case with encoders of several training seeds")
    seeds.add_argument("cases", nargs="+", help="case names (substrings)")
    seeds.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    seeds.add_argument("--weights", nargs="+", default=["1:1"], help="intensity:position weight pairs")
    seeds.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the CPU volume budget)")
    runs = sub.add_parser("runs", help="the same case over encoder seeds x condensation seeds")
    runs.add_argument("cases", nargs="+", help="case names (substrings)")
    runs.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    runs.add_argument("--condensation-seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    runs.add_argument("--edge", type=float, default=5.0, help="intensity-edge stop, in robust spreads")
    zoom = sub.add_parser("zoom", help="hierarchies of boxes around the click")
    zoom.add_argument("cases", nargs="+", help="case names (substrings)")
    zoom.add_argument("--boxes", type=float, nargs="+", default=[100.0, 128.0, 160.0], help="box sides in mm")
    args = parser.parse_args(argv)
    cases = select_cases(args.cases, ALL_CASES)
    if not cases:
        parser.error(f"no case matches {args.cases}")
    if args.probe == "seeds":
        probe_seeds(cases, args.seeds, args.weights, args.steps)
    elif args.probe == "runs":
        probe_runs(cases, args.seeds, args.condensation_seeds, args.edge)
    else:
        probe_zoom(cases, args.boxes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
