import numpy as np
import pytest
from hypothesis import given, strategies as st

from mars import filter_groups
from tests.strategies import batches


def test_dapo_mode_reproduces_plain_dapo():
    res = filter_groups(
        metric=[1, 1, 0, 1, 0, 0, 0.5],
        group_ids=["a", "a", "b", "b", "c", "c", "d"],
        anchor_metric=[0.0, 1.0],
        anchor_group_ids=["a", "c"],
        mode="dapo",
    )
    # a: all equal (dropped despite its anchor), b: varied, c: all equal, d: a lone response (kept, as verl)
    assert res.kept_group_ids.tolist() == ["b", "d"]
    assert res.kept_rows.tolist() == [2, 3, 6]
    assert res.kept_anchor_rows.tolist() == []
    assert (res.num_groups, res.num_kept, res.num_dropped, res.num_rescued_by_anchors) == (4, 2, 2, 0)


def test_mars_mode_rescues_groups_whose_anchors_differ():
    res = filter_groups(
        metric=[1, 1, 0, 1, 0, 0, 0.5],
        group_ids=["a", "a", "b", "b", "c", "c", "d"],
        anchor_metric=[0.0, 0.0, 1.0],
        anchor_group_ids=["a", "c", "d"],
    )
    # a rescued (anchor 0 vs rewards 1); c dropped (anchor equals the rewards); d: lone response, anchor differs
    assert res.kept_group_ids.tolist() == ["a", "b", "d"]
    assert res.kept_rows.tolist() == [0, 1, 2, 3, 6]
    assert res.kept_anchor_rows.tolist() == [0, 2]
    assert res.num_rescued_by_anchors == 1
    assert res.metrics()["mars/filter/dropped_groups"] == 1.0


def test_lone_response_whose_anchor_equals_it_is_dropped_in_mars_mode():
    res = filter_groups([1.0], ["a"], [1.0], ["a"])
    assert res.num_kept == 0 and res.kept_rows.size == 0


def test_unknown_mode_and_mismatched_lengths():
    with pytest.raises(ValueError, match="mode"):
        filter_groups([1.0], ["a"], mode="grpo")
    with pytest.raises(ValueError, match="lengths"):
        filter_groups([1.0, 2.0], ["a"])


@given(batches(), st.sampled_from(["mars", "dapo"]))
def test_kept_groups_are_exactly_those_whose_statistics_are_not_degenerate(batch, mode):
    # SPEC §2: keep a group when std over U > 0 (mars) or over the responses (dapo); lone responses stay (verl)
    res = filter_groups(batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids, mode=mode)
    ids, scores = np.array(batch.group_ids), np.array(batch.scores)
    a_ids, a_scores = np.array(batch.anchor_group_ids), np.array(batch.anchor_scores)
    for gid in sorted(set(batch.group_ids)):
        union = list(scores[ids == gid]) + (list(a_scores[a_ids == gid]) if mode == "mars" else [])
        expected = len(union) == 1 or len(set(union)) > 1  # std > 0 exactly when the values are not all equal
        assert (gid in res.kept_group_ids) == expected, gid
    # rows stay attached to their group, in their original order
    assert set(ids[res.kept_rows]) == set(res.kept_group_ids)
    assert list(res.kept_rows) == sorted(res.kept_rows)
    a_ids = np.array(batch.anchor_group_ids)
    assert set(a_ids[res.kept_anchor_rows]) <= set(res.kept_group_ids)
    assert len(res.kept_anchor_rows) == sum(g in set(res.kept_group_ids) for g in batch.anchor_group_ids)


@given(batches())
def test_mars_mode_keeps_a_superset_of_dapo_except_lone_responses(batch):
    mars = set(filter_groups(batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids).kept_group_ids)
    dapo = filter_groups(batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids, mode="dapo")
    sizes = {g: batch.group_ids.count(g) for g in set(batch.group_ids)}
    assert {g for g in dapo.kept_group_ids if sizes[g] > 1} <= mars
