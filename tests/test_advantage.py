import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mars import compute_mars_advantage
from mars.advantage.reference import mars_advantage_loop
from mars.advantage.verl_estimator import compute_mars_outcome_advantage
from tests.strategies import DISCRETE_REWARDS, batches

from verl.trainer.ppo import core_algos  # a pinned dependency: its absence must fail, not skip


def verl_grpo(scores, group_ids, norm_by_std=True, eps=1e-6):
    rewards = torch.tensor(scores, dtype=torch.float32).unsqueeze(-1)
    adv, _ = core_algos.compute_grpo_outcome_advantage(
        rewards, torch.ones_like(rewards), np.array(group_ids, dtype=object), eps, norm_by_std
    )
    return adv.squeeze(-1)


def test_worked_example_matches_spec_by_hand():
    # U = {1, 0, 0}: mean 1/3, std (Bessel) = sqrt(1/3)
    adv = compute_mars_advantage([1.0, 0.0], ["p", "p"], [0.0], ["p"], eps=0.0)
    sigma = math.sqrt(1 / 3)
    assert adv.tolist() == pytest.approx([(2 / 3) / sigma, (-1 / 3) / sigma])


def test_equal_rewards_get_signal_from_anchors_in_the_direction_of_the_gain():
    # GRPO sees no signal in a group of identical rewards; MARS pushes it up when fusing beats the anchors ...
    up = compute_mars_advantage([1.0] * 4, ["a"] * 4, [0.0, 0.0], ["a", "a"])
    assert (up > 0).all()
    # ... and down when fusing is worse than looking at one source (interference).
    down = compute_mars_advantage([0.0] * 4, ["a"] * 4, [1.0, 0.5], ["a", "a"])
    assert (down < 0).all()
    assert torch.allclose(verl_grpo([1.0] * 4, ["a"] * 4).double(), torch.zeros(4, dtype=torch.float64))


@given(batches(max_k=0, rewards=DISCRETE_REWARDS), st.booleans(), st.sampled_from([1e-6, 1e-3]))
def test_equals_verl_grpo_without_anchors(batch, norm_by_std, eps):
    # the same float32 rewards for both, as verl's token_level_rewards are (our statistics are then float64)
    rewards = torch.tensor(batch.scores, dtype=torch.float32)
    ours = compute_mars_advantage(rewards, batch.group_ids, norm_by_std=norm_by_std, eps=eps).double()
    theirs = verl_grpo(batch.scores, batch.group_ids, norm_by_std, eps)
    assert torch.allclose(ours, theirs.double(), atol=1e-6, rtol=0)


@given(batches(max_k=0), st.booleans())
def test_equals_verl_grpo_within_its_float32_rounding_for_any_rewards(batch, norm_by_std):
    # verl's grpo computes mean and std in float32: its own rounding error is about 1e-7 * max|r| / std, which
    # exceeds 1e-6 when a group's rewards nearly agree (e.g. 0.75, 0.75, 0.844). Ours is float64.
    rewards = torch.tensor(batch.scores, dtype=torch.float32)
    ours = compute_mars_advantage(rewards, batch.group_ids, norm_by_std=norm_by_std).double()
    theirs = verl_grpo(batch.scores, batch.group_ids, norm_by_std).double()
    ids = np.array(batch.group_ids)
    for gid in set(batch.group_ids):
        r = rewards[torch.as_tensor(ids == gid)].double()
        spread = r.std().item() if len(r) > 1 else 1.0
        scale = (r.abs().max().item() / spread) if (norm_by_std and spread > 0) else 1.0
        rows = torch.as_tensor(ids == gid)
        assert torch.allclose(ours[rows], theirs[rows], atol=1e-6 * (1 + scale), rtol=0)


@given(batches(), st.booleans())
def test_agrees_with_per_group_loop(batch, norm_by_std):
    ours = compute_mars_advantage(
        batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids, norm_by_std=norm_by_std
    )
    loop = mars_advantage_loop(
        batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids, norm_by_std=norm_by_std
    )
    assert ours.tolist() == pytest.approx(loop, abs=1e-9)


