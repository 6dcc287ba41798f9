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


def test_the_grid_regions_partition_each_images_tokens_the_same_way_in_every_image():
    from mars.perception.focus import grid_regions

    regions = grid_regions([(1, 8, 12), (1, 8, 12)], merge=2, cells=2)  # two aligned images of 4 x 6 tokens
    assert regions.shape == (4, 48)
    assert regions.sum(dim=0).eq(1).all()  # every token in exactly one region
    first, second = regions[:, :24], regions[:, 24:]
    assert first.equal(second)  # cell r is the same place in both sources
    assert first[0].view(4, 6).tolist() == [[True] * 3 + [False] * 3] * 2 + [[False] * 6] * 2  # top-left quarter
    assert first[3].view(4, 6)[2:, 3:].all() and first[3].sum() == 6
    tiny = grid_regions([(1, 2, 4)], merge=2, cells=3)  # 1 x 2 tokens under a 3 x 3 grid: empty cells
    assert tiny.shape == (9, 2) and tiny.sum(dim=0).eq(1).all() and (tiny.sum(dim=1) == 0).sum() == 7


def test_region_attention_is_each_regions_share_of_the_image_attention():
    from mars.perception.focus import region_attention

    regions = torch.tensor([[True, True, False, False], [False, False, True, True]])
    shares = region_attention(torch.tensor([0.1, 0.3, 0.05, 0.05]), regions)
    torch.testing.assert_close(shares, torch.tensor([0.8, 0.2], dtype=torch.float64))
    assert region_attention(torch.zeros(4), regions).tolist() == [0.0, 0.0]  # no focus token: no share


def test_the_answers_tokens_are_those_of_the_last_answer_block():
    from mars.perception.focus import answer_tokens

    pieces = ["<think>", "a", "</think>", "<ans", "wer>", "Y", "es", "</answer>", "!"]
    assert answer_tokens(pieces) == [False, False, False, False, False, True, True, False, False]
    straddling = ["<answ", "er>Y", "es</", "answer>"]  # tokens holding both tag and answer text count
    assert answer_tokens(straddling) == [False, True, True, False]
    assert answer_tokens(["no", " tags"]) == [True, True]  # no answer block: the whole response
    assert answer_tokens(["<answer>", "</answer>"]) == [True, True]  # an empty answer: the whole response
    two = ["<answer>", "A", "</answer>", "<answer>", "B", "</answer>"]
    assert answer_tokens(two) == [False, False, False, False, True, False]
    hostile = ["<answer>"] * 50_000 + ["x"]  # unclosed tags: linear, the whole response
    assert all(answer_tokens(hostile))


def test_correct_answers_and_the_rows_whose_causal_map_is_computed():
    import numpy as np

    from mars.perception.focus import answer_correct, causal_rows

    extras = {"accuracy": np.array([1.0, 0.0, 1.0, 0.0]), "iou": np.array([0.0, 0.7, 0.0, 0.2])}
    assert answer_correct(np.zeros(4), extras).tolist() == [True, True, True, False]
    assert answer_correct(np.array([0.0, 0.5, -1.0]), {}).tolist() == [False, True, False]  # a custom reward
    assert causal_rows(["a", "a", "b", "b", "c"], np.array([False, True, True, True, False])) == [1, 2]


def test_faithful_rewards_add_a_bounded_bonus_to_correct_answers_only():
    import numpy as np

    from mars.perception.focus import faithful_rewards

    rewards = np.array([1.5, 0.5, 1.5, 1.5])
    correct = np.array([True, False, True, True])
    attention = torch.tensor([[0.9, 0.1], [1.0, 0.0], [0.0, 0.0], [float("nan"), 0.5]], dtype=torch.float64)
    maps = {"g": torch.tensor([1.0, 0.0], dtype=torch.float64)}
    out, metrics = faithful_rewards(rewards, correct, ["g", "g", "g", "g"], attention, maps, weight=0.5)
    assert out.tolist() == [1.5 + 0.5 * 0.9, 0.5, 1.5, 1.5]  # wrong, no focus token, NaN attention: no bonus
    assert rewards.tolist() == [1.5, 0.5, 1.5, 1.5]  # the verifiable rewards are not changed in place
    assert metrics["perception/faithful/with_focus_share"] == 0.5  # a NaN row counts as none
    assert abs(metrics["perception/faithful/bonus_spread"] - np.std([0.9, 0.0, 0.0])) < 1e-12  # units of the weight
    no_map, _ = faithful_rewards(rewards, correct, ["h"] * 4, attention, maps, weight=0.5)
    assert no_map.tolist() == rewards.tolist()  # a group without a map: no bonus
    rng = np.random.default_rng(0)
    for _ in range(50):  # whatever the inputs, within [r, r + weight]
        attention = torch.from_numpy(rng.normal(0, 1e6, size=(4, 9)))
        maps = {"g": torch.from_numpy(rng.normal(0, 1e6, size=9))}
        out, _ = faithful_rewards(rewards, correct, ["g"] * 4, attention, maps, weight=0.5)
        assert (out >= rewards).all() and (out <= rewards + 0.5).all()


def test_the_closing_line_says_where_the_focus_token_looked_and_what_the_bonus_did():
    from mars.training.summary import focus_line

    history = [{"step": 0, "perception/focus_in_box": 0.7, "perception/focus_in_box_uniform": 0.29},
               {"step": 1, "perception/faithful/bonus": 0.2, "perception/faithful/bonus_spread": 0.0},
               {"step": 2, "perception/faithful/bonus": 0.4, "perception/faithful/bonus_spread": 0.0,
                "perception/focus_in_box": 0.75, "perception/focus_in_box_uniform": 0.29}]
    line = focus_line(history)
    assert line.startswith("focus token: attention inside the boxes 0.70 -> 0.75 (uniform 0.29)")
    assert "bonus of correct answers 0.300" in line and "cannot tell a group's correct answers apart" in line
    history[1]["perception/faithful/bonus_spread"] = 0.05
    assert "cannot tell" not in focus_line(history)
    assert focus_line([{"step": 1, "critic/score/mean": 1.0}]) is None  # no Faithful-MR1: no line
