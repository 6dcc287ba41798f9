"""The local engine and the run loop end to end on the CPU, with the tiny model and synthetic data."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mars.hf.decoding import BanTokens, SampleRows, nucleus_threshold
from mars.config.compose import compose_config
from mars.data.samples import BadDataError, load_samples
from mars.training.interface import RolloutRequest, Sampling
from mars.engines import run_training
from tests.scripts import script_env

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(model_dir, data_dir, warm_start_cache) -> list[str]:
    """Settings that make a real run take seconds: the tiny model and data, 2 prompts x 2 rollouts, 12 new tokens."""
    return [
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/val.parquet",
        f"mars.sft_warmup.cache_dir={warm_start_cache}",
        "data.val_max_samples=4",
        "data.train_batch_size=2",
        "data.max_response_length=12",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "mars.sft_warmup.steps=2",
        "mars.sft_warmup.batch_size=2",
        "mars.log_generations=0",
        "trainer.total_training_steps=3",
        "trainer.test_freq=2",
        "trainer.save_freq=2",
    ]


def tiny_cfg(run_dir, model_dir, data_dir, *overrides):
    return compose_config("embedded", [
        *tiny_overrides(model_dir, data_dir, Path(run_dir).parent / "warm_start"),
        f"trainer.default_local_dir={run_dir}",
        *overrides,
    ])


def quiet(*args, **kwargs):
    pass


def test_logits_processors():
    scores = torch.tensor([[0.1, 2.0, 0.5], [3.0, 1.0, 0.0]])
    torch.manual_seed(0)
    out = SampleRows(torch.tensor([True, False]), 1.0, 1.0)(None, scores.clone())
    assert out[0].tolist() == [float("-inf"), 0.0, float("-inf")]  # the greedy row: its arg-max
    assert (out[1] == 0).sum() == 1 and torch.isinf(out[1]).sum() == 2  # the sampled row: one drawn token
    banned = BanTokens([0, 2])(None, scores.clone())
    assert torch.isinf(banned[:, [0, 2]]).all() and torch.equal(banned[:, 1], scores[:, 1])


def test_the_nucleus_is_hugging_faces_top_p():
    from transformers import TopPLogitsWarper

    torch.manual_seed(1)
    for top_p in (0.1, 0.5, 0.9, 0.99):
        logits = torch.randn(32, 3072) * 3
        logits[:, :5] = float("-inf")  # banned tokens
        kept_hf = torch.isfinite(TopPLogitsWarper(top_p)(None, logits.clone()))
        probs = torch.softmax(logits, -1)
        assert torch.equal(probs >= nucleus_threshold(probs, top_p), kept_hf)


def test_sampled_tokens_follow_temperature_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    torch.manual_seed(0)
    draws = 20000

    def frequencies(temperature, top_p):
        rows = logits.repeat(draws, 1)
        one_hot = SampleRows(torch.zeros(draws, dtype=torch.bool), temperature, top_p)(None, rows)
        return torch.bincount(one_hot.argmax(-1), minlength=4).float() / draws

    torch.testing.assert_close(frequencies(1.0, 1.0), torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015, rtol=0)
    # top_p 0.75: ascending cumulative 0.05, 0.20, 0.50 <= 0.25 removes the two least probable
    torch.testing.assert_close(frequencies(1.0, 0.75), torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.015, rtol=0)
    hot = torch.softmax(logits[0] / 2.0, -1)  # temperature 2 flattens the distribution
    torch.testing.assert_close(frequencies(2.0, 1.0), hot, atol=0.015, rtol=0)


def test_greedy_rows_are_deterministic_inside_a_sampling_call(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.engines.local import LocalEngine

    cfg = tiny_cfg(tmp_path, tiny_model_dir, ir_data_dir)
    engine = LocalEngine(cfg, total_steps=1)
    sample = load_samples(str(ir_data_dir / "train.parquet"))[0]
    requests = [RolloutRequest(sample.messages, "g", Sampling(True, 1.0, 1.0), sample=sample) for _ in range(3)]
    requests.append(RolloutRequest(sample.messages, "g", Sampling(False), True, "visible", sample))
    texts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        rows = engine.generate(requests, 12)
        texts.append(rows.texts)
        vision = set(engine.banned)
        assert not any(int(t) in vision for r in rows.payload.responses for t in r)
    assert texts[0][3] == texts[1][3]  # the greedy anchor row
    assert texts[0][:3] != texts[1][:3]  # the sampled rows follow the seed
    # the greedy row inside a sampling call equals a pure greedy call
    greedy_alone = engine.generate([requests[3]], 12).texts[0]
    assert greedy_alone == texts[0][3]


LENGTH_REWARD = """
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    # varies with the sampled text, so that DAPO's filter finds groups with signal even for an untrained policy
    return {"score": float(len(solution_str) % 3), "format": 0.0}
