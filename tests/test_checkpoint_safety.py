"""Crash safety of run folders: manifests and verification of checkpoints, the fallback to the newest one that
verifies, leftovers of interrupted saves, torn metric lines, and a fresh start that does not log step 0 twice."""

from __future__ import annotations

import json

import pytest
import torch

from mars.training.checkpoint import (
    MANIFEST,
    POINTER,
    CheckpointError,
    clean_leftovers,
    find_checkpoint,
    load_checkpoint,
    prepare_resume,
    save_checkpoint,
    verify_checkpoint,
    write_manifest,
)
from mars.training.tracking import parse_metrics, read_history


def two_checkpoints(root):
    for step in (1, 2):
        state = {"model": {"w": torch.arange(4096, dtype=torch.float32) * step}}
        save_checkpoint(root, step, state, {"step": step})
    return root / "global_step_1", root / "global_step_2"


def flip(path, offset=200, count=4096):
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_complete_checkpoint_has_a_manifest_and_verifies(tmp_path):
    first, second = two_checkpoints(tmp_path)
    manifest = json.loads((second / MANIFEST).read_text())["files"]
    assert set(manifest) == {"engine_state.pt", "trainer_state.json"}
    assert verify_checkpoint(second) is None
    assert find_checkpoint(tmp_path) == (second, [])


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.joinpath("engine_state.pt").write_bytes(p.joinpath("engine_state.pt").read_bytes()[:100]), "truncated"),
    (lambda p: flip(p / "engine_state.pt"), "checksum"),
    (lambda p: p.joinpath("trainer_state.json").write_text('{"step": 2'), "truncated"),
    (lambda p: p.joinpath("engine_state.pt").unlink(), "missing"),
])
def test_a_damaged_latest_checkpoint_falls_back_to_the_older_one_and_says_why(tmp_path, damage, reason):
    first, second = two_checkpoints(tmp_path)
    damage(second)
    found, notes = find_checkpoint(tmp_path)
    assert found == first
    assert any("global_step_2 cannot be resumed from" in n and reason in n for n in notes), notes
    assert any("resuming from global_step_1" in n for n in notes)
    engine_state, trainer_state = load_checkpoint(found)
    assert trainer_state["step"] == 1 and torch.equal(engine_state["model"]["w"], torch.arange(4096.0))


@pytest.mark.parametrize("pointer", [None, "garbage\x00", "7"])
def test_a_missing_or_garbled_pointer_never_restarts_from_zero(tmp_path, pointer):
    first, second = two_checkpoints(tmp_path)
    if pointer is None:
        (tmp_path / POINTER).unlink()
    else:
        (tmp_path / POINTER).write_text(pointer)
    found, notes = find_checkpoint(tmp_path)
    assert found == second and notes


def test_no_checkpoint_that_verifies_stops_the_run(tmp_path):
    first, second = two_checkpoints(tmp_path)
    flip(first / "engine_state.pt")
    (second / "trainer_state.json").unlink()
    with pytest.raises(CheckpointError, match="none can be resumed from(.|\n)*resume_mode=disable"):
        find_checkpoint(tmp_path)
    assert find_checkpoint(tmp_path / "empty") == (None, [])


def verl_checkpoint(root, step, manifest=True):
    """verl's layout, written in place as verl writes it (shards under actor/, data.pt), the pointer by verl."""
    folder = root / f"global_step_{step}"
    (folder / "actor" / "huggingface").mkdir(parents=True)
    torch.save({"w": torch.arange(4096.0) * step}, folder / "actor" / "model_world_size_1_rank_0.pt")
    torch.save({"exp_avg": torch.ones(4096) * step}, folder / "actor" / "optim_world_size_1_rank_0.pt")
    (folder / "actor" / "huggingface" / "config.json").write_text("{}")
    torch.save({"position": step}, folder / "data.pt")
    (root / POINTER).write_text(str(step))
    if manifest:
        write_manifest(folder)
    return folder


def test_a_verl_checkpoints_manifest_covers_every_shard_and_damage_falls_back(tmp_path):
    first, second = verl_checkpoint(tmp_path, 1), verl_checkpoint(tmp_path, 2)
    assert set(json.loads((second / MANIFEST).read_text())["files"]) == {
        "actor/model_world_size_1_rank_0.pt", "actor/optim_world_size_1_rank_0.pt", "actor/huggingface/config.json",
        "data.pt"}
    assert prepare_resume(tmp_path) == (second, [])
    flip(second / "actor" / "optim_world_size_1_rank_0.pt")  # a corrupt optimizer state must never load silently
    found, notes = prepare_resume(tmp_path)
    assert found == first
    assert any("global_step_2 cannot be resumed from: actor/optim_world_size_1_rank_0.pt does not match" in n
               for n in notes), notes
    assert (tmp_path / POINTER).read_text() == "1"  # verl's own resume reads the pointer: it now names step 1
    assert notes[-1] == f"{POINTER} now names step 1"


