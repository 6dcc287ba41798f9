"""The supervised warm start: built once per (model, data, settings, seed), reused, never half-written."""

import json
from pathlib import Path

import pytest
import torch

from mars.hf import warm_start
from mars.config.compose import compose_config
from mars.hf.warm_start import warm_started_model


def cfg_for(tmp_path, model_dir, data_dir, *overrides):
    return compose_config("embedded", [
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_files={data_dir}/train.parquet",
        f"mars.sft_warmup.cache_dir={tmp_path / 'cache'}",
        "mars.sft_warmup.steps=3",
        "mars.sft_warmup.batch_size=2",
        *overrides,
    ])


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def test_no_warm_start_is_the_model_itself(tiny_model_dir, ir_data_dir, tmp_path):
    cfg = cfg_for(tmp_path, tiny_model_dir, ir_data_dir, "mars.sft_warmup.steps=0")
    assert warm_started_model(cfg, write=lambda s: None) == str(tiny_model_dir)
    assert not (tmp_path / "cache").exists()


def test_built_once_and_reused_by_other_experiments(tiny_model_dir, ir_data_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    lines = []
    path = warm_started_model(cfg_for(tmp_path, tiny_model_dir, ir_data_dir), write=lines.append)
    assert Path(path).parent == tmp_path / "cache" and "cached in" in lines[-1]
    AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    base, warm = _weights(tiny_model_dir), _weights(path)
    assert any(not torch.equal(base[k], warm[k]) for k in base)  # it was trained
    summary = json.loads((Path(path) / "warm_start.json").read_text())
    assert len(summary["losses"]) == 3 and summary["identity"]["steps"] == 3
    del model

    def no_training(*args, **kwargs):
        raise AssertionError("the cached warm start was trained again")

    monkeypatch.setattr(warm_start, "_train", no_training)
    # another preset, variant mode and experiment: the same warm start
    other = cfg_for(tmp_path, tiny_model_dir, ir_data_dir, "preset=dapo", "mars.variant_mode=blank",
                    "trainer.experiment_name=other")
    lines = []
    assert warm_started_model(other, write=lines.append) == path and "reusing" in lines[0]
    # what determines it changes the key (and would train: the stub raises)
    for override in ("mars.sft_warmup.lr=1e-4", "mars.sft_warmup.steps=4", "data.seed=1", "data.train_max_samples=10"):
        with pytest.raises(AssertionError, match="trained again"):
            warm_started_model(cfg_for(tmp_path, tiny_model_dir, ir_data_dir, override), write=lambda s: None)


def test_a_crash_while_building_leaves_no_entry(tiny_model_dir, ir_data_dir, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def disk_full(self, directory, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    cfg = cfg_for(tmp_path, tiny_model_dir, ir_data_dir)
    with pytest.raises(OSError, match="disk full"):
        warm_started_model(cfg, write=lambda s: None)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    path = warm_started_model(cfg, write=lambda s: None)
    assert (Path(path) / "warm_start.json").exists()


def test_the_engine_and_its_reference_start_from_the_warm_start(tiny_model_dir, ir_data_dir, tmp_path):
    from mars.engines.local import LocalEngine

    cfg = cfg_for(tmp_path, tiny_model_dir, ir_data_dir, "actor_rollout_ref.actor.use_kl_loss=true")
    path = warm_started_model(cfg, write=lambda s: None)
    engine = LocalEngine(cfg, total_steps=1, model_path=path, write=lambda s: None)
    warm = _weights(path)
    for name, module in (("policy", engine.model), ("reference", engine.ref_model)):
        state = module.state_dict()
        assert all(torch.equal(state[k], warm[k]) for k in warm if k in state), name
