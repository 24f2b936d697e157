"""The `cuts` command line (demo, train, segment, binarize), on top of every stage; nothing imports it.

Also run as `python -m CUTSSegmentationLib`, as the Slicer module's background process does (``--progress
lines``). A user-fixable problem ends with one line on stderr and an exit code (`core.exit_codes`: 2 input,
3 model file, 4 memory, 130 interrupted, 143 terminated); every output location is checked before any work, and
outputs are staged and swapped into place only on success. See docs/architecture.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import __version__
from .condense.hierarchy import AUTO, PERSISTENT, Hierarchy, parse_level
from .condense.structures import Structure, labelled_seed, structure_at_seed
from .condense.zoom import finest_region, region_millilitres
from .core.errors import InputError
from .core.exit_codes import EXIT_OK, run_command
from .core.imagedata import ImageData
from .core.overall_progress import OverallProgress
from .core.progress import ConsoleProgress, LineProgress, ProgressCallback, no_progress
from .demo import run_demo
from .io.formats import LABEL_EXTENSIONS, file_extension
from .io.inputs import collect_inputs
from .io.outputs import SEGMENTATION_OUTPUTS, write_segmentation_outputs
from .io.sequences import SEQUENCE_SEPARATOR, read_sequences
from .io.staging import check_output_file, check_output_folder, staged_outputs
from .io.validation import validate_image
from .io.writing import write_label_image
from .learn.cluster_head import cluster_head_map
from .learn.modelfile import TrainedModel, card_path, load_model, save_model
from .learn.objective_registry import OBJECTIVES
from .methods.atlas import NEEDS_ATLAS
from .methods.labels import single_level_hierarchy
from .methods.registry import METHODS, MethodOptions, segment_per_image
from .pipeline import image_voxels, needs_closer_look, segment_with_encoder, structure_at_click, train

#: The optional file `cuts segment` adds for a model with a cluster head.
CLUSTERS_OUTPUT = "clusters.nrrd"
#: The encoder that embedded the input (self-trained or given), kept so that `cuts binarize` can look closer.
MODEL_OUTPUT = "model.safetensors"
#: Random seeds torch and numpy both accept.
MAX_RANDOM_SEED = 2**63 - 1


# ------------------------------------------------------------------------------------------- helpers
def _progress(kind: str) -> ProgressCallback:
    """The progress reporter ``--progress`` names: a bar on stderr, lines on stdout, or nothing.

    The bar and the lines show the whole job's fraction and the time left once a pipeline call gives its plan;
    the files written after `segment` count as the plan's last stage.
    """
    if kind == "lines":
        return OverallProgress(None, LineProgress(sys.stdout), writes_outputs=True)
    if kind == "none":
        return no_progress
    return OverallProgress(None, ConsoleProgress(sys.stderr), writes_outputs=True)


def _parse_floats(text: str, name: str, counts: Sequence[int]) -> tuple[float, ...]:
    """``"1,2,3"`` -> (1.0, 2.0, 3.0), with one of `counts` numbers; `name` is the option, for errors."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{name} must be comma-separated numbers, got '{text}'") from None
    if len(values) not in counts:
        raise InputError(f"{name} needs {' or '.join(map(str, counts))} numbers, got '{text}'")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be finite numbers, got '{text}'")
    return values


def _check_common_arguments(args: argparse.Namespace) -> None:
    """Refuse numeric options that cannot work (no epochs, a seed torch rejects, a one-cluster head)."""
    epochs = getattr(args, "epochs", None)
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    seed = getattr(args, "seed", 0)
    if isinstance(seed, int) and not 0 <= seed <= MAX_RANDOM_SEED:
        raise InputError(f"--seed must be between 0 and {MAX_RANDOM_SEED}, got {seed:.6g}")
    clusters = getattr(args, "clusters", None)
    if clusters is not None and clusters < 2:
        raise InputError(f"--clusters must be at least 2, got {clusters}")


def _load_model(path: Optional[str], device: str) -> Optional[TrainedModel]:
    """The model at `path` on the CPU (the pipeline moves it), or None when no path was given."""
    if path is None:
        return None
    return load_model(path, device="cpu")