@given(batches(), st.randoms(use_true_random=False))
def test_independent_of_row_order(batch, rnd):
    base = compute_mars_advantage(batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids)
    perm = list(range(len(batch.scores)))
    rnd.shuffle(perm)
    a_perm = list(range(len(batch.anchor_scores)))
    rnd.shuffle(a_perm)
    shuffled = compute_mars_advantage(
        [batch.scores[i] for i in perm],
        [batch.group_ids[i] for i in perm],
        [batch.anchor_scores[j] for j in a_perm],
        [batch.anchor_group_ids[j] for j in a_perm],
    )
    assert shuffled.tolist() == pytest.approx([base[i].item() for i in perm], abs=1e-9)  # summation order only


@given(batches(min_g=2, max_k=4))
def test_centred_advantage_decomposes_into_grpo_part_and_information_gain(batch):
    # r_i - mu = (r_i - rbar) + K/(G+K) * (rbar - mbar)   (SPEC §2, norm_by_std off)
    adv = compute_mars_advantage(
        batch.scores, batch.group_ids, batch.anchor_scores, batch.anchor_group_ids, norm_by_std=False
    )
    ids = np.array(batch.group_ids)
    a_ids = np.array(batch.anchor_group_ids)
    scores = np.array(batch.scores)
    a_scores = np.array(batch.anchor_scores)
    for gid in set(batch.group_ids):
        r = scores[ids == gid]
        m = a_scores[a_ids == gid] if len(a_ids) else np.array([])
        g, k = len(r), len(m)
        gain = (r.mean() - m.mean()) if k else 0.0
        expected = (r - r.mean()) + k / (g + k) * gain
        assert adv[torch.as_tensor(ids == gid)].numpy() == pytest.approx(expected, abs=1e-9)


def test_lone_response_conventions():
    eps = 1e-6
    # G = 1 and no anchors: mean 0, std 1, as in verl's grpo
    assert compute_mars_advantage([0.7], ["x"], eps=eps).item() == pytest.approx(0.7 / (1 + eps))
    assert compute_mars_advantage([0.7], ["x"], norm_by_std=False).item() == pytest.approx(0.7)
    # G = 1 with one anchor: ordinary statistics over the two values
    adv = compute_mars_advantage([1.0], ["x"], [0.0], ["x"], eps=0.0).item()
    assert adv == pytest.approx(0.5 / math.sqrt(0.5))


def test_anchors_of_other_prompts_and_orphans_do_not_leak():
    alone = compute_mars_advantage([1.0, 0.0], ["a", "a"])
    with_others = compute_mars_advantage([1.0, 0.0], ["a", "a"], [5.0, -5.0], ["b", "zzz"])
    assert torch.allclose(alone, with_others)


