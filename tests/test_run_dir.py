"""A run directory belongs to one configuration: resume, complete, conflict, start over."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from mars.config.compose import compose_config
from mars.training.run_dir import RunDirConflict, prepare_run_dir, record_result


def cfg_in(run_dir, *overrides):
    return compose_config("embedded", [f"trainer.default_local_dir={run_dir}", *overrides])


def test_new_run_writes_its_config(tmp_path):
    run = prepare_run_dir(cfg_in(tmp_path / "run"), write=lambda s: None)
    assert run.status == "new"
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert saved.trainer.total_training_steps == 10 and saved.mars.variant_mode == "duplicate"


def started_run(run_dir, *overrides):
    """A run folder whose run began training (its first metrics line is written)."""
    prepare_run_dir(cfg_in(run_dir, *overrides), write=lambda s: None)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 0, "val/reward": 0.5}) + "\n")


def test_other_settings_stop_with_the_keys_and_both_ways_out(tmp_path):
    started_run(tmp_path)
    before = (tmp_path / "config.yaml").read_text()
    with pytest.raises(RunDirConflict) as info:
        prepare_run_dir(cfg_in(tmp_path, "preset=dapo", "mars.variant_mode=blank"), write=lambda s: None)
    message = str(info.value)
    assert "mars.variant_mode: 'duplicate' there, 'blank' now" in message
    assert "actor_rollout_ref.actor.clip_ratio_high" in message  # one of DAPO's settings
    assert "trainer.experiment_name" in message and "trainer.resume_mode=disable" in message
    assert (tmp_path / "config.yaml").read_text() == before  # the directory still describes its run


def test_a_run_refused_before_it_began_leaves_nothing_in_the_way(tmp_path):
    """A check that stopped the first command (a missing model, a bad file) wrote config.yaml only: the corrected
    command, with other settings, takes the folder as new."""
    prepare_run_dir(cfg_in(tmp_path, "mars.variant_mode=blank"), write=lambda s: None)
    lines = []
    run = prepare_run_dir(cfg_in(tmp_path), write=lines.append)
    assert run.status == "new" and lines == [f"{tmp_path} held the config of a run that never began training: "
                                             "replaced by this run's"]
    assert OmegaConf.load(tmp_path / "config.yaml").mars.variant_mode == "duplicate"


def test_more_steps_resume_and_update_the_config(tmp_path):
    started_run(tmp_path)
    lines = []
    run = prepare_run_dir(cfg_in(tmp_path, "trainer.total_training_steps=50", "trainer.save_freq=7"), write=lines.append)
    assert run.status == "resume" and set(run.changed) == {"trainer.total_training_steps", "trainer.save_freq"}
    assert "trainer.total_training_steps 10 -> 50" in lines[0]
    assert OmegaConf.load(tmp_path / "config.yaml").trainer.total_training_steps == 50


def test_a_complete_run_is_reported_not_rewritten(tmp_path):
    prepare_run_dir(cfg_in(tmp_path), write=lambda s: None)
    record_result(tmp_path, {"step": 30, "val_before": 0.25, "val_after": 0.75, "model_dir": str(tmp_path / "hf")})
    lines = []
    run = prepare_run_dir(cfg_in(tmp_path), write=lines.append)
    assert run.status == "complete" and run.result["val_after"] == 0.75
    assert "complete run (30 steps)" in lines[0] and "0.250 before training -> 0.750 after" in lines[0]
    # fewer steps asked than were trained: complete too; more: a resume
    assert prepare_run_dir(cfg_in(tmp_path, "trainer.total_training_steps=5"), write=lambda s: None).status == "complete"
    assert prepare_run_dir(cfg_in(tmp_path, "trainer.total_training_steps=31"), write=lambda s: None).status == "resume"


def test_resume_mode_disable_starts_over_and_keeps_foreign_files(tmp_path):
    from mars.training.checkpoint import save_checkpoint

    prepare_run_dir(cfg_in(tmp_path), write=lambda s: None)
    save_checkpoint(tmp_path, 10, {"w": torch.ones(1)}, {"step": 10})
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    (tmp_path / "notes.txt").write_text("mine")
    run = prepare_run_dir(cfg_in(tmp_path, "preset=dapo", "trainer.resume_mode=disable"), write=lambda s: None)
    assert run.status == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mars.lock", "config.yaml", "notes.txt"]
    assert OmegaConf.load(tmp_path / "config.yaml").actor_rollout_ref.actor.clip_ratio_high == 0.28


def test_engine_keys_ignored(tmp_path):
    started_run(tmp_path)
    with pytest.raises(RunDirConflict, match="trainer.n_gpus_per_node"):
        prepare_run_dir(cfg_in(tmp_path, "trainer.n_gpus_per_node=8"), write=lambda s: None)
    run = prepare_run_dir(cfg_in(tmp_path, "trainer.n_gpus_per_node=8"), write=lambda s: None,
                          engine_keys_ignored=("trainer.n_gpus_per_node",))
    assert run.status == "resume"


def test_mars_train_twice_trains_once(tiny_model_dir, ir_data_dir, tmp_path, capsys):
    """The re-run of a finished run prints its result and rewrites nothing; other settings exit 2."""
    from tests.test_local_engine import tiny_cfg
    from mars.train_cli import main
    from mars.engines import run_training

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=1",
                   "mars.sft_warmup.steps=0")
    first = run_training(cfg, write=lambda s: None)
    outputs = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()}
    lines = []
    again = run_training(tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=1",
                                  "mars.sft_warmup.steps=0"), write=lines.append)
    assert again.val_after == first.val_after and again.model_dir == first.model_dir
    assert any("complete run (1 steps)" in line for line in lines)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()} == outputs

    assert main([f"actor_rollout_ref.model.path={tiny_model_dir}", f"data.train_files={ir_data_dir}/train.parquet",
                 f"data.val_files={ir_data_dir}/val.parquet", f"trainer.default_local_dir={tmp_path / 'run'}",
                 "preset=dapo"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "Traceback" not in err


LOCK_HOLDER = """
import sys, time
from mars.config.compose import compose_config
from mars.training.run_dir import prepare_run_dir
prepare_run_dir(compose_config("mars_trainer", [f"trainer.default_local_dir={sys.argv[1]}"]), write=lambda s: None)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_process_on_a_run_folder_stops_at_once_and_a_dead_holders_lock_is_free(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-c", LOCK_HOLDER.replace("time.sleep(600)", ""),
                                 str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "is in use by pid " + str(holder.pid) in second.stderr and "trainer.experiment_name" in second.stderr
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (-9): the operating system dropped its lock, nothing stale is left
    after = subprocess.run([sys.executable, "-c", LOCK_HOLDER.replace("time.sleep(600)", ""), str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=120)
    assert after.returncode == 0 and after.stdout.strip() == "locked"


def test_each_engine_has_its_own_default_run_folder():
    from mars.config.compose import compose_config

    local = compose_config("embedded_interference", [])
    verl = compose_config("embedded_interference", ["trainer.engine=verl"])
    named = compose_config("embedded_interference", ["trainer.engine=verl", "trainer.experiment_name=mine"])
    assert str(local.trainer.default_local_dir).endswith("runs/embedded_interference")
    assert str(verl.trainer.default_local_dir).endswith("runs/embedded_interference_verl")
    assert str(named.trainer.default_local_dir).endswith("runs/mine")  # a name the user gives is kept as it is