"""


@pytest.mark.parametrize("preset", ["grpo", "dapo"])
def test_short_runs_of_both_presets(tiny_model_dir, ir_data_dir, tmp_path, preset):
    extra = []
    if preset == "dapo":
        reward_file = tmp_path / "length_reward.py"
        reward_file.write_text(LENGTH_REWARD)
        # bounded, so that a policy without any signal fails the test instead of hanging it
        extra = ["algorithm.filter_groups.max_num_gen_batches=20", f"custom_reward_function.path={reward_file}"]
    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, f"preset={preset}", *extra)
    before = {k: v.clone() for k, v in _weights(tiny_model_dir).items()}
    result = run_training(cfg, write=quiet)
    history = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [0, 1, 2, 3]
    steps = [h for h in history if h["step"] > 0]
    for h in steps:
        assert np.isfinite(h["actor/pg_loss"]) and "mars/anchor_reward/infrared" in h and "mars/information_gain" in h
    assert "val/reward" in history[0] and "val/reward" in history[2] and "val/reward" in history[3]
    for h in (history[0], history[3]):  # validation per view: fused and each source alone
        assert {"val/view/fused/accuracy", "val/view/visible/accuracy", "val/view/infrared/accuracy",
                "val/fusion_gain", "val/interference_rate"} <= set(h)
        assert 0.0 <= h["val/interference_rate"] <= 1.0
    assert result.val_before is not None and result.val_after is not None
    assert result.plot is not None and result.plot.stat().st_size > 0
    after = _weights(result.model_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the policy was trained
    if preset == "dapo":
        assert all("mars/filter/gen_batches" in h for h in steps)


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_interrupted_run_resumes_to_identical_parameters(tiny_model_dir, ir_data_dir, tmp_path, monkeypatch):
    import mars.engines.local.run as loop

    full = run_training(tiny_cfg(tmp_path / "full", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=4"),
                        write=quiet)

    real_step = loop.train_step

    def crash_at_step_3(engine, next_prompts, step, settings):
        if step == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_step(engine, next_prompts, step, settings)

    cfg = tiny_cfg(tmp_path / "resumed", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=4")
    monkeypatch.setattr(loop, "train_step", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, write=quiet)
    assert (tmp_path / "resumed" / "latest_checkpointed_iteration.txt").read_text() == "2"
    monkeypatch.setattr(loop, "train_step", real_step)
    lines = []
    resumed = run_training(cfg, write=lines.append)
    assert any("resumed from" in line and "step 2" in line for line in lines)

    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]  # nothing lost, nothing logged twice


def test_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from mars.training import checkpoint

    checkpoint.save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {"step": 2})

    def broken_save(obj, path):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save_checkpoint(tmp_path, 4, {"w": torch.zeros(2)}, {"step": 4})
    latest = checkpoint.latest_checkpoint(tmp_path)
    assert latest.name == "global_step_2"
    engine_state, trainer_state = checkpoint.load_checkpoint(latest)
    assert trainer_state["step"] == 2 and torch.equal(engine_state["w"], torch.ones(2))
    assert not any(p.name.startswith(".global_step_4") for p in tmp_path.iterdir())


def test_bad_data_stops_the_run_with_the_checkers_message(tiny_model_dir, ir_data_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ir_data_dir, bad)
    frame = pd.read_parquet(bad / "train.parquet")
    rows = frame.to_dict("records")
    rows[3]["images"] = [dict(im, image=str(bad / "images" / "missing.png")) for im in rows[3]["images"]]
    from mars.data.schema import ROW_SCHEMA
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), bad / "train.parquet")
    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, bad)
    with pytest.raises(BadDataError, match=r"train\.parquet row 3.*missing\.png"):
        run_training(cfg, write=quiet)
    assert len(load_samples(str(bad / "train.parquet"), on_bad_row="skip")) == len(rows) - 1


def test_merge_infer_and_evaluate(tiny_model_dir, ir_data_dir, tmp_path):
    """The README's loop after training: merge a checkpoint, answer test questions, score them."""
    result = run_training(tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=1"),
                          write=quiet)
    env = script_env(HF_HUB_OFFLINE="1")
    merged = tmp_path / "merged"
    subprocess.run(["sh", "scripts/merge.sh", str(result.run_dir), str(merged)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(merged)
    trained = _weights(result.model_dir)
    assert all(torch.equal(model.state_dict()[k], trained[k]) for k in trained if k in model.state_dict())

    questions = tmp_path / "questions.json"
    subprocess.run([sys.executable, "-m", "mars.cli", "data", "convert", "to-json", str(ir_data_dir / "test.parquet"),
                    str(questions)], check=True, capture_output=True, env=env)
    # the question asked at inference is the prompt the policy was trained on, instruction included
    asked = [[p for p in q["content"] if p["type"] == "text"] for q in json.loads(questions.read_text())]
    trained = [[p for p in s.messages[0]["content"] if p["type"] == "text"]
               for s in load_samples(str(ir_data_dir / "test.parquet"))]
    assert asked == trained and "<answer>" in asked[0][-1]["text"]
    results = tmp_path / "results.json"
    subprocess.run(["sh", "evaluation/qwen_inference.sh", str(merged), str(questions), str(results),
                    "--max-new-tokens", "16", "--batch-size", "4"], cwd=ROOT, env=env, check=True, capture_output=True)
    answers = json.loads(results.read_text())
    assert len(answers) == len(json.loads(questions.read_text()))
    assert all(isinstance(a["content"][0], str) and a["image_size"] == [140, 112] for a in answers)
    out = subprocess.run(["sh", "evaluation/eval_qwen.sh", str(results), "grounding", "0.5"], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True)
    report = json.loads((tmp_path / "results.report.json").read_text())
    assert report["samples"] == len(answers) and "mean IoU" in out.stdout


def test_lora_run_and_tensorboard_logging(tiny_model_dir, ir_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tb"))
    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "actor_rollout_ref.model.lora_rank=4",
                   "actor_rollout_ref.model.lora_alpha=8", "trainer.total_training_steps=2",
                   "actor_rollout_ref.actor.optim.lr=1e-2", "trainer.logger=[console,tensorboard]")
    result = run_training(cfg, write=quiet)
    base, merged = _weights(tiny_model_dir), _weights(result.model_dir)
    assert base.keys() == merged.keys()  # the adapters are merged into plain weights
    assert any(not torch.equal(base[k], merged[k]) for k in base)
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))


