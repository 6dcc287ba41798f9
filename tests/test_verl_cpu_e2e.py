"""The verl engine for real on the CPU: ``mars train trainer.engine=verl`` end to end, as a user runs it.

Nothing is faked: Ray starts (logical GPUs), verl's FSDP2 actor and reference workers train the tiny Qwen2.5-VL on
the CPU platform, verl's ``RLHFDataset`` and agent loop process the images with the processor and ``qwen_vl_utils``,
the ``hf`` rollout server generates rollouts and greedy anchors in one request and receives the actor's weights
through verl's checkpoint engine every step, verl's reward-loop workers score, verl saves FSDP shards and
``data.pt``. Then a resume, ``scripts/merge.sh`` (verl's model merger), inference and evaluation, a DAPO run, and an
interrupted run that must leave no Ray process behind.

A short embedded default (2 steps, 4 prompts x 2 rollouts, 24 new tokens, 3 warm-start steps): about 3 minutes
on 2 cores. The full default's timings are in the README.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.scripts import script_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT_ENV = script_env()

SHORT = [
    "trainer.engine=verl",
    "mars.embedded.num=40",
    "mars.sft_warmup.steps=3",
    "data.train_batch_size=4",
    "data.max_response_length=24",
    "actor_rollout_ref.rollout.n=2",
    "actor_rollout_ref.actor.ppo_mini_batch_size=4",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
    "trainer.test_freq=2",
    "trainer.save_freq=1",
    "data.val_max_samples=4",
]


def ray_processes(settle: float = 60.0) -> list[str]:
    """Ray's own live processes on this machine (raylet, GCS, workers), by command line, once they are gone or
    ``settle`` seconds have passed (after ``ray.shutdown`` the workers notice the stopped raylet and exit within
    seconds). A ``<defunct>`` entry has exited already: only its exit status waits for the container's PID 1 to
    collect it, which a sandbox without an init process may never do."""
    deadline = time.time() + settle
    while True:
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
        left = [line.strip() for line in out.splitlines()
                if any(k in line for k in ("raylet", "gcs_server", "ray::", "dashboard/agent.py"))
                and "<defunct>" not in line]
        if not left or time.time() > deadline:
            return left
        time.sleep(1.0)


def mars_train(workdir: Path, *overrides: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mars.cli", "train", *SHORT, *overrides], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def verl_run(tmp_path_factory):
    """Two GRPO+MARS steps, then a resume to step 3 (module-scoped: the tests below read what they did)."""
    assert not ray_processes(settle=0), "a Ray cluster is already running here: the leak checks would be void"
    workdir = tmp_path_factory.mktemp("verl_e2e")
    first = mars_train(workdir, "trainer.total_training_steps=2", "trainer.experiment_name=e2e")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-6000:]
    after_first = ray_processes()
    run_dir = workdir / "outputs/embedded/runs/e2e"
    first_metrics = metrics(run_dir)
    resumed = mars_train(workdir, "trainer.total_training_steps=3", "trainer.experiment_name=e2e")
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-6000:]
    return {"workdir": workdir, "run_dir": run_dir, "first": first, "resumed": resumed,
            "first_metrics": first_metrics, "ray_after_first": after_first}


def test_the_run_went_through_ray_and_verls_workers(verl_run):
    log = verl_run["first"].stdout + verl_run["first"].stderr
    assert "verl engine on the CPU" in log and "rollout hf" in log
    assert "Started a local Ray instance" in log
    for actor in ("MarsTaskRunner", "WorkerDict", "HFRolloutServer", "AgentLoopWorker"):
        assert f"({actor} pid=" in log, f"no output of verl's {actor} actor"
    assert "ray://hf_server_0" in log  # verl's agent loop was handed the hf rollout server
    assert "engine is not available" not in log and "is deprecated" not in log  # verl's notices, silenced
    # the rollout server got the actor's weights after every update (verl's naive checkpoint engine)
    for step in (0, 1, 2):
        assert f"actor weights of step {step} loaded" in log
    # every step's line once, the last one before the run's closing lines, and no "shutting down Ray" above it
    out = verl_run["first"].stdout
    assert "shutting down Ray" not in out
    assert [out.count(f"\nstep {step}: ") for step in (0, 1, 2)] == [1, 1, 1], out[-3000:]
    assert out.find("\nstep 1: reward") < out.find("\nstep 2: reward") < out.find("validation accuracy per view")


def test_the_run_folder_is_the_local_engines(verl_run):
    run_dir, history = verl_run["run_dir"], verl_run["first_metrics"]
    assert [h["step"] for h in history] == [0, 1, 2]
    assert "val/reward" in history[0] and "val/reward" in history[2]
    for h in (history[0], history[2]):  # validation per view, the local engine's keys
        assert {"val/view/fused/accuracy", "val/view/visible/accuracy", "val/view/infrared/accuracy",
                "val/fusion_gain", "val/interference_rate"} <= set(h)
    for h in history[1:]:
        for key in ("mars/anchor_reward", "mars/information_gain", "mars/signal_mars_only", "mars/anchored_groups",
                    "actor/pg_loss", "critic/score/mean", "timing_s/gen"):
            assert key in h, key
        assert h["mars/anchored_groups"] == 1.0  # every group had its two anchors (visible, infrared)
        assert {"mars/anchor_reward/visible", "mars/anchor_reward/infrared"} <= set(h)
    assert (run_dir / "training.png").stat().st_size > 10_000
    assert (run_dir / "config.yaml").exists()
    for step in (1, 2):
        folder = run_dir / f"global_step_{step}"
        assert (folder / "data.pt").exists()
        assert (folder / "actor" / "model_world_size_1_rank_0.pt").exists()
        assert (folder / "actor" / "optim_world_size_1_rank_0.pt").exists()


def test_ray_is_gone_after_the_run(verl_run):
    assert verl_run["ray_after_first"] == []
    assert ray_processes() == []


def test_a_rerun_with_more_steps_resumes(verl_run):
    log = verl_run["resumed"].stdout + verl_run["resumed"].stderr
    assert "trainer.total_training_steps 2 -> 3" in log
    assert "Training from scratch" not in log
    history = metrics(verl_run["run_dir"])
    assert [h["step"] for h in history] == [0, 1, 2, 3]  # steps 0-2 kept once, step 3 added
    assert history[:3] == verl_run["first_metrics"]
    assert (verl_run["run_dir"] / "global_step_3" / "actor" / "model_world_size_1_rank_0.pt").exists()
    assert "actor weights of step 2 loaded" in log  # the resumed weights reached the rollout server


def test_merge_infer_and_evaluate_the_fsdp_checkpoint(verl_run, tmp_path):
    from transformers import AutoModelForImageTextToText

    checkpoint = verl_run["run_dir"] / "global_step_3"
    merged = tmp_path / "merged"
    # the run folder, as for a local-engine run: its latest checkpoint that verifies is merged
    done = subprocess.run(["sh", str(REPO / "scripts/merge.sh"), str(verl_run["run_dir"]), str(merged)], cwd=REPO,
                          env=SCRIPT_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"--local_dir {checkpoint / 'actor'} " in done.stdout
    model = AutoModelForImageTextToText.from_pretrained(merged)
    shard = torch.load(checkpoint / "actor" / "model_world_size_1_rank_0.pt", weights_only=False)
    merged_state = model.state_dict()
    compared = 0
    for name, value in shard.items():
        tensor = value.full_tensor() if hasattr(value, "full_tensor") else value
        if name in merged_state:  # verl's merger writes the dtype of the checkpoint's config (bf16): exactly rounded
            merged_tensor = merged_state[name]
            torch.testing.assert_close(merged_tensor, tensor.to(merged_tensor.dtype), atol=0, rtol=0)
            compared += 1
    assert compared >= len(shard) - 1  # every trained tensor (a tied lm_head may be stored once)

    workdir = verl_run["workdir"]
    questions, results = tmp_path / "questions.json", tmp_path / "results.json"
    convert = subprocess.run([sys.executable, "-m", "mars.cli", "data", "convert", "to-json",
                              str(workdir / "outputs/embedded/data/ir_presence_interference/test.parquet"), str(questions)],
                             cwd=workdir, capture_output=True, text=True, timeout=300)
    assert convert.returncode == 0, convert.stderr[-3000:]
    items = json.loads(questions.read_text())[:3]
    questions.write_text(json.dumps(items))
    infer = subprocess.run(["sh", str(REPO / "evaluation/qwen_inference.sh"), str(merged), str(questions),
                            str(results), "--max-new-tokens", "16", "--backend", "hf"], cwd=workdir,
                           env=SCRIPT_ENV, capture_output=True, text=True, timeout=300)
    assert infer.returncode == 0, infer.stderr[-3000:]
    assert len(json.loads(results.read_text())) == 3
    score = subprocess.run(["sh", str(REPO / "evaluation/eval_qwen.sh"), str(results), "vqa"],
                           cwd=workdir, env=SCRIPT_ENV, capture_output=True, text=True, timeout=300)
    assert score.returncode == 0, score.stderr[-3000:]
    assert Path(str(results).replace(".json", ".report.json")).exists()


LENGTH_REWARD = """
def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    # varies with the sampled text, so that DAPO's filter finds groups with signal even for an untrained policy
    return {"score": float(len(solution_str) % 3), "format": 0.0}
