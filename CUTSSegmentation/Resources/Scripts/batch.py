"""Segment one image or volume with CUTS without a GUI and write a Slicer .seg.nrrd.

Runs unchanged in two places:

    Slicer --no-main-window --python-script batch.py --input IN --output OUT.seg.nrrd [options]
    python batch.py --input IN --output OUT.seg.nrrd [options]     # `slicer` from PyPI slicer-core

Both go through a real MRML scene (Slicer's scene, or a new one from slicer-core): the input is loaded as
a volume node, segmented with the engine, the chosen level (or the structure under --seed) is pushed into
a segmentation node by the module's MRML bridge, and the segmentation storage node writes the file. That
is the same path the module panel takes, so a batch result matches what the panel shows.

Exit code 0 on success; on a problem the user can fix (missing or unreadable input, bad option, bad
model file, not enough memory, an output that cannot be written) one line on stderr and a nonzero code
(2 input, 3 model, 4 memory, 130 interrupted, 143 terminated: `CUTSSegmentationLib.core.exit_codes`, shared
with the `cuts` command line).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


def _add_packages_to_path() -> None:
    """Find CUTSSegmentationJobs/-MRML (module folder) and CUTSSegmentationLib (installed beside them, or at
    the repository root in a source checkout) when this file is run by path."""
    here = Path(__file__).resolve()
    module_dir = here.parents[2]  # <module>/Resources/Scripts/batch.py
    for folder in (module_dir, module_dir.parent):
        if (folder / "CUTSSegmentationJobs").is_dir() or (folder / "CUTSSegmentationLib").is_dir():
            if str(folder) not in sys.path:
                sys.path.append(str(folder))


_add_packages_to_path()

from CUTSSegmentationLib.core.exit_codes import EXIT_INPUT, EXIT_OK, run_command  # noqa: E402


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; a batch log wants one clear line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="batch.py",
        description="CUTS unsupervised multigranular segmentation of one image or volume, written as .seg.nrrd.",
    )
    parser.add_argument("--input", required=True, help="image or volume file (NRRD, NIfTI, MHA, PNG, JPG, TIFF, ...)")
    parser.add_argument("--output", required=True, help="output segmentation file, ending in .seg.nrrd")
    parser.add_argument("--model", help="trained encoder (.safetensors); without it an encoder is trained on the input")
    parser.add_argument("--level", default="persistent",
                        help="hierarchy level index (0 = finest, -1 = coarsest) or 'persistent' (default)")
    parser.add_argument("--seed", help="keep only the structure under this voxel index X,Y[,Z]")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs when no --model is given")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--random-seed", type=int, default=0, help="random seed of training and condensation")
    return parser


def _parse_seed(text: Optional[str]) -> Optional[tuple[float, ...]]:
    from CUTSSegmentationLib.core.errors import InputError

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
    from CUTSSegmentationJobs import operations
    from CUTSSegmentationLib.condense.binarize import seed_to_index
    from CUTSSegmentationLib.condense.condensation import CondensationConfig
    from CUTSSegmentationLib.core.errors import InputError
    from CUTSSegmentationLib.core.progress import ConsoleProgress
    from CUTSSegmentationLib.io.staging import check_output_file
    from CUTSSegmentationMRML import export_segmentation

    # Everything that can be checked before the long computation is checked first.
    output = check_output_file(args.output, (".seg.nrrd",), option="--output")
    level = operations.parse_level(args.level)
    max_levels = CondensationConfig().max_levels
    if level != "persistent" and not -max_levels <= level < max_levels:
        raise InputError(f"--level {level} is out of range: a hierarchy keeps at most {max_levels} levels")
    seed = _parse_seed(args.seed)
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {args.epochs}")

    start = time.perf_counter()
    scene = _scene()
    volume_node = operations.read_volume_file(scene, args.input)
    if seed is not None:
        seed_to_index(seed, tuple(reversed(volume_node.GetImageData().GetDimensions())))
    model = operations.load_model_file(args.model) if args.model else None
    hierarchy = operations.segment_volume(
        volume_node, model, device=args.device, epochs=args.epochs, seed=args.random_seed,
        progress=ConsoleProgress(sys.stderr),
    )
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CUTS segmentation")
    if seed is not None:
        label = operations.keep_structure_at_seed(hierarchy, level, seed, segmentation_node, volume_node)
        what = f"structure {label} at seed {args.seed}"
    else:
        operations.push_level(hierarchy, level, segmentation_node, volume_node)
        what = operations.level_description(hierarchy, level)
    export_segmentation(segmentation_node, output)
    print(f"{what}; {time.perf_counter() - start:.1f} s -> {output}", file=sys.stderr)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("batch.py", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
