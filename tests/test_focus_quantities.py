"""Faithful-MR1's quantities on the image-token grid (our interpretation, mars/perception/focus.py)."""

from __future__ import annotations

import torch

from mars.perception.focus import anchoring_loss, box_token_mask, causal_map, faithful_reward, focus_in_box


def test_tokens_inside_a_box_are_those_whose_patch_block_overlaps_it():
    # a 112 x 56 image as 8 x 4 patches of 14 px, merged 2 x 2: 4 columns x 2 rows of tokens, 28 px each
    mask = box_token_mask([[0, 0, 50, 20]], (112, 56), (1, 4, 8), merge=2)
    assert mask.view(2, 4).tolist() == [[True, True, False, False], [False, False, False, False]]
    small = box_token_mask([[30, 5, 40, 15]], (112, 56), (1, 4, 8), merge=2)  # smaller than a token, off centre
    assert small.view(2, 4).tolist() == [[False, True, False, False], [False, False, False, False]]
    edge = box_token_mask([[0, 0, 28, 28]], (112, 56), (1, 4, 8), merge=2)  # touching a block is not overlapping
    assert edge.view(2, 4).tolist() == [[True, False, False, False], [False, False, False, False]]
    both = box_token_mask([[0, 0, 50, 20], [60, 30, 112, 56]], (112, 56), (1, 4, 8), merge=2)
    assert both.view(2, 4).tolist() == [[True, True, False, False], [False, False, True, True]]
    assert box_token_mask([[50, 20, 0, 0]], (112, 56), (1, 4, 8)).equal(mask)  # corners in either order
    assert box_token_mask([], (112, 56), (1, 4, 8)).sum() == 0
    assert box_token_mask([[0, 0, 50, 20]], (112, 56), (2, 4, 8)).shape == (16,)  # two frames


def test_uniform_attention_scores_the_regions_share_and_attention_in_the_box_scores_one():
    in_box = torch.tensor([True, False, False, True, False, False, False, False])
    uniform, share = focus_in_box(torch.full((8,), 0.05), in_box)
    assert abs(uniform - 0.25) < 1e-12 and share == 0.25
    assert focus_in_box(in_box.float() * 0.3, in_box)[0] == 1.0
    assert focus_in_box(torch.zeros(8), in_box) == (0.0, 0.25)


def test_the_anchoring_loss_is_lowest_where_the_attention_matches_the_boxes():
    in_box = torch.tensor([True, True, False, False])
    on_target = anchoring_loss(torch.tensor([0.5, 0.5, 0.0, 0.0]), in_box)
    uniform = anchoring_loss(torch.full((4,), 0.25), in_box)
    away = anchoring_loss(torch.tensor([0.01, 0.01, 0.49, 0.49]), in_box)
    assert on_target < uniform < away
    attention = torch.full((4,), 0.25, requires_grad=True)
    anchoring_loss(attention, in_box).backward()
    assert (attention.grad[:2] < 0).all() and (attention.grad[2:] > 0).all()  # pushed toward the boxes
    no_regions = anchoring_loss(attention, torch.zeros(4, dtype=torch.bool))
    assert no_regions.item() == 0.0


def test_the_causal_map_and_the_reward_stay_bounded():
    causal = causal_map(-0.1, torch.tensor([-0.1, -2.1, -1.1, 0.5]))  # masking region 3 makes the answer likelier
    torch.testing.assert_close(causal, torch.tensor([0.0, 2 / 3, 1 / 3, 0.0], dtype=torch.float64))
    assert causal_map(-0.1, torch.tensor([-0.1, 0.2])).sum() == 0  # no region matters
    attention = torch.tensor([0.1, 0.6, 0.2, 0.1])
    assert faithful_reward(1.25, False, attention, causal, 0.5) == 1.25  # wrong answers: the verifiable reward
    reward = faithful_reward(1.25, True, attention, causal, 0.5)
    assert abs(reward - (1.25 + 0.5 * (0.6 * 2 / 3 + 0.2 / 3))) < 1e-6  # float32 attention
    hostile = faithful_reward(1.0, True, torch.full((4,), 1e9), torch.full((4,), 1e9), 0.5)
    assert hostile == 1.5  # the bonus never exceeds the weight