"""


def test_two_verl_runs_give_the_same_numbers(tmp_path):
    """The same config twice: every metric but the timings is equal (each sampled row's draws come from a seed of
    (seed, step, call, row), not from the order in which verl's agent loop delivers the requests)."""
    histories = []
    for name in ("a", "b"):
        done = mars_train(tmp_path, "trainer.total_training_steps=2", f"trainer.experiment_name={name}",
                          "trainer.val_before_train=false", "trainer.save_freq=-1")
        assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
        histories.append(metrics(tmp_path / f"outputs/embedded/runs/{name}"))
    assert [h["step"] for h in histories[0]] == [1, 2]

    def numbers(entry):
        return {k: v for k, v in entry.items() if not k.startswith(("timing", "agent_loop/")) and "perf/" not in k
                and "time" not in k and "throughput" not in k and not k.startswith("training/rollout_probs_diff")}

    for first, second in zip(*histories):
        a, b = numbers(first), numbers(second)
        assert set(a) == set(b)
        # what was sampled and scored is identical; verl's FSDP forward on the CPU may differ in the last digits
        # of a float diagnostic (actor/entropy was 8.004464 vs 8.004807 in one run), never in what was generated
        exact = [k for k in a if k.startswith(("critic/", "response_length/", "reward/", "mars/", "val/", "prompt_length/"))]
        assert exact and {k: a[k] for k in exact} == {k: b[k] for k in exact}
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-6), key
    assert ray_processes() == []