# ------------------------------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    """``cuts train INPUTS [--sequences K] --out MODEL``: train one encoder on every case, save it with its card."""
    _check_common_arguments(args)
    out = check_output_file(args.out, (".safetensors",))
    check_output_file(card_path(out), (".json",), option="--out's card")
    cases = _cases(collect_inputs(args.inputs), args.sequences)
    images = [read_sequences(case) for case in cases]
    start = time.perf_counter()
    model = train(
        images,
        epochs=args.epochs,
        device=args.device,
        seed=args.seed,
        progress=_progress(args.progress),
        checkpoint_path=str(out) if args.checkpoint else None,
        **_objective_overrides(args),
    )
    save_model(model, out)
    print(f"trained on {len(images)} input(s) in {time.perf_counter() - start:.1f} s -> {out}", file=sys.stderr)
    return EXIT_OK


def _cases(paths: Sequence[Path], sequences: int) -> list[list[Path]]:
    """Consecutive groups of `sequences` inputs, each one case's sequences in channel order."""
    if sequences < 1:
        raise InputError(f"--sequences must be at least 1, got {sequences}")
    if len(paths) % sequences:
        raise InputError(
            f"--sequences {sequences}: {len(paths)} input file(s) do not split into cases of {sequences} "
            f"sequences; give each case's {sequences} sequences one after the other"
        )
    return [list(paths[i : i + sequences]) for i in range(0, len(paths), sequences)]


def _objective_overrides(args: argparse.Namespace) -> dict:
    """`TrainConfig` fields that ``--objective`` and ``--clusters`` set (empty for the CUTS objective)."""
    """TrainConfig fields for a peer objective (nothing for the CUTS objective: its path stays as it was)."""
    objective = getattr(args, "objective", None) or "cuts"
    if objective == "cuts":
        return {}
    overrides: dict = {"objective": objective}
    if getattr(args, "clusters", None) is not None:
        overrides["n_clusters"] = int(args.clusters)
    return overrides


def _check_method_arguments(args: argparse.Namespace) -> None:
    """Refuse option combinations that mean nothing for the chosen ``--method``, before any work."""
    method = args.method
    if method == "atlas" and not args.atlas:
        raise InputError(NEEDS_ATLAS)
    if args.atlas and method != "atlas":
        raise InputError("--atlas is only used by --method atlas")
    if method != "cuts" and args.model:
        raise InputError(f"--method {method} segments each image on its own; --model applies to --method cuts")
    if method != "cuts" and args.objective not in (None, "cuts"):
        raise InputError(f"--objective applies to --method cuts (CUTS-style encoders), not to --method {method}")
    if method == "atlas" and len(args.inputs) > 1:
        raise InputError("--method atlas segments one grey-level image; give one input (or use --method cuts)")


def _segment_per_image(args: argparse.Namespace, image: ImageData) -> Hierarchy:
    """S3-Net, GMM threshold or atlas transfer: one label map, as a one-level hierarchy."""
    validate_image(image)
    options = MethodOptions(
        seed=args.seed, device=args.device, iterations=args.epochs, atlas=args.atlas, progress=_progress(args.progress)
    )
    labels, info = segment_per_image(args.method, image, options)
    info["source"] = image.source
    return single_level_hierarchy(labels, image, info)


