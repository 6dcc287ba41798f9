"""Parity of the two engines on the same rollouts and rewards: the same advantages reach both updates, and verl's
actor loss (``verl.workers.utils.losses.ppo_loss``, what verl's FSDP workers minimise, on verl's own no-padding
layout made by ``left_right_2_no_padding``) equals the local engine's policy loss on the same log-probs.

The rollouts are real: the tiny Qwen2.5-VL answers synthetic visible+infrared prompts through the local engine;
their rewards and anchor rewards are fixed numbers, so the advantage is known independently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mars.advantage.reference import mars_advantage_loop
from mars.training.interface import PolicyBatch, RolloutRequest, Sampling

from tests.test_local_engine import tiny_cfg


def _rollouts(cfg, engine):
    from mars.data.samples import load_samples

    samples = load_samples(cfg.data.val_files, "error")[:3]
    sampling = Sampling(do_sample=True, temperature=1.0, top_p=1.0)
    requests = [RolloutRequest(s.messages, f"g{i}", sampling, sample=s) for i, s in enumerate(samples) for _ in range(2)]
    torch.manual_seed(0)
    return engine.generate(requests, 10)


def _verl_update_data(cfg, engine, rows, old_log_probs, advantages):
    """The rows as the verl engine hands them to ``_update_actor``: a left/right padded DataProto (prompts,
    responses, masks, mRoPE position ids) with old log-probs and advantages, turned into verl's no-padding
    TensorDict by verl's own conversion."""
    from verl import DataProto
    from verl.workers.utils.padding import left_right_2_no_padding

    prompts = [p.input_ids[0] for p in rows.payload.prompts]
    responses = rows.payload.responses
    width_p, width_r = max(len(p) for p in prompts), old_log_probs.shape[1]
    n = len(prompts)
    prompt_ids = torch.full((n, width_p), engine.pad_id, dtype=torch.long)
    response_ids = torch.full((n, width_r), engine.pad_id, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_r), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        prompt_ids[i, width_p - len(p):] = p
        response_ids[i, : len(r)] = r
        attention[i, width_p - len(p): width_p + len(r)] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0).unsqueeze(1).expand(n, 4, -1).contiguous()
    data = DataProto.from_dict(tensors={
        "prompts": prompt_ids, "responses": response_ids, "input_ids": torch.cat([prompt_ids, response_ids], 1),
        "attention_mask": attention, "position_ids": positions, "response_mask": engine.response_mask(rows),
        "old_log_probs": old_log_probs.float(), "advantages": advantages.float(),
    })
    return left_right_2_no_padding(data.to_tensordict())


def _flat_log_probs(td, per_row: torch.Tensor) -> torch.Tensor:
    """A model output in verl's no-padding layout: at sequence position t, the log-prob of token t+1."""
    width_p = td["prompts"].shape[1]
    prompt_lens = td["attention_mask"][:, :width_p].sum(-1)
    response_lens = td["attention_mask"][:, width_p:].sum(-1)
    out = []
    for i, (lp, lr) in enumerate(zip(prompt_lens.tolist(), response_lens.tolist())):
        row = torch.zeros(lp + lr)
        row[lp - 1 : lp - 1 + lr] = per_row[i, :lr]
        out.append(row)
    return torch.nested.as_nested_tensor(out, layout=torch.jagged)


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("micro", [6, 2])  # one micro-batch, or three whose losses add up to the mini-batch's
def test_same_rollouts_give_the_same_advantages_and_policy_loss(tiny_model_dir, ir_data_dir, tmp_path,
                                                                loss_agg_mode, micro):
    from verl.utils import tensordict_utils as tu
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.losses import ppo_loss

    from mars.engines.local import LocalEngine
    from mars.training.interface import RolloutBatch
    from mars.training.settings import StepSettings
    from mars.training.step import compute_advantages

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, f"actor_rollout_ref.actor.loss_agg_mode={loss_agg_mode}",
                   "actor_rollout_ref.actor.use_kl_loss=false", f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
                   "actor_rollout_ref.actor.ppo_mini_batch_size=3", "actor_rollout_ref.actor.optim.lr=0")
    engine = LocalEngine(cfg, 1)
    rows = _rollouts(cfg, engine)
    rows.rewards = np.array([1.0, 0.0, 0.5, 0.5, 0.0, 0.0])
    anchor_rewards, anchor_groups = np.array([0.0, 1.0, 1.0, 0.0, 1.0]), np.array(["g0", "g0", "g1", "g1", "g2"])

    # the advantage: the step's phase 5 (used by both engines) against the plain loop of SPEC §2
    mask = engine.response_mask(rows)
    anchors = RolloutBatch(group_ids=anchor_groups.astype(object), is_anchor=np.ones(5, bool),
                           sources=np.array(["visible", "infrared"] * 2 + ["visible"], dtype=object), texts=[""] * 5,
                           response_lengths=np.ones(5, np.int64), truncated=np.zeros(5, bool), samples=[None] * 5,
                           payload=None)
    anchors.rewards = anchor_rewards
    advantages = compute_advantages(rows, anchors, mask, StepSettings.from_config(cfg))
    expected = mars_advantage_loop(rows.rewards, rows.group_ids, anchor_rewards, anchor_groups)
    torch.testing.assert_close(advantages[:, 0].double(), torch.as_tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)

    current = engine.compute_log_probs(rows)
    old = current + 0.3 * torch.randn(current.shape, generator=torch.Generator().manual_seed(1)) * mask  # ratios != 1
    local = engine.update_policy(PolicyBatch(rows, advantages=advantages, old_log_probs=old, ref_log_probs=None))["actor/pg_loss"]

    td = _verl_update_data(cfg, engine, rows, old, advantages)
    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=float(mask.sum()), global_batch_size=len(rows),
                         max_response_len=mask.shape[1])
    actor_config = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    loss, _ = ppo_loss(actor_config, {"log_probs": _flat_log_probs(td, current)}, td)
    assert float(loss) == pytest.approx(local, rel=1e-5, abs=1e-6)