@pytest.mark.parametrize("method", ["vgpo", "vppo", "papo", "srpo"])
def test_perception_methods_train_on_verl(tmp_path, method):
    """The perception pass through MARS's actor worker method on the FSDP2 module, inside Ray; PAPO's term inside
    verl's actor update."""
    done = mars_train(tmp_path, f"perception={method}", "trainer.total_training_steps=1",
                      f"trainer.experiment_name={method}", "trainer.val_before_train=false")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "compute_perception_signals" not in log  # no error from the worker method
    history = metrics(tmp_path / f"outputs/embedded/runs/{method}")
    step = history[0]
    assert step["step"] == 1
    for source in ("visible", "infrared"):
        assert step[f"perception/dependency/{source}"] >= 0
    if method == "papo":  # from the workers' loss, under the local engine's names
        assert step["perception/kl"] > 0 and step["perception/entropy_masked"] > 0
        assert not any(key.startswith("actor/perception/") for key in step)
    elif method == "vppo":
        assert 0 < step["perception/token_weight/gated_share"] < 1 and step["perception/dependency/mean"] > 0
    elif method == "srpo":  # 3 warm-start steps teach no format: roles are rare, weights 1 where there are none
        assert 0 <= step["perception/with_roles_share"] <= 1 and "perception/score/reasoning" in step
    else:
        assert 0 < step["perception/similarity/mean"] < 1
    if method != "papo":
        assert step["perception/token_weight/mean"] > 0
    assert ray_processes() == []


def test_faithful_mr1_trains_on_verl_and_the_focus_tokens_attention_is_measured(tmp_path):
    """``perception=faithful_mr1`` on verl: its anchoring stage (the warm start, shared with the local engine),
    ``perception/focus_in_box`` at each validation (MARS's actor worker method on the FSDP module, verl's patched
    forward and positions), the reinforcing stage's focus attention from the perception pass and its causal maps
    from ``compute_causal_maps``."""
    done = mars_train(tmp_path, "perception=faithful_mr1", "trainer.total_training_steps=1",
                      "trainer.experiment_name=focus", "trainer.test_freq=1")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "focus token's attention inside the regions" in log
    assert "compute_causal_maps" not in log and "compute_perception_signals" not in log  # no worker error
    history = metrics(tmp_path / "outputs/embedded/runs/focus")
    validated = [h for h in history if "val/reward" in h]
    assert [h["step"] for h in validated] == [0, 1]
    for h in validated:
        assert 0 <= h["perception/focus_in_box"] <= 1 and 0 < h["perception/focus_in_box_uniform"] < 1
    step = [h for h in history if "perception/faithful/bonus" in h][0]
    assert 0 <= step["perception/faithful/bonus"] <= 1 and 0 <= step["perception/faithful/with_focus_share"] <= 1
    assert (step["perception/faithful/causal_maps"] >= 1) == (step["perception/faithful/correct_share"] > 0)
    assert ray_processes() == []


