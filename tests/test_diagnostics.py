import numpy as np
import pytest
from hypothesis import given

from mars import compute_mars_advantage, fusion_diagnostics
from tests.strategies import batches


def test_hand_computed_batch():
    # group a: fusion better than anchors; group b: all equal, anchors worse -> MARS-only signal;
    # group c: no anchors, rewards differ.
    metrics = fusion_diagnostics(
        scores=[1.0, 1.0, 0.5, 0.5, 1.0, 0.0],
        group_ids=["a", "a", "b", "b", "c", "c"],
        anchor_scores=[0.0, 0.5, 0.0, 0.0],
        anchor_group_ids=["a", "a", "b", "b"],
        anchor_sources=["visible", "infrared", "visible", "infrared"],
    )
    assert metrics["mars/multi_source_reward"] == pytest.approx(4 / 6)
    assert metrics["mars/anchor_reward"] == pytest.approx(0.5 / 4)
    assert metrics["mars/anchor_reward/visible"] == pytest.approx(0.0)
    assert metrics["mars/anchor_reward/infrared"] == pytest.approx(0.25)
    # per anchored group: a: 1 - 0.25 = 0.75, b: 0.5 - 0 = 0.5
    assert metrics["mars/information_gain"] == pytest.approx(0.625)
    assert metrics["mars/signal_groups"] == pytest.approx(1.0)
    assert metrics["mars/signal_groups_grpo"] == pytest.approx(1 / 3)
    assert metrics["mars/signal_mars_only"] == pytest.approx(2 / 3)
    assert metrics["mars/signal_grpo_only"] == 0.0
    assert metrics["mars/anchored_groups"] == pytest.approx(2 / 3)
    assert metrics["mars/orphan_anchors"] == 0.0


def test_anchors_centred_on_the_responses_give_no_signal():
    # U = {0.5, 0.5, 1, 0} has spread, but its mean is exactly the responses' reward: every advantage is 0
    metrics = fusion_diagnostics([0.5, 0.5], ["b", "b"], [1.0, 0.0], ["b", "b"], ["visible", "infrared"])
    assert metrics["mars/signal_groups"] == 0.0


def test_reverse_case_lone_response_with_equal_anchor():
    # GRPO gives a lone response its reward as advantage; MARS with an equal anchor gives zero.
    metrics = fusion_diagnostics([1.0], ["a"], [1.0], ["a"], ["depth"])
    assert metrics["mars/signal_grpo_only"] == 1.0
    assert metrics["mars/signal_mars_only"] == 0.0


def test_no_anchors_has_no_anchor_keys():
    metrics = fusion_diagnostics([1.0, 0.0], ["a", "a"])
    assert not any("anchor_reward" in k or "information_gain" in k for k in metrics)
    assert metrics["mars/signal_groups"] == metrics["mars/signal_groups_grpo"] == 1.0
    assert all(np.isfinite(v) for v in metrics.values())


def test_orphan_anchors_are_counted():
    metrics = fusion_diagnostics([1.0], ["a"], [0.0, 1.0], ["a", "gone"], ["x", "y"])
    assert metrics["mars/orphan_anchors"] == 1.0


def test_mismatched_sources_raise():
    with pytest.raises(ValueError, match="anchor_sources"):
        fusion_diagnostics([1.0], ["a"], [0.0], ["a"], ["x", "y"])


@given(batches())
def test_signal_shares_agree_with_the_advantages_themselves(batch):
    metrics = fusion_diagnostics(
        batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids, batch.anchor_sources
    )
    ids = np.array(batch.group_ids)
    mars = compute_mars_advantage(batch.scores, ids, batch.anchor_scores, batch.anchor_group_ids).numpy()
    grpo = compute_mars_advantage(batch.scores, ids).numpy()
    groups = sorted(set(batch.group_ids))
    # a tolerance far below any real advantage but above float noise of a constant group
    has_mars = {g: bool(np.abs(mars[ids == g]).max() > 1e-6) for g in groups}
    has_grpo = {g: bool(np.abs(grpo[ids == g]).max() > 1e-6) for g in groups}
    n = len(groups)
    assert metrics["mars/signal_groups"] == pytest.approx(sum(has_mars.values()) / n)
    assert metrics["mars/signal_groups_grpo"] == pytest.approx(sum(has_grpo.values()) / n)
    assert metrics["mars/signal_mars_only"] == pytest.approx(sum(has_mars[g] and not has_grpo[g] for g in groups) / n)
    assert all(np.isfinite(v) for v in metrics.values())