def cmd_segment(args: argparse.Namespace) -> int:
    """``cuts segment INPUT [INPUT...] --out DIR``: a hierarchy (CUTS) or a one-level one (per-image methods).

    Several inputs are one case's co-registered sequences, stacked as channels in the order given; the
    outputs have the first input's geometry.
    """
    _check_method_arguments(args)
    _check_common_arguments(args)
    check_output_folder(args.out, SEGMENTATION_OUTPUTS + (CLUSTERS_OUTPUT, MODEL_OUTPUT, card_path(MODEL_OUTPUT).name))
    progress = _progress(args.progress)
    image = read_sequences(args.inputs)
    start = time.perf_counter()
    if args.method != "cuts":
        hierarchy = _segment_per_image(args, image)
        with staged_outputs(args.out) as stage:
            write_segmentation_outputs(hierarchy, image, stage, progress)
        print(
            f"--method {args.method}: {int(hierarchy.n_clusters[0])} labels in {time.perf_counter() - start:.1f} s "
            f"-> {args.out}",
            file=sys.stderr,
        )
        return EXIT_OK
    model = _load_model(args.model, args.device)
    if model is not None and args.objective is not None:
        trained_with = (model.card.get("objective") or {}).get("name", "cuts")
        if trained_with != args.objective:
            raise InputError(
                f"--objective {args.objective} does not match the model, which was trained with '{trained_with}'"
            )
    if model is None and _objective_overrides(args):
        model = train(
            [image],
            epochs=args.epochs,
            device=args.device,
            seed=args.seed,
            progress=progress,
            **_objective_overrides(args),
        )
    hierarchy, model = segment_with_encoder(
        image,
        model,
        device=args.device,
        train_epochs=args.epochs,
        seed=args.seed,
        progress=progress,
    )
    with staged_outputs(args.out) as stage:
        write_segmentation_outputs(hierarchy, image, stage, progress)
        save_model(model, stage / MODEL_OUTPUT)
        if model is not None and getattr(model, "cluster_head", None) is not None:
            clusters = cluster_head_map(model, image, device=args.device)
            write_label_image(clusters, hierarchy.geometry, stage / CLUSTERS_OUTPUT, hierarchy.is_2d)
    counts = ", ".join(str(int(c)) for c in hierarchy.n_clusters)
    print(
        f"{hierarchy.n_levels} levels ({counts} clusters) in {time.perf_counter() - start:.1f} s -> {args.out}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_binarize(args: argparse.Namespace) -> int:
    """``cuts binarize hierarchy.npz --seed X,Y[,Z] --out MASK``: the structure under a seed, as a mask file."""
    if (args.seed is None) == (args.seed_ras is None):
        raise InputError("give exactly one of --seed X,Y[,Z] (voxel indices) or --seed-ras R,A,S (millimetres)")
    check_output_file(args.out, LABEL_EXTENSIONS)
    level = parse_level(args.level, name="--level")
    if args.closer == "always" and (level != AUTO or args.whole_class):
        raise InputError(
            "--closer always keeps the structure under the seed: it takes neither --level nor --whole-class"
        )
    hierarchy = Hierarchy.load(args.hierarchy)
    if file_extension(args.out) == ".png" and not hierarchy.is_2d:
        raise InputError(f"--out {args.out}: a 3D mask cannot be a PNG; use .nrrd, .nii.gz, .nii or .mha")
    if args.seed is not None:
        seed = _parse_floats(args.seed, "--seed", (2, 3))
    else:
        seed = tuple(hierarchy.geometry.ras_to_index(_parse_floats(args.seed_ras, "--seed-ras", (3,))))
        if hierarchy.is_2d:
            seed = seed[:2] + (round(seed[2]),)
    if level == AUTO:
        labelled_seed(hierarchy.levels, seed)  # a bad seed fails before the image is read
        image, intensities = _segmented_image(args, hierarchy)
        closer = {"auto": None, "always": True, "never": False}[args.closer]
        looks = bool(closer or (closer is None and not args.whole_class))
        structure = structure_at_seed(
            hierarchy.levels,
            seed,
            whole_class=args.whole_class,
            image=intensities,
            spacing_xyz=hierarchy.geometry.spacing,
            snap=not looks,  # the closer look snaps only the structure it keeps
        )
        if image is None:
            print("note: without the segmented image (--image) the level follows region sizes alone", file=sys.stderr)
        if looks:
            structure = _closer_look(args, hierarchy, seed, structure, image)
        if structure.box_mm is not None:
            where = f"level {structure.level} of the hierarchy of a {structure.box_mm:g} mm box around the seed"
        else:
            where = (
                f"level {structure.level} ({int(hierarchy.n_clusters[structure.level])} clusters), "
                f"the same region over {structure.persistence} level(s)"
            )
    else:
        labels = hierarchy.label_map(level, name="--level")
        structure = structure_at_seed(labels[None], seed, level=0, whole_class=args.whole_class)
        where = "the persistent map" if level == PERSISTENT else f"level {level}"
    mask = structure.mask.astype(np.uint8)
    write_label_image(mask, hierarchy.geometry, args.out, hierarchy.is_2d)
    kind = "voxels of the seed's class" if args.whole_class else "voxels of the structure under the seed"
    if structure.grown_mm is not None:
        where += f", grown up to {structure.grown_mm:g} mm to the image's edge"
    print(f"{structure.voxels} {kind} at {where} -> {args.out}", file=sys.stderr)
    return EXIT_OK


def _segmented_image(
    args: argparse.Namespace, hierarchy: Hierarchy
) -> tuple[Optional[ImageData], Optional[np.ndarray]]:
    """The segmented image (``--image``, else the inputs the hierarchy records, where they still exist) and its
    voxels on the hierarchy's grid; (None, None) when neither is there: the click's level then follows region
    sizes alone."""
    inputs = args.image or _recorded_inputs(hierarchy)
    if not inputs:
        return None, None
    image = read_sequences(inputs)
    return image, image_voxels(hierarchy, image, name=f"--image {' '.join(inputs)}")


def _closer_look(
    args: argparse.Namespace,
    hierarchy: Hierarchy,
    seed,
    structure: Structure,
    image: Optional[ImageData],
) -> Structure:
    """The structure the hierarchies of boxes around the seed agree on where it is needed (``--closer auto``:
    `structure_at_click`) or asked for (``--closer always``), or `structure` (unsnapped, `structure_at_seed(...,
    snap=False)`; snapped to the image's edge here) with a note why not.

    Needs the segmented image (`_segmented_image`) and its encoder (``--model``, else the model.safetensors
    `cuts segment` wrote beside the hierarchy). With ``--closer auto`` a region under the seed small enough to be
    one structure is kept silently without them: the look would only check it.
    """
    millilitres = region_millilitres(finest_region(structure.chain_sizes), hierarchy.geometry.spacing)
    size = f"{millilitres / 1e3:.1f} litres" if millilitres >= 1e3 else f"{millilitres:.0f} mL"
    model_path = args.model or str(Path(args.hierarchy).with_name(MODEL_OUTPUT))
    always = args.closer == "always"

    def kept_as_found() -> Structure:  # snapped to the image's edge where the image is there
        return structure_at_click(hierarchy, seed, image, structure=structure, look_closer=False)

    if hierarchy.is_2d:
        if not always:
            return kept_as_found()
        raise InputError("--closer always needs a volume; this hierarchy is of a 2D image")
    needed = always or needs_closer_look(hierarchy, structure)
    missing = []
    if image is None:
        missing.append("--image INPUT (the segmented volume)")
    if not Path(model_path).is_file():
        missing.append(f"--model MODEL ({model_path} does not exist)")
    if missing and always:
        raise InputError(f"--closer always needs {' and '.join(missing)}")
    if missing and not needed:
        return kept_as_found()
    if missing:
        print(
            f"note: the region under the seed at the finest level is {size}, too large to be one structure; "
            f"give {' and '.join(missing)} to look closer around the seed",
            file=sys.stderr,
        )
        return kept_as_found()
    why = f"the finest region under it is {size}" if needed else "whether the region under it is one structure"
    print(f"looking closer around the seed ({why})", file=sys.stderr)
    return structure_at_click(
        hierarchy,
        seed,
        image,
        load_model(model_path, device="cpu"),
        device=args.device,
        structure=structure,
        look_closer=True if always else None,
        progress=_progress(args.progress),
    )


def _recorded_inputs(hierarchy: Hierarchy) -> list[str]:
    """The input files the hierarchy records (`ImageData.source`), when every one of them still exists."""
    source = hierarchy.info.get("source")
    if not isinstance(source, str) or not source:
        return []
    paths = source.split(SEQUENCE_SEPARATOR)
    return paths if all(Path(p).is_file() for p in paths) else []


def cmd_demo(args: argparse.Namespace) -> int:
    """``cuts demo``: train, segment and score on bundled data (a retina photograph, a 3D phantom)."""
    _check_common_arguments(args)
    check_output_folder(args.out, ("summary.json",))
    run_demo(Path(args.out), device=args.device, epochs=args.epochs, progress=_progress(args.progress))
    return EXIT_OK


# ------------------------------------------------------------------------------------------- parsing
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each sets ``func``, the function that runs it)."""
    parser = argparse.ArgumentParser(
        prog="cuts",
        description="Unsupervised multigranular segmentation (CUTS): train an encoder, condense, binarise.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, mps")
    common.add_argument(
        "--progress",
        choices=("bar", "lines", "none"),
        default="bar",
        help="progress bar on stderr, machine-readable lines on stdout, or nothing",
    )
    common.add_argument("--seed", type=int, default=0, help="random seed (training and condensation)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", parents=[common], help="run everything on bundled data (no download)")
    p.add_argument("--out", default="cuts-demo", help="output folder (default: cuts-demo)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: a quick CPU-sized run)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", parents=[common], help="train an encoder on images or volumes")
    p.add_argument(
        "inputs",
        nargs="+",
        help="image/volume files or folders (PNG, JPG, NIfTI, NRRD, MHA); with --sequences K, consecutive "
        "groups of K files are one case's sequences",
    )
    p.add_argument(
        "--sequences",
        type=int,
        default=1,
        metavar="K",
        help="co-registered sequences per case (default 1): e.g. 'p1_flair p1_t1c p2_flair p2_t1c "
        "--sequences 2' trains on 2 cases of 2 channels, in that order",
    )
    p.add_argument("--out", required=True, help="MODEL.safetensors (a MODEL.json card is written beside it)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default depends on the device)")
    p.add_argument("--checkpoint", action="store_true", help="save after every epoch (Ctrl-C keeps the last one)")
    _add_objective_arguments(p, default="cuts")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "segment",
        parents=[common],
        help="segment one image or volume (or the co-registered sequences of one case) into a hierarchy",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="input",
        help="image or volume file; several files are co-registered sequences of one case (e.g. FLAIR T1C), "
        "stacked as channels in the order given, on the first one's grid (which the outputs take)",
    )
    p.add_argument("--model", help="trained encoder (.safetensors); without it, train on the input itself")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs when training on the input itself (--method s3net / atlas: iterations, default 50 / 200)",
    )
    _add_objective_arguments(p, default=None)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="cuts",
        help="cuts (default: encoder + condensation hierarchy); per-image single-map methods: s3net "
        "(S3-Net), gmm (CGC's GMM-with-threshold baseline), atlas (CLMorph atlas transfer, NEEDS --atlas)",
    )
    p.add_argument(
        "--atlas",
        default=None,
        help="IMAGE,LABELS: the one labelled reference image that --method atlas warps onto the input",
    )
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("binarize", help="keep the structure under a seed point")
    p.add_argument("hierarchy", help="hierarchy.npz written by 'cuts segment'")
    p.add_argument("--seed", help="voxel index X,Y[,Z] (image x, y, z order)")
    p.add_argument("--seed-ras", help="physical point R,A,S in millimetres, as 3D Slicer shows it")
    p.add_argument(
        "--level",
        default="auto",
        help="auto (default: the level before the region under the seed first grows 2.5-fold), "
        "a level index (0 = finest, -1 = coarsest) or 'persistent'",
    )
    p.add_argument(
        "--whole-class",
        action="store_true",
        help="keep every voxel with the seed's label at that level, not only the connected structure under it",
    )
    p.add_argument(
        "--closer",
        choices=("auto", "always", "never"),
        default="auto",
        help="condense boxes around the seed (needs the input and its encoder): auto (default: keep their "
        "region where the finest region under the seed is too large to be one structure or holds several), "
        "always, never; with --level auto only",
    )
    p.add_argument(
        "--image",
        nargs="+",
        help="the segmented input(s), in the order given to 'cuts segment' (default: the files the hierarchy "
        "records): the click's level follows the image's edges, and a closer look needs them",
    )
    p.add_argument(
        "--model",
        help=f"the encoder that embedded the input (default: {MODEL_OUTPUT} beside the hierarchy)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--out", required=True, help="mask file (.nrrd, .nii.gz, .mha)")
    p.add_argument("--progress", choices=("bar", "lines", "none"), default="bar", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_binarize)
    return parser


def _add_objective_arguments(p: argparse.ArgumentParser, default: Optional[str]) -> None:
    """``--objective`` and ``--clusters``, shared by ``train`` and ``segment``."""
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=default,
        help="encoder objective: cuts (the paper's, default), infomax (boundary-aware information "
        "maximisation), iic (its alpha = 0), cgc (GMM-pseudo-label guided); see learn/peer_objectives.py",
    )
    p.add_argument("--clusters", type=int, default=None, help="cluster-head size K for infomax/iic (default 40)")


def _glue_point_arguments(argv: Sequence[str]) -> list[str]:
    """`--seed-ras -10,-20,5` would read as an option; glue point values to their flag (`--seed-ras=...`)."""
    glued: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("--seed", "--seed-ras") and i + 1 < len(tokens):
            glued.append(f"{token}={tokens[i + 1]}")
            i += 2
            continue
        glued.append(token)
        i += 1
    return glued


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code instead of raising for user-fixable problems.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 bad input, 3 bad model file, 4 not enough memory, 130 cancelled or interrupted
        (SIGINT), 143 terminated (SIGTERM); see `core.exit_codes`.

    Examples
    --------
    >>> main(["segment", "image.png", "--out", "result", "--progress", "none"])  # doctest: +SKIP
    0
    """
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(_glue_point_arguments(argv))
    return run_command("cuts", lambda: args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
