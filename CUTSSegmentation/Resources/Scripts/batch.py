"""Segment one image or volume (or the co-registered sequences of one case) with CUTS without a GUI and write a
Slicer .seg.nrrd.

Runs unchanged in two places:

    Slicer --no-main-window --python-script batch.py --input IN --output OUT.seg.nrrd [options]
    python batch.py --input IN --output OUT.seg.nrrd [options]     # `slicer` from PyPI slicer-core
    python batch.py --input flair.nii.gz --input t1c.nii.gz --output OUT.seg.nrrd   # two sequences, one case

Both go through a real MRML scene (Slicer's scene, or a new one from slicer-core): the input is loaded as
a volume node, segmented with the engine, the chosen level (or the structure under --seed) is pushed into
a segmentation node by the module's MRML bridge, and the segmentation storage node writes the file. Several
--input files are one case's co-registered sequences, stacked as channels in the order given; they must share
the first one's voxel grid, which the output takes (checked before the long computation). That
is the same path the module panel takes, so a batch result matches what the panel shows. With
--keep-seed, each structure under a seed is appended as a named, tagged segment, as "Add to segmentation"
does (where the finest region under a seed is too large to be one structure, as in the soft tissue of a thorax
CT, boxes around the seed are condensed and the structure they agree on is kept: the engine's closer look); an
--output that exists is read first and its segments are written back unchanged.

Exit code 0 on success; on a problem the user can fix (missing or unreadable input, bad option, bad
model file, not enough memory, an output that cannot be written: all checked before the long computation where
they can be) one line on stderr and a nonzero code (2 input, 3 model, 4 memory, 130 interrupted, 143 terminated:
`CUTSSegmentationLib.core.exit_codes`, shared with the `cuts` command line); any other failure (a missing package,
a bug) prints its traceback and exits with 1. The script always ends in sys.exit: Slicer exits by itself after a
--python-script only with --testing or -c, so an exception that escaped would leave a windowless Slicer running.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path


def _add_packages_to_path() -> None:
    """Find CUTSSegmentationJobs/-MRML (module folder) and CUTSSegmentationLib (installed beside them, or at
    the repository root in a source checkout) when this file is run by path."""
    here = Path(__file__).resolve()
    module_dir = here.parents[2]  # <module>/Resources/Scripts/batch.py
    for folder in (module_dir, module_dir.parent):
        has_packages = (folder / "CUTSSegmentationJobs").is_dir() or (folder / "CUTSSegmentationLib").is_dir()
        if has_packages and str(folder) not in sys.path:
            sys.path.append(str(folder))


_add_packages_to_path()

#: A failure that is not the user's to fix (the engine's codes for the others: `core.exit_codes`).
EXIT_FAILURE = 1
#: Bad options, before the engine can be imported (the same code as the engine's EXIT_INPUT).
EXIT_BAD_OPTION = 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; a batch log wants one clear line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_OPTION)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="batch.py",
        description="CUTS unsupervised multigranular segmentation of one image or volume, written as .seg.nrrd.",
    )
    parser.add_argument(
        "--input",
        required=True,
        action="append",
        help="image or volume file (NRRD, NIfTI, MHA, PNG, JPG, TIFF, ...); repeat it for the other co-registered "
        "sequences of the same case (channels in the order given; the output takes the first one's grid)",
    )
    parser.add_argument("--output", required=True, help="output segmentation file, ending in .seg.nrrd")
    parser.add_argument(
        "--model",
        help="trained encoder (.safetensors); without it an encoder is trained on the input",
    )
    parser.add_argument(
        "--level",
        default=None,
        help="hierarchy level index (0 = finest, -1 = coarsest) or 'persistent' (default; with "
        "--keep-seed the level of each structure is chosen automatically)",
    )
    parser.add_argument("--seed", help="keep only the structure under this voxel index X,Y[,Z]")
    parser.add_argument(
        "--keep-seed",
        action="append",
        default=[],
        metavar="X,Y[,Z]",
        help="add the structure under this voxel index as a new segment (repeatable); "
        "an existing --output keeps its segments and gets the new ones",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs when no --model is given",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument(
        "--random-seed",
        type=int,
        default=0,
        help="random seed of training and condensation",
    )
    return parser


def _parse_seed(text: str | None) -> tuple[float, ...] | None:
    from CUTSSegmentationJobs.engine import InputError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--seed must be voxel indices X,Y[,Z], got '{text}'") from None
    if len(values) not in (2, 3):
        raise InputError(f"--seed needs 2 or 3 numbers X,Y[,Z], got '{text}'")
    return values if len(values) == 3 else values + (0.0,)


def _scene():
    """Slicer's own scene when run inside the application, else a new scene of slicer-core."""
    import slicer

    scene = getattr(slicer, "mrmlScene", None)
    return scene if scene is not None else slicer.vtkMRMLScene()


