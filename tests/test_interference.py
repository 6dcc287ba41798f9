"""The warm start's stages, per-view validation metrics, and the interference setting on a warm-started model."""

from __future__ import annotations

import numpy as np
import pytest

from mars.config.compose import ConfigError, compose_config


def cfg_for(tmp_path, model_dir, data_dir, *extra):
    return compose_config("embedded_interference", [
        f"actor_rollout_ref.model.path={model_dir}", f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/val.parquet", f"mars.sft_warmup.cache_dir={tmp_path}/cache",
        f"trainer.default_local_dir={tmp_path}/run", *extra])


def test_stages_show_what_they_say(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.data.samples import training_samples
    from mars.hf.warm_start import sft_target, warm_start_stages

    cfg = cfg_for(tmp_path, tiny_model_dir, ir_data_dir)
    samples = training_samples(cfg)
    fused, infrared = warm_start_stages(cfg, samples)
    assert (fused.view, fused.steps, infrared.view, infrared.steps) == ("fused", 240, "infrared", 120)
    # only the scenes whose visible image answers too, shown as they are
    assert 0 < len(fused.samples) < len(samples)
    assert all(set(s.extra_info["answer_sources"]) == {"visible", "infrared"} for s in fused.samples)
    assert all(s.messages == next(o for o in samples if o.index == s.index).messages for s in fused.samples)
    # every scene, infrared in every image slot (the duplicate variant); the target is the true answer
    assert len(infrared.samples) == len(samples)
    images = [p for m in infrared.samples[0].messages for p in m["content"] if isinstance(m["content"], list)
              and p.get("type") == "image"]
    assert len(images) == 2 and all(p["source"] == "infrared" for p in images)
    originals = {s.index: s for s in samples}
    for sample, target in zip(infrared.samples, infrared.targets):  # the scene's own true answer
        assert target == sft_target(originals[sample.index]) and "<answer>" in target


def test_bad_stages_stop_at_composition(tmp_path, tiny_model_dir, ir_data_dir):
    with pytest.raises(ConfigError, match=r"stages\[1\]\.weight=-3.*\n.*stages\[2\]: needs view"):
        cfg_for(tmp_path, tiny_model_dir, ir_data_dir,
                "mars.sft_warmup.stages=[{view: fused, weight: 2}, {view: infrared, weight: -3}, {weight: 1}]")


def test_steps_are_split_by_weight():
    from mars.hf.warm_start import stage_steps

    assert stage_steps(360, [2, 1]) == [240, 120] and stage_steps(3, [2, 1]) == [2, 1]
    assert sum(stage_steps(7, [1, 1, 1])) == 7 and stage_steps(0, [1, 1]) == [0, 0]


def test_the_default_warm_start_is_one_fused_stage(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.data.samples import training_samples
    from mars.hf.warm_start import warm_start_identity, warm_start_stages

    cfg = compose_config("embedded", [f"actor_rollout_ref.model.path={tiny_model_dir}",
                                      f"data.train_files={ir_data_dir}/train.parquet"])
    samples = training_samples(cfg)
    (stage,) = warm_start_stages(cfg, samples)
    assert stage.view == "fused" and stage.steps == 240 and [s.messages for s in stage.samples] == [
        s.messages for s in samples]
    assert "stages" not in warm_start_identity(cfg, [stage])  # the default's cache key is as before


def test_view_metrics_of_scored_rows():
    from mars.training.interface import RolloutBatch
    from mars.training.validation import view_metrics

    # prompt a: fused wrong, infrared alone right (interference); prompt b: all right
    rows = RolloutBatch(
        group_ids=np.array(["a", "a", "a", "b", "b", "b"], dtype=object),
        is_anchor=np.array([False, True, True, False, True, True]),
        sources=np.array(["", "visible", "infrared", "", "visible", "infrared"], dtype=object),
        texts=[""] * 6, response_lengths=np.ones(6, dtype=np.int64), truncated=np.zeros(6, dtype=bool),
        samples=[None] * 6, payload=None, rewards=np.zeros(6),
        reward_extras={"accuracy": np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])})
    metrics = view_metrics(rows)
    assert metrics["val/view/fused/accuracy"] == 0.5 and metrics["val/view/infrared/accuracy"] == 1.0
    assert metrics["val/view/visible/accuracy"] == 0.5
    assert metrics["val/fusion_gain"] == -0.5 and metrics["val/interference_rate"] == 0.5
    assert metrics["val/synergy_rate"] == 0.0


@pytest.fixture(scope="module")
def presence_data(tmp_path_factory):
    from mars.data.synth.build import synthesize

    out = tmp_path_factory.mktemp("data") / "ir_presence"
    synthesize("ir_presence", str(out), 600, seed=0, val_frac=0.2, test_frac=0.0)
    return out


def test_the_warm_started_policy_interferes(tiny_model_dir, presence_data, tmp_path):
    """The setting's premise, measured: after the staged warm start the fused answers are at least 10 points worse
    than the answers on the infrared image alone, on 120 validation prompts."""
    from mars.data.samples import load_samples
    from mars.engines.local.local_engine import LocalEngine
    from mars.hf.warm_start import warm_started_model
    from mars.training.validation import validate

    cfg = cfg_for(tmp_path, tiny_model_dir, presence_data, "data.max_response_length=40")
    engine = LocalEngine(cfg, 1, warm_started_model(cfg, write=lambda s: None), write=lambda s: None)
    metrics = validate(engine, load_samples(str(presence_data / "val.parquet")), cfg)
    fused, infrared = metrics["val/view/fused/accuracy"], metrics["val/view/infrared/accuracy"]
    assert infrared - fused >= 0.10, metrics
    assert metrics["val/interference_rate"] >= 0.10 and metrics["val/fusion_gain"] <= -0.10
