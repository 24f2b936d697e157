"""The whole job's fraction and time left, on real `segment` runs and on the command line's lines."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from CUTSSegmentationLib.cli import main
from CUTSSegmentationLib.core.job_plan import JobPlan, plan_segment
from CUTSSegmentationLib.core.overall_progress import OverallProgress
from CUTSSegmentationLib.core.progress import (
    PROGRESS_LINE_PREFIX,
    ConsoleProgress,
    ProgressUpdate,
    parse_progress_line,
)
from CUTSSegmentationLib.io.reading import read_image
from CUTSSegmentationLib.pipeline import segment

SPINE_T2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "volumes" / "spine" / "t2.nii.gz"


class Recorder:
    """A display that keeps every report."""

    def __init__(self) -> None:
        self.updates: list[ProgressUpdate] = []

    def on_update(self, update: ProgressUpdate) -> None:
        self.updates.append(update)

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        raise AssertionError("OverallProgress must report through on_update")


@pytest.fixture(scope="module")
def spine_slab(tmp_path_factory) -> Path:
    """16 axial slices of the spine T2 (60 x 55 x 16): one training step per epoch, seconds in all."""
    image = sitk.ReadImage(str(SPINE_T2))
    path = tmp_path_factory.mktemp("spine") / "t2_slab.nii.gz"
    sitk.WriteImage(image[:, :, 18:34], str(path))
    return path


def _planned_total(image) -> float:
    """The plan `segment` follows for this image on the CPU with two epochs (one step each)."""
    return plan_segment(image.n_pixels, train_steps=2, crop_size=min(image.array.shape[1:3])).without(["write"]).total_s


def _first_index(stages: list[str], name: str) -> int:
    return stages.index(name)


def test_segment_reports_a_monotone_whole_job_fraction_and_a_shrinking_time_left(spine_slab: Path) -> None:
    image = read_image(spine_slab)
    recorder = Recorder()
    start = time.perf_counter()
    hierarchy = segment(image, device="cpu", train_epochs=2, progress=recorder)
    wall_s = time.perf_counter() - start
    assert hierarchy.n_levels >= 1
    updates = recorder.updates
    overall = [u.overall for u in updates]
    assert all(value is not None for value in overall)
    assert overall == sorted(overall), "the whole job's fraction went back"
    assert overall[0] < 0.05 and overall[-1] == 1.0
    stages = [u.stage for u in updates]
    order = [_first_index(stages, name) for name in ("train", "embed", "condense", "levels", "done")]
    assert order == sorted(order)
    assert "write" not in stages  # a library call writes nothing: the plan has no "write" stage
    # Each planned stage starts where the previous one ended.
    first = {name: updates[_first_index(stages, name)].overall for name in ("embed", "condense", "levels")}
    assert 0 < first["embed"] < first["condense"] < first["levels"] < 1
    # The time left starts as the plan's total, may grow while the observed rate corrects it (a loaded machine),
    # and shrinks to 0: at the levels, a few percent of the job are left.
    eta = [u.eta_s for u in updates]
    assert eta[0] == pytest.approx(_planned_total(image))
    assert eta[-1] == 0.0
    levels = _first_index(stages, "levels")
    assert eta[levels] < 0.25 * max(eta) and eta[levels] < 0.25 * wall_s


def test_command_line_lines_carry_the_whole_job_through_writing(spine_slab: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "result"
    assert main(["segment", str(spine_slab), "--out", str(out), "--epochs", "1", "--progress", "lines"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(PROGRESS_LINE_PREFIX)]
    parsed = [parse_progress_line(line) for line in lines]
    assert all(p is not None and p.overall is not None and p.eta_s is not None for p in parsed)
    overall = [p.overall for p in parsed]
    assert overall == sorted(overall) and overall[-1] == 1.0
    stages = [p.stage for p in parsed]
    assert stages.index("train") < stages.index("embed") < stages.index("condense") < stages.index("write")
    # "done" is the end of the pipeline, not of the job: the files are still to be written.
    assert parsed[stages.index("done")].overall < 1.0
    assert parsed[-1].stage == "write" and parsed[-1].eta_s == 0
    # A parser that predates the new fields still reads stage and fraction, the rest lands in the message.
    stage, fraction, message = lines[-1].split(" ", 3)[1:]
    assert (stage, float(fraction)) == ("write", 1.0) and message.startswith("overall=1.0000 eta=0 ")


def test_the_estimate_follows_the_observed_rate() -> None:
    """A machine twice as slow as the plan says: the time left moves from the plan's to the observed one."""
    now = [0.0]
    plan = JobPlan((("embed", 50.0), ("condense", 50.0)))
    recorder = Recorder()
    overall = OverallProgress(plan, recorder, clock=lambda: now[0], smoothing_s=5.0)
    overall("embed", 0.0)
    assert recorder.updates[-1].eta_s == pytest.approx(100.0)
    for second in range(1, 161):
        now[0] = float(second)
        overall("embed" if second <= 100 else "condense", (second if second <= 100 else second - 100) / 100)
    # 160 s for 80 % of the job: 200 s in all, 40 s left (the plan alone would say 20 s).
    assert recorder.updates[-1].overall == pytest.approx(0.8)
    assert recorder.updates[-1].eta_s == pytest.approx(40.0, rel=0.05)


