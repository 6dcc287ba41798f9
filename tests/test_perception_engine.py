"""The perception-aware methods on the local engine's real model: PAPO's term in the update, the perception pass."""

from __future__ import annotations

import torch

from mars.perception.views import AlteredView
from mars.training.interface import PerceptionLoss, PerceptionRequest, PolicyBatch

from tests.test_engine_parity import _rollouts
from tests.test_local_engine import tiny_cfg


def _engines_and_batch(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.engines.local import LocalEngine

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3")
    first, second = LocalEngine(cfg, total_steps=1), LocalEngine(cfg, total_steps=1)
    rows = _rollouts(cfg, first)
    old = first.compute_log_probs(rows, "actor")
    advantages = torch.linspace(-1, 1, len(rows)).unsqueeze(1).expand_as(old).contiguous()
    return first, second, rows, old, advantages


def _parameters(engine):
    return [p.detach().clone() for p in engine.model.parameters()]


def test_papo_with_zero_coefficients_is_the_base_update_and_otherwise_is_not(tiny_model_dir, ir_data_dir, tmp_path):
    base, papo, rows, old, advantages = _engines_and_batch(tiny_model_dir, ir_data_dir, tmp_path)
    view = AlteredView("patches", "patches", ratio=0.6)
    base.update_policy(PolicyBatch(rows, advantages, old, None))
    metrics = papo.update_policy(PolicyBatch(rows, advantages, old, None, PerceptionLoss(view, 0.0, 0.0, 0, 1)))
    assert "perception/kl" in metrics and metrics["perception/kl"] > 0
    for a, b in zip(_parameters(base), _parameters(papo)):
        assert torch.allclose(a, b, atol=1e-7)

    again, other, rows, old, advantages = _engines_and_batch(tiny_model_dir, ir_data_dir, tmp_path)
    again.update_policy(PolicyBatch(rows, advantages, old, None))
    other.update_policy(PolicyBatch(rows, advantages, old, None, PerceptionLoss(view, 0.5, 0.03, 0, 1)))
    assert any(not torch.allclose(a, b, atol=1e-7) for a, b in zip(_parameters(again), _parameters(other)))


def test_the_perception_pass_adds_no_forward_for_the_similarity(tiny_model_dir, ir_data_dir, tmp_path, monkeypatch):
    """VGPO's signal comes from the old-log-prob pass: as many model forwards as the plain pass; each altered view
    costs one more per micro-batch."""
    engine, _, rows, _, _ = _engines_and_batch(tiny_model_dir, ir_data_dir, tmp_path)
    calls = []
    handle = engine.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    engine.compute_log_probs(rows, "actor")
    plain = len(calls)
    calls.clear()
    engine.compute_log_probs_with_signals(rows, PerceptionRequest(similarity=True))
    assert len(calls) == plain
    calls.clear()
    engine.compute_log_probs_with_signals(rows, PerceptionRequest(views=(AlteredView("n", "no_image"),)))
    assert len(calls) == 2 * plain
    handle.remove()
