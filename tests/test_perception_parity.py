"""Parity of the perception pass on the two engines: the same rows give the same similarity, log-probs and
per-token KL through the local engine and through the verl engine's code path (the driver's conversion of verl's
DataProto layout, two ranks, verl's monkey-patched Qwen-VL forward with verl's own mRoPE positions).

What this does not run: FSDP sharding and Ray (``test_verl_cpu_e2e.py`` trains ``perception=vppo`` through them),
bf16 autocast on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from mars.perception.views import AlteredView
from mars.training.interface import PerceptionRequest

from tests.test_engine_parity import _rollouts
from tests.test_local_engine import tiny_cfg

REPO = Path(__file__).resolve().parents[1]


def test_both_engines_give_the_same_perception_signals(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.engines.local import LocalEngine

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir,
                   "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4")
    engine = LocalEngine(cfg, total_steps=1)
    rows = _rollouts(cfg, engine)
    request = PerceptionRequest(
        views=(AlteredView("patches", "patches", ratio=0.5), AlteredView("drop_infrared", "blank", source="infrared")),
        similarity=True, seed=3, step=2)
    log_probs, signals = engine.compute_log_probs_with_signals(rows, request)
    assert torch.allclose(log_probs, engine.compute_log_probs(rows, "actor"), atol=1e-6)
    assert set(signals) == {"similarity", "log_probs/patches", "kl/patches", "log_probs/drop_infrared",
                            "kl/drop_infrared"}
    mask = engine.response_mask(rows).bool()
    assert (signals["kl/patches"][mask] > 0).any() and (signals["kl/patches"] >= 0).all()
    assert ((signals["similarity"][mask] >= 0) & (signals["similarity"][mask] <= 1)).all()

    rows_file, out_file = tmp_path / "rows.pt", tmp_path / "out.json"
    torch.save({"rows": rows, "request": request, "temperature": engine.temperature, "signals": {"log_probs": log_probs, **signals}}, rows_file)
    done = subprocess.run([sys.executable, str(REPO / "tests/perception_parity_job.py"), str(rows_file),
                           str(tiny_model_dir), str(out_file)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out_file.read_text())
    assert result["rows"] == len(rows)
    for key, diff in result["diffs"].items():
        assert diff < 1e-4, (key, diff, result["diffs"])
