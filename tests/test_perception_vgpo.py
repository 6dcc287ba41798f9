"""VGPO's token weights against a plain-loop oracle, and the invariants the method must keep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mars.perception import vgpo_weights, vgpo_weights_reference


def batch(seed: int, rows: int = 12, width: int = 17, groups: int = 3):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, rows)
    mask = torch.as_tensor(np.arange(width)[None, :] < lengths[:, None], dtype=torch.float32)
    similarity = torch.as_tensor(rng.random((rows, width)), dtype=torch.float32) * mask
    group_ids = [f"g{g}" for g in rng.integers(0, groups, rows)]
    return similarity, mask, group_ids


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("beta", "gamma", "kappa"), [(0.3, 0.5, 0.2), (1.0, 1.0, 1.0), (0.0, 0.3, 0.5)])
def test_equals_the_loop_oracle(seed, beta, gamma, kappa):
    similarity, mask, group_ids = batch(seed)
    fast = vgpo_weights(similarity, mask, group_ids, beta, gamma, kappa)
    slow = vgpo_weights_reference(similarity, mask, group_ids, beta, gamma, kappa)
    assert torch.allclose(fast, slow, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_weights_stay_within_their_clamps_and_are_one_outside_the_mask(seed):
    similarity, mask, group_ids = batch(seed, rows=20, groups=4)
    weights = vgpo_weights(similarity, mask, group_ids, beta=5.0)
    inside = weights[mask.bool()]
    assert inside.min() >= 0.9 * 0.1 - 1e-6 and inside.max() <= 2.0 * 2.0 + 1e-6
    assert torch.all(weights[~mask.bool()] == 1.0)


def test_one_groups_signal_never_changes_another_groups_weights():
    similarity, mask, group_ids = batch(3, rows=16, groups=4)
    before = vgpo_weights(similarity, mask, group_ids)
    changed = similarity.clone()
    rows = [i for i, g in enumerate(group_ids) if g == group_ids[0]]
    changed[rows] = torch.rand(len(rows), similarity.shape[1]) * mask[rows]
    after = vgpo_weights(changed, mask, group_ids)
    others = [i for i, g in enumerate(group_ids) if g != group_ids[0]]
    assert torch.equal(before[others], after[others])
    assert not torch.equal(before[rows], after[rows])


def test_weights_do_not_depend_on_row_order():
    similarity, mask, group_ids = batch(5, rows=15)
    order = torch.randperm(15, generator=torch.Generator().manual_seed(0))
    weights = vgpo_weights(similarity, mask, group_ids)
    shuffled = vgpo_weights(similarity[order], mask[order], [group_ids[i] for i in order])
    assert torch.allclose(weights[order], shuffled)


def test_a_flat_signal_without_compensation_gives_weight_one():
    _, mask, group_ids = batch(1)
    flat = torch.full_like(mask, 0.7) * mask
    assert torch.all(vgpo_weights(flat, mask, group_ids, beta=0.0) == 1.0)


def test_the_compensation_raises_the_late_tokens_that_look_most():
    mask = torch.ones(1, 10)
    similarity = torch.tensor([[0.5] * 9 + [0.9]])  # the last token looks at the image the most
    weights = vgpo_weights(similarity, mask, ["g"], beta=0.3, gamma=0.5, kappa=0.2)
    assert weights[0, -1] == weights.max() and weights[0, -1] > 1.0 > weights[0, 0]
