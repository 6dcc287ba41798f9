"""Parity of the perception pass on the two engines: the same rows give the same similarity, log-probs and
per-token KL (SRPO's no-image view among them), Faithful-MR1's focus attention per region, causal maps and validation
measurement (``focus_in_box``), through the local engine and through the verl engine's code path (the driver's
conversion of verl's DataProto layout, two ranks, verl's monkey-patched Qwen-VL forward with verl's own mRoPE
positions).

What this does not run: FSDP sharding and Ray (``test_verl_cpu_e2e.py`` trains ``perception=vppo`` through them),
bf16 autocast on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mars.perception.views import AlteredView
from mars.training.interface import FocusRequest, PerceptionRequest

from tests.test_engine_parity import _rollouts
from tests.test_local_engine import tiny_cfg

REPO = Path(__file__).resolve().parents[1]


def test_both_engines_give_the_same_perception_signals(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.engines.local import LocalEngine

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir,
                   "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4")
    engine = LocalEngine(cfg, total_steps=1)
    rows = _rollouts(cfg, engine)
    # Faithful-MR1's focus attention and causal maps: a token the responses hold stands for the focus token
    focus_token = engine.tokenizer.convert_ids_to_tokens(int(rows.payload.responses[0][1]))
    request = PerceptionRequest(
        views=(AlteredView("patches", "patches", ratio=0.5), AlteredView("drop_infrared", "blank", source="infrared"),
               AlteredView("no_image", "no_image")),
        similarity=True, seed=3, step=2, focus=FocusRequest(focus_token, -1, 2, (0, 2, 3), attention="response"))
    log_probs, signals = engine.compute_log_probs_with_signals(rows, request)
    assert torch.allclose(log_probs, engine.compute_log_probs(rows, "actor"), atol=1e-6)
    assert set(signals) == {"similarity", "log_probs/patches", "kl/patches", "log_probs/drop_infrared",
                            "kl/drop_infrared", "log_probs/no_image", "kl/no_image", "focus/attention",
                            "focus/causal"}
    assert signals["focus/attention"].shape == (len(rows), 4) and signals["focus/attention"][0].sum() > 0.99
    assert signals["focus/causal"].shape == (3, 4) and signals["focus/causal"].sum() > 0
    mask = engine.response_mask(rows).bool()
    assert (signals["kl/patches"][mask] > 0).any() and (signals["kl/patches"] >= 0).all()
    assert ((signals["similarity"][mask] >= 0) & (signals["similarity"][mask] <= 1)).all()

    from mars.data.samples import load_samples

    val = load_samples(f"{ir_data_dir}/val.parquet")
    focus = engine.focus_metrics(val, focus_token, -1)  # the validation measurement, with the stand-in token
    assert focus["perception/focus_in_box_uniform"] > 0

    rows_file, out_file = tmp_path / "rows.pt", tmp_path / "out.json"
    torch.save({"rows": rows, "request": request, "temperature": engine.temperature,
                "signals": {"log_probs": log_probs, **signals}, "focus": focus, "val": val}, rows_file)
    done = subprocess.run([sys.executable, str(REPO / "tests/perception_parity_job.py"), str(rows_file),
                           str(tiny_model_dir), str(out_file)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out_file.read_text())
    assert result["rows"] == len(rows)
    assert {"focus/attention", "focus/causal", "log_probs/no_image"} <= set(result["diffs"])
    for key, diff in result["diffs"].items():
        assert diff < 1e-4, (key, diff, result["diffs"])
    assert set(result["focus"]) == set(focus) == {"perception/focus_in_box", "perception/focus_in_box_uniform"}
    for key, value in result["focus"].items():  # the focus measurement through the worker's function
        assert value == pytest.approx(focus[key], abs=1e-5), (key, value, focus)


def test_a_papo_update_gives_the_same_numbers_on_both_engines(tiny_model_dir, ir_data_dir, tmp_path):
    """PAPO's term inside verl's actor update (``mars.engines.verl.papo``, run by ``papo_parity_job.py`` through
    verl's ``_update_actor``, MARS's worker and verl's FSDP2 engine, without Ray) equals the local engine's on the
    same rows: the perception KL, the masked entropy, and the gradient norm (with zero advantages, the norm of the
    term's own gradient, through both branches). Three micro-batches of two rows: each row meets its own masked copy."""
    from mars.config.compose import compose_config
    from mars.engines.local import LocalEngine
    from mars.perception.methods import perception_settings
    from mars.training.interface import PerceptionLoss, PolicyBatch

    from tests.test_local_engine import tiny_overrides

    overrides = [*tiny_overrides(tiny_model_dir, ir_data_dir, tmp_path / "warm_start"),
                 f"trainer.default_local_dir={tmp_path / 'run'}", "perception=papo", "perception.kl_coef=0.5", "perception.entropy_coef=0.5",
                 "perception.patch_size=28", "actor_rollout_ref.actor.use_kl_loss=false",
                 "actor_rollout_ref.actor.ppo_mini_batch_size=3", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                 "actor_rollout_ref.actor.optim.lr=0", "data.train_batch_size=3",
                 "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2"]
    cfg = compose_config("embedded", overrides)
    engine = LocalEngine(cfg, total_steps=1)
    rows = _rollouts(cfg, engine)
    rows.rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.0, 1.0]).numpy()
    mask = engine.response_mask(rows)
    old = engine.compute_log_probs(rows, "actor")
    old = old + 0.2 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1)) * mask
    advantages = torch.zeros_like(mask)  # no policy gradient: every gradient below is PAPO's term's
    settings = perception_settings(cfg)
    papo = PerceptionLoss(settings.method_view(), settings.kl_coef, settings.entropy_coef, seed=3, step=2)

    without = engine.update_policy(PolicyBatch(rows, advantages, old, None))
    local = engine.update_policy(PolicyBatch(rows, advantages, old, None, perception_loss=papo))
    assert local["perception/kl"] > 0 and local["perception/entropy_masked"] > 0
    assert without["actor/grad_norm"] == 0 and local["actor/grad_norm"] > 0  # lr = 0: the weights did not move

    saved, out = tmp_path / "papo.pt", tmp_path / "papo.json"
    torch.save({"rows": rows, "old_log_probs": old, "advantages": advantages, "papo": papo,
                "overrides": overrides}, saved)
    done = subprocess.run([sys.executable, str(REPO / "tests/papo_parity_job.py"), str(saved), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "VERL_PLATFORM": "cpu"})
    assert done.returncode == 0, done.stderr[-4000:]
    verl = json.loads(out.read_text())
    for key in ("perception/kl", "perception/entropy_masked", "actor/grad_norm"):
        assert verl[key] == pytest.approx(local[key], rel=1e-4, abs=1e-6), (key, verl[key], local[key])