def test_a_verl_save_that_never_finished_is_passed_over(tmp_path):
    first = verl_checkpoint(tmp_path, 1)
    verl_checkpoint(tmp_path, 2, manifest=False)  # killed after verl wrote its pointer, before the manifest
    found, notes = prepare_resume(tmp_path)
    assert found == first and any("no manifest.json: its save did not finish" in n for n in notes), notes
    # an older MARS wrote no manifests at all: its verl checkpoints are resumed, with a note
    (first / MANIFEST).unlink()
    (tmp_path / POINTER).write_text("2")
    found, notes = prepare_resume(tmp_path)
    assert found == tmp_path / "global_step_2" and "resumed without verifying it" in notes[0]


def test_a_verl_checkpoint_whose_shards_verl_removed_is_named_for_what_it_is(tmp_path):
    """verl's max_actor_ckpt_to_keep deletes the actor/ shards of older checkpoints and keeps their data.pt: such a
    folder is passed over in verl's words, not the local engine's ("engine_state.pt missing")."""
    import shutil

    first, second = verl_checkpoint(tmp_path, 1), verl_checkpoint(tmp_path, 2)
    shutil.rmtree(first / "actor")
    (tmp_path / POINTER).write_text("1")
    found, notes = prepare_resume(tmp_path)
    assert found == second
    assert any("global_step_1 cannot be resumed from: no actor/ shards" in n and "max_actor_ckpt_to_keep" in n
               for n in notes), notes
    assert not any("engine_state" in n for n in notes)


def test_a_checkpoint_of_an_older_mars_without_manifest_is_resumed_with_a_note(tmp_path):
    _, second = two_checkpoints(tmp_path)
    (second / MANIFEST).unlink()
    found, notes = find_checkpoint(tmp_path)
    assert found == second and any("no manifest" in n for n in notes)


def test_leftovers_of_interrupted_saves_are_removed(tmp_path):
    first, _ = two_checkpoints(tmp_path)
    (tmp_path / ".global_step_3.abc").mkdir()
    (tmp_path / "global_step_2.old").mkdir()
    (tmp_path / f".{POINTER}.xyz").write_text("3")
    (tmp_path / ".metrics.jsonl.tmp1").write_text("")
    (tmp_path / ".hidden_user_file").write_text("mine")
    removed = clean_leftovers(tmp_path)
    assert sorted(removed) == sorted([".global_step_3.abc", "global_step_2.old", f".{POINTER}.xyz", ".metrics.jsonl.tmp1"])
    assert (tmp_path / ".hidden_user_file").exists() and first.exists()


def test_a_torn_last_metric_line_is_dropped_and_a_bad_middle_line_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "val/reward": 1.2}\n{"step": 1, "a": 1}\n{"step": 2, "a"')
    entries, torn = parse_metrics(path)
    assert [e["step"] for e in entries] == [0, 1] and torn
    assert [e["step"] for e in read_history(tmp_path)] == [0, 1]
    path.write_text('{"step": 0}\n{"ste\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 2"):
        parse_metrics(path)


def test_resume_after_a_torn_line_and_a_corrupt_checkpoint(tiny_model_dir, ir_data_dir, tmp_path):
    """A real local run: 2 steps, then the latest checkpoint corrupted and a torn line appended (what a crash or a
    full disk leaves); the rerun to 3 steps resumes from step 1, says so, and logs every step exactly once."""
    from mars.engines import run_training

    from tests.test_local_engine import tiny_cfg

    def cfg(steps):
        return tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, f"trainer.total_training_steps={steps}",
                        "mars.sft_warmup.steps=0", "trainer.save_freq=1", "trainer.test_freq=1")

    run_training(cfg(2), write=lambda s: None)
    run = tmp_path / "run"
    flip(run / "global_step_2" / "engine_state.pt")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "critic/sc')
    lines = []
    run_training(cfg(3), write=lines.append)
    text = "\n".join(lines)
    assert "global_step_2 cannot be resumed from" in text and "checksum" in text
    assert "resumed from" in text and "global_step_1" in text and "torn last line" in text
    assert [h["step"] for h in read_history(run)] == [0, 1, 2, 3]


def test_a_fresh_start_after_a_run_that_died_before_its_first_checkpoint_logs_step_0_once(
        tiny_model_dir, ir_data_dir, tmp_path):
    from mars.engines import run_training

    from tests.test_local_engine import tiny_cfg

    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=1",
                   "mars.sft_warmup.steps=0")
    run_training(cfg, write=lambda s: None)
    run = tmp_path / "run"
    # what a kill between the first validation and the first checkpoint leaves: config, step 0's line, a temporary
    for leftover in ("global_step_1", "huggingface", "result.json", POINTER):
        path = run / leftover
        if path.is_dir():
            import shutil
            shutil.rmtree(path)
        else:
            path.unlink()
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    (run / ".global_step_1.tmp").mkdir()
    run_training(tiny_cfg(tmp_path / "run", tiny_model_dir, ir_data_dir, "trainer.total_training_steps=1",
                          "mars.sft_warmup.steps=0"), write=lambda s: None)
    assert [h["step"] for h in read_history(run)] == [0, 1]
    assert not (run / ".global_step_1.tmp").exists()