def test_dapo_runs_on_verl(tmp_path):
    reward_file = tmp_path / "length_reward.py"
    reward_file.write_text(LENGTH_REWARD)
    done = mars_train(tmp_path, "preset=dapo", "trainer.total_training_steps=1", "trainer.experiment_name=dapo",
                      "algorithm.filter_groups.max_num_gen_batches=10", "trainer.val_before_train=false",
                      f"reward.custom_reward_function.path={reward_file}")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    history = metrics(tmp_path / "outputs/embedded/runs/dapo")
    assert [h["step"] for h in history] == [1] and "mars/information_gain" in history[0]
    assert "actor weights of step 0 loaded" in log
    assert ray_processes() == []


FSIZE_HOOK = """
import resource


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
"""


def test_a_corrupt_checkpoint_is_passed_over_and_a_full_disk_ends_in_one_line(tmp_path):
    """verl's own checkpoints: flipped bytes in the latest one's optimizer shard send the resume to the one before,
    saying why; then a full disk at the next save ends the run in one line that names what was kept. The full disk:
    every Ray worker may write files of at most 1 MB (RLIMIT_FSIZE, set by Ray's worker_process_setup_hook), so the
    actor's 1.4 MB model shard fails as on a full disk, inside verl's own writer, in another process."""
    from mars.training.checkpoint import MANIFEST, POINTER, verify_checkpoint

    first = mars_train(tmp_path, "trainer.total_training_steps=2", "trainer.experiment_name=faults")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-6000:]
    run_dir = tmp_path / "outputs/embedded/runs/faults"
    assert all(verify_checkpoint(run_dir / f"global_step_{step}") is None for step in (1, 2))
    shard = run_dir / "global_step_2" / "actor" / "optim_world_size_1_rank_0.pt"
    data = bytearray(shard.read_bytes())
    data[200:4296] = bytes(b ^ 0xFF for b in data[200:4296])
    shard.write_bytes(bytes(data))

    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "fsize_hook.py").write_text(FSIZE_HOOK)
    full = mars_train(tmp_path, "trainer.total_training_steps=3", "trainer.experiment_name=faults",
                      "+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=fsize_hook.limit_file_size",
                      env={"PYTHONPATH": str(tmp_path / "hooks")})
    assert full.returncode == 1, full.stdout[-4000:] + full.stderr[-6000:]
    assert "global_step_2 cannot be resumed from: actor/optim_world_size_1_rank_0.pt does not match its checksum" \
        in full.stdout
    assert "resuming from global_step_1" in full.stdout and f"{POINTER} now names step 1" in full.stdout
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mars train: no room to write in {run_dir}") and "MiB free" in last, last
    assert f"Kept: {run_dir / 'global_step_1'} and the metrics up to it" in last
    assert "Traceback" not in full.stderr
    assert verify_checkpoint(run_dir / "global_step_1") is None  # the last checkpoint is intact
    assert not (run_dir / "global_step_2" / MANIFEST).exists()  # the save that failed is never taken as complete
    assert [h["step"] for h in metrics(run_dir)] == [0, 1]
    assert ray_processes() == []


def test_ctrl_c_ends_in_one_line_exit_130_and_leaves_no_ray_process(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as a terminal delivers it: a shell that started these tests in the background (`pytest &`) made SIGINT
    # ignored, which the run would inherit and then rightly keep ignoring
    proc = subprocess.Popen([sys.executable, "-m", "mars.cli", "train", *SHORT, "trainer.total_training_steps=50",
                             "trainer.experiment_name=interrupted"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = [], time.time() + 600
    for line in proc.stdout:  # wait until verl's workers have trained and saved step 1, then press Ctrl-C
        seen.append(line)
        if line.startswith("step 1: reward") or time.time() > deadline:
            break
    assert any(line.startswith("step 1: reward") for line in seen), "".join(seen)[-3000:]
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, rest[-3000:]
    run_dir = tmp_path / "outputs/embedded/runs/interrupted"
    assert rest.strip().splitlines()[-1] == (f"mars train: interrupted. Kept: {run_dir / 'global_step_1'} and the "
                                             "metrics up to it (the same command resumes from there).")
    assert "Traceback" not in rest
    assert "shutting down Ray" in rest, rest[-3000:]
    assert ray_processes() == []