def test_unplanned_stages_hold_the_fraction_and_complete_the_current_stage() -> None:
    recorder = Recorder()
    overall = OverallProgress(JobPlan((("train", 1.0), ("embed", 1.0))), recorder)
    overall("train", 0.5)
    overall("checkpoint", 0.5, "saving epoch 1")
    assert recorder.updates[-1].overall == 0.25
    overall("checkpoint", 1.0, "saving epoch 2")
    assert recorder.updates[-1].overall == 0.5
    overall("train", 0.9)  # late report of a finished stage: the fraction does not go back
    assert recorder.updates[-1].overall == 0.5


def test_without_a_plan_reports_pass_through_to_plain_callbacks() -> None:
    seen: list[tuple] = []
    overall = OverallProgress(None, lambda *report: seen.append(report))
    overall("s3net", 0.5, "iteration 5/10")
    assert seen == [("s3net", 0.5, "iteration 5/10")]


def test_console_bar_on_a_log_file_prints_tenths_and_time_left() -> None:
    stream = io.StringIO()
    bar = ConsoleProgress(stream, min_interval=0.0)
    for i in range(101):
        bar.on_update(ProgressUpdate("embed", i / 100, f"slice {i}/100", overall=i / 100, eta_s=(100 - i) * 3.0))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert 10 <= len(lines) <= 12  # the stage's start, every tenth, its end: no line per report
    assert lines[0].startswith("embed      [---") and lines[0].endswith("  0% slice 0/100, about 5 min left")
    assert lines[-1].endswith("[" + "#" * 30 + "] 100% slice 100/100")


def test_console_bar_on_a_terminal_redraws_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ConsoleProgress(stream, min_interval=0.0)
    bar.on_update(ProgressUpdate("train", 0.5, "epoch 1/2 loss 0.1234", overall=0.2, eta_s=600))
    bar.on_update(ProgressUpdate("embed", 0.5, "slice 3/6", overall=0.6, eta_s=30))
    bar.on_update(ProgressUpdate("write", 1.0, "levels.png", overall=1.0, eta_s=0))
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended once the job is done
    frames = text.split("\r")[1:]
    assert "about 10 min left" in frames[0] and "less than a minute left" in frames[1]
    # A shorter frame is padded over the longer one before it.
    assert len(frames[1]) >= len(frames[0].rstrip())
    assert [frame.split()[0] for frame in frames] == ["train", "embed", "write"]


def test_the_last_stage_ends_the_job_exactly() -> None:
    """Shares whose float sum ends below 1 still give 100 % and no time left at the end."""
    plan = JobPlan((("train", 0.1), ("embed", 0.2), ("condense", 0.7), ("levels", 0.05), ("write", 0.37)))
    assert sum(plan.shares().values()) < 1.0  # these shares do not add up exactly in floating point
    recorder = Recorder()
    overall = OverallProgress(plan, recorder, writes_outputs=True)
    for stage in plan.names:
        overall(stage, 1.0)
    assert recorder.updates[-1].overall == 1.0 and recorder.updates[-1].eta_s == 0.0


def test_a_plan_inside_the_current_one_is_kept_and_another_starts_a_new_job() -> None:
    """`segment` plans its own training (train keeps that plan); the next call (the demo's second input,
    or a job after one whose files were written without progress) starts again at 0."""
    recorder = Recorder()
    overall = OverallProgress(None, recorder, writes_outputs=True)
    overall.set_plan(plan_segment(100_000, train_steps=10))
    overall.set_plan(JobPlan((("train", 5.0),)))  # the training `segment` runs
    assert overall.plan.names == ("train", "embed", "condense", "levels", "write")
    for stage in ("train", "embed", "condense", "levels"):
        overall(stage, 1.0)
    assert 0.9 < overall.overall < 1.0  # the files were not written through this callback
    overall.set_plan(JobPlan((("train", 5.0),)))
    assert overall.plan.names == ("train",) and overall.overall == 0.0
    overall("train", 0.5)
    assert recorder.updates[-1].overall == 0.5
    overall.set_plan(plan_segment(100_000))  # another job's plan (not a part of this one ahead): a new job
    assert overall.plan.names == ("embed", "condense", "levels", "write") and overall.overall == 0.0


def test_console_bar_on_a_log_file_starts_again_for_the_next_job() -> None:
    stream = io.StringIO()
    bar = ConsoleProgress(stream, min_interval=0.0)
    for _job in range(2):
        for i in range(21):
            bar.on_update(ProgressUpdate("condense", i / 20, "", overall=i / 20, eta_s=20.0 - i))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 * 11  # each job: its start, every tenth (the last one its end)
    assert [line.split("%")[0][-3:].strip() for line in lines[11:]] == [str(10 * k) for k in range(11)]