def test_ctrl_c_ends_with_one_line_saying_what_was_kept_and_exit_130(tiny_model_dir, ir_data_dir, tmp_path):
    """A real `mars train` process, interrupted (SIGINT, as Ctrl-C sends) once it has saved a checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.test_local_engine import tiny_overrides

    args = [sys.executable, "-m", "mars.cli", "train", "--config-name", "embedded",
            *tiny_overrides(tiny_model_dir, ir_data_dir, tmp_path / "warm"), f"trainer.default_local_dir={tmp_path / 'run'}",
            "trainer.total_training_steps=200", "trainer.total_epochs=100", "trainer.save_freq=1", "trainer.test_freq=0",
            "mars.sft_warmup.steps=0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out_file, err_file = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_file.open("w") as out, err_file.open("w") as err_out:  # files, not pipes: a full pipe would block it
        # Ctrl-C's default action in the child: a shell that starts the tests in the background (CI scripts, `&`)
        # ignores SIGINT for them, and an ignored SIGINT is inherited (Python then installs no KeyboardInterrupt)
        process = subprocess.Popen(args, stdout=out, stderr=err_out, text=True, env=env,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pointer = tmp_path / "run" / POINTER

    def saved() -> int:  # the pointer names the newest complete checkpoint (older ones may be pruned already)
        text = pointer.read_text().strip() if pointer.exists() else ""
        return int(text) if text.isdigit() else 0

    deadline = time.time() + 300
    while saved() < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted:\n" + out_file.read_text()[-3000:]
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    err = err_file.read_text()
    assert process.returncode == 130, (err[-3000:], out_file.read_text()[-3000:])
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "global_step_" in last and "the same command resumes" in last
    assert "Traceback" not in err


def test_an_interrupted_embedded_build_is_found_and_built_again(tmp_path, monkeypatch):
    """What a kill during the first `mars train` leaves (a 0-byte parquet, a 0-byte config.json) is rebuilt."""
    import pandas as pd

    from mars.config.compose import compose_config
    from mars.training.embedded import COMPLETE, prepare_embedded

    monkeypatch.chdir(tmp_path)
    cfg = compose_config("embedded", ["mars.embedded.num=20"])
    data_dir, model_dir = tmp_path / cfg.mars.embedded.data_dir, tmp_path / cfg.mars.embedded.model_dir
    for folder, name in ((data_dir, "train.parquet"), (model_dir, "config.json")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"")
    lines = []
    prepare_embedded(cfg, write=lines.append)
    assert sum("incomplete build" in line for line in lines) == 2
    assert (data_dir / COMPLETE).exists() and (model_dir / COMPLETE).exists()
    assert len(pd.read_parquet(data_dir / "train.parquet")) > 0 and (model_dir / "config.json").stat().st_size > 0
    lines.clear()
    prepare_embedded(cfg, write=lines.append)  # complete now: nothing is built again
    assert lines == []


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_prompt_too_long_is_refused_before_the_warm_start(tiny_model_dir, ir_data_dir, tmp_path, split):
    from mars.data.samples import BadDataError
    from mars.engines import run_training

    from tests.test_local_engine import tiny_cfg

    data = with_a_long_prompt(ir_data_dir, tmp_path / "data", [split])
    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, data, "mars.sft_warmup.steps=2")
    with pytest.raises(BadDataError, match=f"data.{split}_files: 1 row(.|\n)*mars.on_bad_row=skip"):
        run_training(cfg, write=lambda s: None)
    assert not (tmp_path / "warm_start").exists() or not any((tmp_path / "warm_start").iterdir())


def with_a_long_prompt(source, data, splits):
    """A copy of the parquet files whose first row of each split given has a 100k-character prompt."""
    import shutil

    import pandas as pd

    shutil.copytree(source, data)
    for split in splits:
        frame = pd.read_parquet(data / f"{split}.parquet")
        prompt = [dict(m) for m in frame.at[0, "prompt"]]
        prompt[0]["content"] = prompt[0]["content"] + " very long" * 10_000
        frame.at[0, "prompt"] = prompt
        frame.to_parquet(data / f"{split}.parquet")
    return data


def test_on_bad_row_skip_leaves_prompts_too_long_out_of_the_warm_start_and_the_run(
        tiny_model_dir, ir_data_dir, tmp_path, caplog):
    import pandas as pd

    from mars.engines import run_training

    from tests.test_local_engine import tiny_cfg

    data = with_a_long_prompt(ir_data_dir, tmp_path / "data", ["train", "val"])
    cfg = tiny_cfg(tmp_path / "run", tiny_model_dir, data, "mars.sft_warmup.steps=2", "mars.on_bad_row=skip",
                   "trainer.total_training_steps=1")
    with caplog.at_level("WARNING"):
        run_training(cfg, write=lambda s: None)
    skipped = [r.getMessage() for r in caplog.records if "skipped (mars.on_bad_row=skip)" in r.getMessage()]
    assert any(m.startswith("skipped (mars.on_bad_row=skip) 1 row(s): prompt_too_long") for m in skipped), skipped
    # once per file and per load (warm start, training, validation): one line per cause, never one per row
    assert all("1 row(s): prompt_too_long" in m for m in skipped)
    history = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(history) == 2  # steps 0 and 1: the run went on without the long rows
    assert len(pd.read_parquet(data / "train.parquet")) > 1


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tiny_model_dir, ir_data_dir, tmp_path):
    """A real `mars train` process whose writes fail for want of room at its next checkpoint (RLIMIT_FSIZE below the
    checkpoint's size: writes fail with EFBIG, as on a full disk they fail with ENOSPC, through torch's writer)."""
    import resource
    import subprocess
    import sys

    from tests.test_local_engine import tiny_overrides

    def train(steps, limit=None):
        args = [sys.executable, "-m", "mars.cli", "train", "--config-name", "embedded",
                *tiny_overrides(tiny_model_dir, ir_data_dir, tmp_path / "warm"),
                f"trainer.default_local_dir={tmp_path / 'run'}", f"trainer.total_training_steps={steps}",
                "trainer.save_freq=1", "trainer.test_freq=0", "mars.sft_warmup.steps=0"]

        def cap():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return subprocess.run(args, capture_output=True, text=True, timeout=600, preexec_fn=cap)

    first = train(2)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "run"
    size = (run / "global_step_2" / "engine_state.pt").stat().st_size
    (run / "huggingface").rename(run / "huggingface_first")  # so that a half-written final model would show
    full = train(4, limit=size // 2)
    assert full.returncode == 1, (full.stdout[-2000:], full.stderr[-3000:])
    last = full.stderr.strip().splitlines()[-1]
    assert "no room to write in" in last and str(run) in last and "free" in last and "global_step_2" in last
    assert "Traceback" not in full.stderr
    assert find_checkpoint(run) == (run / "global_step_2", [])  # the last checkpoint is intact and verifies
    assert not any(p.name.startswith((".global_step_", ".huggingface")) for p in run.iterdir())
    assert not (run / "huggingface").exists()


def test_the_line_after_ctrl_c_names_the_kept_checkpoint_or_says_none_verifies(tmp_path):
    """``kept_line``: no checkpoint, a good one, and checkpoints of which none verifies (not "none was saved")."""
    from omegaconf import OmegaConf

    from mars.train_cli import kept_line
    from mars.training.checkpoint import save_checkpoint

    cfg = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path)}})
    assert kept_line(cfg).startswith("No checkpoint was saved yet")
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(4)}, {"step": 1})
    assert kept_line(cfg).startswith(f"Kept: {tmp_path / 'global_step_1'}")
    shard = next(p for p in (tmp_path / "global_step_1").iterdir() if p.name.endswith(".pt"))
    shard.write_bytes(b"damaged" + shard.read_bytes()[7:])
    assert kept_line(cfg) == f"{tmp_path} has checkpoints, but none verifies; the same command says why and what to do."