def test_response_log_probs_equal_a_full_forward_per_row(tiny_model_dir, ir_data_dir):
    """Only response positions go through the LM head, in a right-padded batch: the same numbers as one full forward
    per row (answers of different lengths, so padding and the kept positions differ per row)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mars.hf.device import autocast_for
    from mars.hf.log_probs import response_log_probs
    from mars.processing import ImageCache, MultimodalEncoder

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    samples = load_samples(str(ir_data_dir / "train.parquet"))[:4]
    prompts = MultimodalEncoder(processor).encode([s.messages for s in samples], ImageCache(processor.image_processor))
    answers = [torch.tensor(processor.tokenizer("<think>I find people" * (i + 1), add_special_tokens=False)["input_ids"])
               for i in range(4)]
    width = max(len(a) for a in answers)
    cpu = torch.device("cpu")
    with torch.no_grad():
        batched, _ = response_log_probs(model, prompts, answers, np.arange(4), width, cpu, 0, 1.0,
                                        lambda: autocast_for(cpu))
        for b, (p, a) in enumerate(zip(prompts, answers)):
            ids = torch.cat([p.input_ids[0], a]).unsqueeze(0)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=p.pixel_values,
                           image_grid_thw=p.image_grid_thw,
                           mm_token_type_ids=torch.cat([p.mm_token_type_ids[0], torch.zeros_like(a)]).unsqueeze(0)).logits
            start = p.input_ids.shape[1] - 1
            full = torch.log_softmax(logits[0, start : start + len(a)], -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)
            assert torch.allclose(batched[b, : len(a)], full, atol=1e-5)
            assert (batched[b, len(a) :] == 0).all()


def test_the_local_run_ends_when_total_epochs_of_data_are_drawn(tiny_model_dir, ir_data_dir, tmp_path):
    """One rule on both engines (the verl engine's test is in test_verl_engine.py): a run ends at
    trainer.total_training_steps or after trainer.total_epochs passes over the data, whichever comes first."""
    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "data.train_batch_size=8", "trainer.total_epochs=2",
                   "trainer.total_training_steps=50", "trainer.test_freq=-1", "trainer.save_freq=-1",
                   "trainer.val_before_train=false")
    lines = []
    result = run_training(cfg, write=lines.append)
    history = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    per_epoch = len(pd.read_parquet(ir_data_dir / "train.parquet")) // 8
    assert [h["step"] for h in history] == list(range(1, 2 * per_epoch + 1))
    # the epoch of each step's batch, from 0, as verl's training/epoch
    assert [h["training/epoch"] for h in history] == [0.0] * per_epoch + [1.0] * per_epoch
    assert any(f"the run ends after step {2 * per_epoch} of 50" in line for line in lines)
    assert (result.run_dir / f"global_step_{2 * per_epoch}").exists()  # the last trained step is kept