def test_integer_group_ids_and_tensor_dtype_roundtrip():
    scores = torch.tensor([1.0, 0.0, 0.5, 0.5], dtype=torch.float32)
    adv = compute_mars_advantage(scores, np.array([3, 3, 9, 9]), torch.tensor([0.0]), [9])
    assert adv.dtype == torch.float32
    assert adv[2] > 0 and adv[3] > 0  # anchor 0.0 below both rewards of group 9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scores=[1.0, 2.0], group_ids=["a"]), "group_ids"),
        (dict(scores=[1.0], group_ids=["a"], anchor_scores=[1.0, 2.0], anchor_group_ids=["a"]), "anchor"),
        (dict(scores=[float("nan")], group_ids=["a"]), "non-finite"),
        (dict(scores=[1.0], group_ids=["a"], anchor_scores=[0.0], anchor_group_ids=[1]), "same kind"),
        (dict(scores=[[1.0]], group_ids=["a"]), "one-dimensional"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        compute_mars_advantage(**kwargs)


def test_empty_batch():
    assert compute_mars_advantage([], []).numel() == 0


# --- the verl estimator -------------------------------------------------------------------------------------


def test_registered_in_verl_registry():
    assert core_algos.get_adv_estimator_fn("mars") is compute_mars_outcome_advantage


def test_estimator_broadcasts_over_tokens_with_mask_and_reads_the_config():
    from verl.trainer.config import AlgoConfig

    rewards = torch.zeros(4, 5)
    rewards[torch.arange(4), torch.tensor([1, 4, 2, 0])] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    index = np.array(["a", "a", "b", "b"], dtype=object)
    anchors = torch.tensor([0.0, 1.0, 0.0])
    anchor_index = np.array(["a", "b", "b"], dtype=object)

    adv, ret = compute_mars_outcome_advantage(rewards, mask, index, anchor_scores=anchors, anchor_index=anchor_index)
    expected = compute_mars_advantage([1.0, 0.0, 1.0, 1.0], index, anchors, anchor_index)
    assert torch.equal(adv, ret)
    assert torch.allclose(adv, expected.float().unsqueeze(-1) * mask)
    assert (adv[mask == 0] == 0).all()

    dr_grpo = AlgoConfig(norm_adv_by_std_in_grpo=False)
    adv_nostd, _ = compute_mars_outcome_advantage(rewards, mask, index, config=dr_grpo)
    expected_nostd = compute_mars_advantage([1.0, 0.0, 1.0, 1.0], index, norm_by_std=False)
    assert torch.allclose(adv_nostd, expected_nostd.float().unsqueeze(-1) * mask)


def test_estimator_without_anchors_is_verl_grpo_token_for_token():
    torch.manual_seed(0)
    rewards = torch.zeros(12, 7)
    rewards[:, -1] = torch.randint(0, 3, (12,)).float() / 2
    mask = (torch.rand(12, 7) > 0.3).float()
    index = np.array([f"u{i // 4}" for i in range(12)], dtype=object)
    ours, _ = core_algos.get_adv_estimator_fn("mars")(token_level_rewards=rewards, response_mask=mask, index=index)
    theirs, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, index)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_equal_rewards_in_float32_and_float64_give_exactly_zero_advantage():
    # verl's token-level rewards are float32, anchor rewards float64: 0.7 must stay 0.7 across the union
    rewards = torch.zeros(14, 3)
    rewards[:, -1] = 0.7
    index = np.array(["p"] * 14, dtype=object)
    adv, _ = compute_mars_outcome_advantage(rewards, torch.ones(14, 3), index,
                                            anchor_scores=np.array([0.7, 0.7]), anchor_index=np.array(["p", "p"]))
    assert (adv == 0).all()
    core = compute_mars_advantage(torch.full((14,), 0.7), ["p"] * 14, torch.tensor([0.7, 0.7], dtype=torch.float64),
                                  ["p", "p"])
    assert (core == 0).all()


def test_dapo_filter_mode_is_exact_where_verls_np_std_rounds():
    # documented in docs/verl_engine.md: verl's DAPO tests np.std(...) == 0.0, and np.std([0.1] * 3) is 1.4e-17,
    # so verl keeps this group although every advantage is 0; our exact max > min test drops it
    from mars.advantage import filter_groups

    assert np.std([0.1] * 3) != 0.0
    result = filter_groups([0.1] * 3, ["p"] * 3, mode="dapo")
    assert result.num_kept == 0 and len(result.kept_rows) == 0
    assert (compute_mars_advantage([0.1] * 3, ["p"] * 3).abs() < 1e-6).all()


def _python(code: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_core_imports_without_verl_or_ray():
    res = _python("import sys, mars; mars.compute_mars_advantage([1.0], ['a']); print('ray' in sys.modules, 'verl' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_verl_plugin_registers_on_import_of_verl_alone():
    res = _python("from verl.trainer.ppo import core_algos as c; print(c.get_adv_estimator_fn('mars').__module__)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("mars.advantage.verl_estimator")


def test_import_mars_registers_when_verl_plugins_are_disabled():
    code = (
        "from verl.trainer.ppo import core_algos as c; before = 'mars' in c.ADV_ESTIMATOR_REGISTRY; "
        "import mars; print(before, 'mars' in c.ADV_ESTIMATOR_REGISTRY)"
    )
    res = _python(code, VERL_USE_EXTERNAL_PLUGINS="none")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"]
