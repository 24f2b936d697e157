"""The job plan: each stage's share of the whole job, known before it runs, in the order the stages run."""

from __future__ import annotations

import pytest

from CUTSSegmentationLib.core.job_plan import STAGE_COSTS, STAGE_ORDER, JobPlan, plan_segment, plan_train


@pytest.mark.parametrize("device_kind", sorted(STAGE_COSTS))
@pytest.mark.parametrize("train_steps", [0, 150])
def test_shares_sum_to_one_in_the_order_the_stages_run(device_kind: str, train_steps: int) -> None:
    plan = plan_segment(2_000_000, image_voxels=8_000_000, train_steps=train_steps, device_kind=device_kind)
    shares = plan.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(share > 0 for share in shares.values())
    assert list(plan.names) == [s for s in STAGE_ORDER if s != "train" or train_steps]
    starts = [plan.start(name) for name in plan.names]
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert starts[-1] + shares[plan.names[-1]] == pytest.approx(1.0)


def test_shares_follow_the_work() -> None:
    small, large = plan_segment(200_000, train_steps=150), plan_segment(9_000_000, train_steps=150)
    # Training costs the same whatever the volume; the voxel-bound stages take more of a larger one.
    assert large.share("train") < small.share("train")
    assert large.share("condense") > small.share("condense")
    # A step of 16 crops of 128 px costs four times one of 64 px.
    assert plan_train(10, 128).total_s == pytest.approx(4 * plan_train(10, 64).total_s)
    # An accelerator runs the same job faster.
    assert plan_segment(2_000_000, train_steps=150, device_kind="accelerator").total_s < large.total_s


def test_without_keeps_the_other_stages_seconds() -> None:
    plan = plan_segment(1_000_000)
    less = plan.without(["write"])
    assert less.names == ("embed", "condense", "levels")
    assert less.total_s == pytest.approx(plan.total_s - dict(plan.stages)["write"])
    assert sum(less.shares().values()) == pytest.approx(1.0)
    with pytest.raises(KeyError):
        less.start("write")
    with pytest.raises(ValueError):
        plan_segment(1000, device_kind="tpu")


def test_a_plan_of_zero_seconds_still_has_shares() -> None:
    assert JobPlan((("a", 0.0), ("b", 0.0))).shares() == {"a": 0.5, "b": 0.5}