def run(args: argparse.Namespace) -> int:
    from CUTSSegmentationJobs.engine import (
        EXIT_OK,
        ConsoleProgress,
        InputError,
        check_output_file,
        max_kept_levels,
        seed_to_index,
    )
    from CUTSSegmentationMRML import (
        add_clicked_structure,
        add_structure,
        ensure_segmentation_converters,
        export_segmentation,
        keep_structure_at_seed,
        level_description,
        parse_level,
        push_level,
    )
    from CUTSSegmentationMRML.bridge import read_segmentation_file
    from CUTSSegmentationMRML.in_process import load_model_file, segment_volume_with_encoder, structure_at_click
    from CUTSSegmentationMRML.sequences import check_sequence_volumes
    from CUTSSegmentationMRML.volume_files import read_volume_file

    # Everything that can be checked before the long computation is checked first.
    output = check_output_file(args.output, (".seg.nrrd",), option="--output")
    level = parse_level(args.level)
    most = max_kept_levels()
    if level != "persistent" and not -most <= level < most:
        raise InputError(f"--level {level} is out of range: a hierarchy keeps at most {most} levels")
    seed = _parse_seed(args.seed)
    keep_seeds = [_parse_seed(text) for text in args.keep_seed]
    if keep_seeds and seed is not None:
        raise InputError("give either --seed (keep one structure) or --keep-seed (add structures), not both")
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {args.epochs}")

    start = time.perf_counter()
    scene = _scene()
    volume_nodes = [read_volume_file(scene, path) for path in args.input]
    check_sequence_volumes(volume_nodes)
    volume_node = volume_nodes[0]
    shape_zyx = tuple(reversed(volume_node.GetImageData().GetDimensions()))
    for point in ([seed] if seed is not None else []) + keep_seeds:
        seed_to_index(point, shape_zyx)
    existing = None
    if keep_seeds and output.exists():
        ensure_segmentation_converters(scene)
        existing = read_segmentation_file(scene, output)
    model = load_model_file(args.model) if args.model else None
    hierarchy, encoder = segment_volume_with_encoder(
        volume_node,
        model,
        device=args.device,
        epochs=args.epochs,
        seed=args.random_seed,
        progress=ConsoleProgress(sys.stderr),
        extra_volumes=volume_nodes[1:],
    )
    if keep_seeds:
        ensure_segmentation_converters(scene)
        segmentation_node = (
            existing
            if existing is not None
            else scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS segmentation")
        )
        kept_level = None if args.level is None else level
        added = []
        for keep_seed in keep_seeds:
            if kept_level is None:  # the structure's own level, or what boxes around the seed agree on
                structure = structure_at_click(hierarchy, keep_seed, volume_nodes, encoder, device=args.device)
                added.append(add_clicked_structure(hierarchy, keep_seed, structure, segmentation_node, volume_node))
            else:
                added.append(add_structure(hierarchy, keep_seed, segmentation_node, volume_node, level=kept_level))
        what = "added " + ", ".join(f"'{kept.name}'" for kept in added)
    elif seed is not None:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS segmentation")
        label = keep_structure_at_seed(hierarchy, level, seed, segmentation_node, volume_node)
        what = f"structure {label} at seed {args.seed}"
    else:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS segmentation")
        push_level(hierarchy, level, segmentation_node, volume_node)
        what = level_description(hierarchy, level)
    export_segmentation(segmentation_node, output)
    print(f"{what}; {time.perf_counter() - start:.1f} s -> {output}", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the batch segmentation; returns the exit code (never raises, except SystemExit for bad options)."""
    args = build_parser().parse_args(argv)
    try:
        from CUTSSegmentationJobs.engine import run_command
    except Exception as exc:
        return _unexpected(exc)
    try:
        return run_command("batch.py", lambda: run(args))
    except Exception as exc:
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    """A failure that is not the user's to fix: the traceback for a report, then one line and exit code 1."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"batch.py: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_FAILURE


def exit_with_status(argv: Sequence[str] | None = None) -> None:
    """main() and then always sys.exit, which is what ends Slicer when it runs this file as --python-script."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help and option errors
        code = exc.code if isinstance(exc.code, int) else EXIT_BAD_OPTION
    except BaseException as exc:
        code = _unexpected(exc)
    sys.exit(code)


if __name__ == "__main__":
    exit_with_status()
