"""The whole job's fraction and time left, from per-stage progress and a `JobPlan`.

Stages report their own fraction ("embed" 0.5); `OverallProgress` maps it into the job's fraction with the
plan's shares and estimates the seconds left: from the plan at first, then from the observed rate (elapsed /
fraction done, smoothed over a few seconds) once a few percent is done, so a machine faster or slower than the
one the plan was measured on is caught within a stage. Displays that want these numbers define
``on_update(ProgressUpdate)`` (`ConsoleProgress`, `LineProgress`); plain callbacks get ``(stage, fraction,
message)`` as before.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

from .job_plan import JobPlan
from .progress import ProgressCallback, ProgressUpdate

#: Stages the caller runs after the pipeline returns; a plan keeps them only when the caller says it runs them.
CALLER_STAGES = ("write",)


class OverallProgress:
    """A `ProgressCallback` that adds the whole job's fraction and time left to every report.

    Parameters
    ----------
    plan : JobPlan, optional
        The job's stages and their estimated seconds; None until a pipeline call sets one (`track_overall`):
        reports then pass through with no overall fraction.
    inner : ProgressCallback
        Where reports go: ``inner.on_update(ProgressUpdate)`` when it has that method, else
        ``inner(stage, fraction, message)``.
    writes_outputs : bool
        The caller writes the output files after the pipeline ("write" stays in the plan).
    settle_fraction : float
        Fraction done after which the observed rate replaces the plan's estimate of the time left.
    smoothing_s : float
        Time constant of the smoothing of the observed total duration.
    clock : callable
        Seconds, monotonic.

    Examples
    --------
    >>> from CUTSSegmentationLib.core.job_plan import JobPlan
    >>> seen = []
    >>> overall = OverallProgress(JobPlan((("embed", 3.0), ("condense", 1.0))), lambda *r: seen.append(r))
    >>> overall("embed", 0.5, "slice 3/6")
    >>> overall.overall
    0.375
    """

    def __init__(
        self,
        plan: Optional[JobPlan],
        inner: ProgressCallback,
        *,
        writes_outputs: bool = False,
        settle_fraction: float = 0.03,
        smoothing_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.writes_outputs = writes_outputs
        self.settle_fraction = settle_fraction
        self.smoothing_s = smoothing_s
        self.clock = clock
        self.plan: Optional[JobPlan] = None
        self.overall = 0.0
        self.eta_s: Optional[float] = None
        self._stage: Optional[str] = None
        self._start = 0.0
        self._last = 0.0
        self._total_s = 0.0
        if plan is not None:
            self.set_plan(plan)

    def set_plan(self, plan: JobPlan) -> None:
        """Follow this plan from now on, unless it is a part of the current plan still ahead (`segment` plans
        the training it runs, and `train` then keeps that plan); any other plan is a new job."""
        if self._plan_ahead(plan):
            return
        self.plan = plan if self.writes_outputs else plan.without(CALLER_STAGES)
        self.overall = 0.0
        self._stage = None
        self._start = self._last = self.clock()
        self._total_s = self.plan.total_s
        self.eta_s = self._total_s

    def _plan_ahead(self, plan: JobPlan) -> bool:
        """True when every stage of `plan` is in the current plan and none of them has started yet."""
        if self.plan is None or self.overall >= 1.0 or not plan.stages:
            return False
        names = self.plan.names
        if not all(name in names for name in plan.names):
            return False
        position = names.index(self._stage) if self._stage is not None else -1
        return names.index(plan.names[0]) > position

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if self.plan is None:
            self._deliver(ProgressUpdate(stage, fraction, message))
            return
        value = self._overall_at(stage, fraction)
        # The shares' float sum may end a hair below 1: the last stage's end is the job's end.
        self.overall = max(self.overall, 1.0 if value > 1.0 - 1e-9 else value)
        self.eta_s = self._estimate_left()
        self._deliver(ProgressUpdate(stage, fraction, message, self.overall, self.eta_s))

    def _overall_at(self, stage: str, fraction: float) -> float:
        """A planned stage maps linearly into its share; another stage ("checkpoint", "done") holds the
        fraction, and completes the current planned stage when it reports 1."""
        assert self.plan is not None
        fraction = min(max(float(fraction), 0.0), 1.0)
        if stage in self.plan:
            self._stage = stage
            return self.plan.start(stage) + self.plan.share(stage) * fraction
        if fraction >= 1.0 and self._stage is not None:
            return self.plan.start(self._stage) + self.plan.share(self._stage)
        return self.overall

    def _estimate_left(self) -> float:
        """Seconds left: the plan's until `settle_fraction` is done, then the smoothed observed rate."""
        if self.overall >= 1.0:
            return 0.0
        now = self.clock()
        elapsed = now - self._start
        if self.overall >= self.settle_fraction and elapsed > 0:
            observed_total = elapsed / self.overall
            weight = 1.0 - math.exp(-(now - self._last) / self.smoothing_s) if self.smoothing_s > 0 else 1.0
            self._total_s += weight * (observed_total - self._total_s)
        self._last = now
        return self._total_s * (1.0 - self.overall)

    def _deliver(self, update: ProgressUpdate) -> None:
        show = getattr(self.inner, "on_update", None)
        if show is not None:
            show(update)
        else:
            self.inner(update.stage, update.fraction, update.message)


def track_overall(progress: ProgressCallback, plan: JobPlan) -> OverallProgress:
    """The caller's callback, following `plan`: given the plan when it already is an `OverallProgress` (the
    command line's, which knows whether outputs are written after), else wrapped in one.

    Examples
    --------
    >>> from CUTSSegmentationLib.core.job_plan import plan_segment
    >>> from CUTSSegmentationLib.core.progress import no_progress
    >>> track_overall(no_progress, plan_segment(10**6)).plan.names
    ('embed', 'condense', 'levels')
    """
    if isinstance(progress, OverallProgress):
        progress.set_plan(plan)
        return progress
    return OverallProgress(plan, progress)
