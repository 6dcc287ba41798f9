"""SRPO's role-aware weights (our interpretation, mars/perception/srpo.py): roles from the output format, weights
against a loop oracle, mean 1 per response, 1 for flat signals and for responses without roles, bounded on hostile
input."""

from __future__ import annotations

import pytest
import torch

from mars.perception.srpo import (
    OTHER,
    PERCEPTION,
    REASONING,
    role_spans,
    roles_of_pieces,
    srpo_weights,
    srpo_weights_reference,
    token_roles,
)


def random_case(seed, rows=6, width=12):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(rows, width, dtype=torch.bool)
    for i, length in enumerate(torch.randint(1, width + 1, (rows,), generator=generator).tolist()):
        mask[i, :length] = True
    roles = torch.randint(0, 3, (rows, width), generator=generator)
    roles[0] = OTHER  # a response without roles
    scale = 4.0 if seed % 2 else 0.5
    return (torch.randn(rows, width, generator=generator) * scale, torch.randn(rows, width, generator=generator) * scale,
            roles, mask)


@pytest.mark.parametrize("seed", range(8))
def test_weights_equal_the_loop_oracle_and_average_to_one_per_response(seed):
    perception, reasoning, roles, mask = random_case(seed)
    weights = srpo_weights(perception, reasoning, roles, mask)
    torch.testing.assert_close(weights, srpo_weights_reference(perception, reasoning, roles, mask), atol=1e-5, rtol=1e-5)
    means = (weights * mask).sum(-1) / mask.sum(-1)
    torch.testing.assert_close(means, torch.ones_like(means), atol=1e-5, rtol=0)
    assert (weights[~mask] == 1).all() and (weights[0] == 1).all()  # padding, and the response without roles
    assert (weights > 0).all()


def test_flat_signals_give_weight_one_and_the_clip_bounds_hostile_scores():
    _, _, roles, mask = random_case(1)
    for value in (0.0, -3.0):
        flat = torch.full(mask.shape, value)
        assert torch.equal(srpo_weights(flat, flat, roles, mask), torch.ones(mask.shape))
    hostile = torch.full(mask.shape, 1e30)
    hostile[:, ::2] = -1e30
    weights = srpo_weights(hostile, hostile, roles, mask, clip=5.0)
    assert torch.isfinite(weights).all() and weights.max() <= mask.shape[1] * 1.0  # mean 1: no token above T


def test_a_response_does_not_change_another_responses_weights():
    perception, reasoning, roles, mask = random_case(3)
    before = srpo_weights(perception, reasoning, roles, mask)
    perception[2] += 7.0
    after = srpo_weights(perception, reasoning, roles, mask)
    keep = [i for i in range(mask.shape[0]) if i != 2]
    assert torch.equal(before[keep], after[keep])


def test_roles_come_from_the_perception_and_think_blocks():
    text = "<perception>a person left</perception><think>so yes</think><answer>yes</answer>"
    spans = role_spans(text)
    assert spans is not None and text[slice(*spans[0])] == "a person left" and text[slice(*spans[1])] == "so yes"
    pieces, offsets, position = [], [], 0
    for piece in ("<perception>", "a", " person", " left", "</perception>", "<think>", "so", " yes", "</think>",
                  "<answer>", "yes", "</answer>"):
        offsets.append((position, position + len(piece)))
        position += len(piece)
    assert token_roles(offsets, spans) == [OTHER, PERCEPTION, PERCEPTION, PERCEPTION, OTHER, OTHER, REASONING,
                                           REASONING, OTHER, OTHER, OTHER, OTHER]


@pytest.mark.parametrize("text", [
    "<think>old format</think><answer>yes</answer>",                              # no perception block
    "<perception>a</perception><perception>b</perception><think>c</think>",      # two of them
    "<think>c</think><perception>a</perception>",                                 # perception after the reasoning
    "<perception>never closed <think>c</think>",
    "",
])
def test_a_response_without_one_perception_block_before_its_reasoning_has_no_roles(text):
    assert role_spans(text) is None
    assert token_roles([(0, 1), (1, 2)], role_spans(text)) == [OTHER, OTHER]


def test_a_perception_block_of_100k_characters_is_read():
    """Only str.find and str.count scan the text (linear): no pattern that backtracks on a hostile block."""
    text = "<perception>" + "<" * 100_000 + "</perception><think>" + "x" * 100_000 + "</think>"
    spans = role_spans(text)
    assert spans is not None and spans[0][1] - spans[0][0] == 100_000 and spans[1][1] - spans[1][0] == 100_000


def test_roles_of_tokens_from_their_own_texts():
    """Tokens whose text lies inside a block take its role; a token that straddles a tag, and the tags, take none."""
    pieces = ["<perception>", "A ", "person", "</perception>", "<think>", "so", " yes</", "think>", "<answer>", "Yes",
              "</answer>"]
    assert roles_of_pieces(pieces) == [OTHER, PERCEPTION, PERCEPTION, OTHER, OTHER, REASONING, OTHER, OTHER, OTHER,
                                       OTHER, OTHER]
    assert roles_of_pieces(["<think>", "x", "</think>"]) == [OTHER] * 3  # the old format: no roles
    assert roles_of_pieces([]) == []


def test_srpo_token_weights_from_the_engines_signals():
    """``perception=srpo`` in the step's weights: scores are log-prob differences from the old log-probs; signals
    that do not move (a policy that ignores the picture and its own perception text) give weight 1 exactly."""
    from mars.perception.methods import PerceptionSettings, token_weights

    settings = PerceptionSettings(name="srpo")
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0], [-1.0, -1.0, -1.0, 0.0]])
    roles = torch.tensor([[PERCEPTION, PERCEPTION, REASONING, OTHER], [OTHER, REASONING, REASONING, OTHER]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.float32)
    flat = {"roles": roles, "log_probs/patches": old.clone(), "log_probs/no_image": old.clone()}
    weights, metrics = token_weights(settings, flat, mask, ["g", "g"], old)
    assert torch.equal(weights, torch.ones_like(weights))
    moved = {"roles": roles, "log_probs/patches": old - torch.tensor([[2.0, 0.0, 0.0, 0.0]] * 2),
             "log_probs/no_image": old + torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 2)}
    weights, metrics = token_weights(settings, moved, mask, ["g", "g"], old)
    expected = srpo_weights(torch.tensor([[2.0, 0.0, 0.0, 0.0]] * 2), torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 2), roles, mask)
    assert torch.allclose(weights, expected.float())
    assert weights[0, 0] > weights[0, 1]  # the token the picture decided carries more of the reward
    assert (weights * mask).sum(-1).div(mask.sum(-1)).allclose(torch.ones(2))
    assert metrics["perception/role_share/perception"] == pytest.approx(2 / 7)
    assert metrics["perception/with_roles_share"] == 1.0
