"""mars doctor: the report on this machine, version mismatches, missing optional packages, failing smoke parts and
the processes a part leaves behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mars.cli import main as mars_main
from mars.doctor import cli, machine, smoke, stack
from mars.doctor.procs import marked_processes, run_logged
from mars.doctor.report import Check, exit_code, table

ROOT = Path(__file__).resolve().parents[1]
STACK_ROWS = ["python", "mars"] + [p.dist for p in stack.PIECES]
MACHINE_ROWS = ["accelerators", "cuda", "nccl", "nccl all-reduce", "disk", "cpu", "ray cluster"]


def rows(report: dict) -> dict[str, dict]:
    return {row["name"]: row for row in report["checks"]}


def test_doctor_is_a_mars_command(capsys):
    assert mars_main(["--help"]) == 0
    assert "mars doctor" in capsys.readouterr().out
    assert mars_main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "`" not in out
    assert mars_main(["doctor", "--gpus", "two"]) == 2
    assert "--gpus two" in capsys.readouterr().err


def test_the_stack_and_machine_report_on_this_machine(tmp_path, capsys):
    import torch

    report_file = tmp_path / "report.json"
    code = mars_main(["doctor", "--no-smoke", "--out", str(tmp_path / "out"), "--json", str(report_file)])
    report = json.loads(report_file.read_text())
    got = rows(report)
    assert list(got) == STACK_ROWS + MACHINE_ROWS
    for row in report["checks"]:
        assert set(row) >= {"name", "status", "detail", "seconds"} and row["status"] in ("pass", "warn", "fail", "skip")
        if row["status"] == "fail":
            assert "fix:" in row["detail"] and row["fix"], row
    assert code == (1 if report["failed"] else 0) and report["passed"] == (code == 0)
    assert got["torch"]["status"] == "pass" and torch.__version__.split("+")[0] in got["torch"]["detail"]
    assert got["python"]["status"] == "pass" and sys.version.split()[0] in got["python"]["detail"]
    assert got["accelerators"]["status"] == ("pass" if torch.cuda.is_available() else "warn")
    assert f"of {os.cpu_count()} CPUs" in got["cpu"]["detail"]
    out = capsys.readouterr().out
    assert all(name in out for name in got) and "in " in out.splitlines()[-1]
    # the report of the run also lies in the run's own folder, and nothing else was written beside it
    (run,) = (tmp_path / "out").iterdir()
    assert json.loads((run / "report.json").read_text())["checks"] == report["checks"]


def fake_versions(monkeypatch, **versions):
    real = stack.installed_version
    monkeypatch.setattr(stack, "installed_version",
                        lambda dist: versions[dist] if dist in versions else real(dist))


def test_a_version_mismatch_fails_with_the_install_that_fixes_it(tmp_path, monkeypatch):
    fake_versions(monkeypatch, transformers="5.17.0", vllm="0.11.0")
    report_file = tmp_path / "report.json"
    assert cli.main(["--no-smoke", "--out", str(tmp_path / "out"), "--json", str(report_file)]) == 1
    got = rows(json.loads(report_file.read_text()))
    assert got["transformers"]["status"] == "fail"
    assert "5.17.0 installed, expected ==5.9.0" in got["transformers"]["detail"]
    assert got["transformers"]["fix"] == "pip install -e ."
    # vllm is pinned by verl's extra, which MARS's extra asks for: its fix installs that extra
    assert got["vllm"]["status"] == "fail" and "==0.24.0" in got["vllm"]["detail"]
    assert got["vllm"]["fix"] == 'pip install -e ".[vllm]"'
    assert {"transformers", "vllm"} <= set(json.loads(report_file.read_text())["failed"])


def test_a_local_build_tag_satisfies_its_pin(monkeypatch):
    fake_versions(monkeypatch, torch="2.11.0+cu130")
    reqs, _, _ = stack.mars_requirements(ROOT)
    torch_row = stack.check_piece(stack.PIECES[0], reqs)
    assert torch_row.status == "pass", torch_row


def test_a_missing_optional_package_is_a_skip_a_missing_required_one_a_failure(monkeypatch):
    fake_versions(monkeypatch, vllm=None, sglang=None, **{"flash-attn": None, "peft": None})
    got = {c.name: c for c in stack.stack_checks(ROOT)}
    assert got["vllm"].status == "skip" and "rollouts on GPU" in got["vllm"].detail
    assert 'pip install -e ".[vllm]"' in got["vllm"].detail
    assert got["flash-attn"].status == "skip" and got["sglang"].status == "skip"
    assert got["peft"].status == "fail" and got["peft"].fix == "pip install -e ."
    assert exit_code([got["vllm"], got["sglang"], got["flash-attn"]]) == 0
    assert exit_code(got.values()) == 1


def test_pins_come_from_mars_or_from_what_it_requires():
    verl_reqs = ['ray[default]>=2.41.0', 'transformers<5.11,>=5.5.3', 'vllm==0.24.0; extra == "vllm"',
                 'sglang==0.5.12; extra == "sglang"']
    mars_reqs = ['verl==0.9.1', 'transformers==5.9.0', 'verl[vllm]==0.9.1; extra == "vllm"',
                 'flash-attn==2.8.3; extra == "flash-attn"']
    requires = {"verl": verl_reqs}.get
    assert stack.find_pin("transformers", mars_reqs, requires) == stack.Pin("==5.9.0", None, "mars-rl")
    assert stack.find_pin("ray", mars_reqs, requires) == stack.Pin(">=2.41.0", None, "verl")
    assert stack.find_pin("vllm", mars_reqs, requires) == stack.Pin("==0.24.0", "vllm", "verl")
    assert stack.find_pin("flash_attn", mars_reqs, requires) == stack.Pin("==2.8.3", "flash-attn", "mars-rl")
    assert stack.find_pin("sglang", mars_reqs, requires) is None  # MARS's requirements never ask for verl[sglang]


def test_pins_fall_back_to_pyproject_when_mars_is_not_installed(monkeypatch):
    monkeypatch.setattr(stack, "dist_requires", lambda dist: None)
    reqs, requires_python, source = stack.mars_requirements(ROOT)
    assert source.endswith("pyproject.toml") and requires_python == ">=3.10"
    assert stack.find_pin("torch", reqs, lambda d: None) == stack.Pin("==2.11.0", None, "mars-rl")
    assert stack.find_pin("flash-attn", reqs, lambda d: None).extra == "flash-attn"


def test_machine_checks_name_the_usual_failures_of_a_new_node():
    no_gpu = {"torch": "2.11.0+cpu", "cuda_build": None, "devices": [], "nccl": None}
    broken = machine.check_accelerators(no_gpu, {"gpus": 8, "driver": "580.1", "cuda": "13.0"}, 0)
    assert broken.status == "fail" and "driver sees 8 GPU(s)" in broken.detail and "torch build" in broken.fix
    old_driver = machine.check_cuda({**no_gpu, "cuda_build": "13.0"}, {"driver": "535.1", "cuda": "12.2"})
    assert old_driver.status == "fail" and "driver" in old_driver.fix
    v100 = {**no_gpu, "devices": [{"name": "V100", "memory_gib": 32.0, "capability": "7.0", "bf16": False}] * 2}
    assert machine.check_accelerators(v100, {}, 2).status == "warn"
    assert machine.check_allreduce(1, run=None).status == "skip"
    assert machine.check_accelerators("ImportError: libcudart.so", {}, 0).status == "fail"


def test_the_all_reduce_probe_sums_and_reports(tmp_path):
    """The all-reduce's code, run with gloo on the CPU (NCCL needs two GPUs): spawn, sum, bandwidth, the report."""
    env = cli.child_env(ROOT, None)

    def run(argv, name, timeout):
        return run_logged(argv, tmp_path / f"{name}.log", env, tmp_path, timeout, "t0")

    check = machine.check_allreduce(2, run, backend="gloo")
    assert check.status == "pass" and "2 ranks, 64 MiB" in check.detail and "sum correct" in check.detail, check


def test_gpus_option_limits_the_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cli.visible_devices(None, 8) is None
    assert cli.visible_devices(2, 8) == "0,1" and cli.visible_devices(0, 8) == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    assert cli.visible_devices(2, 3) == "3,5"


def a_smoke(tmp_path) -> smoke.Smoke:
    run = tmp_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    return smoke.Smoke(ROOT, run, tmp_path / "cache", cli.child_env(ROOT, None), "cpu")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_failing_part_says_which_part_and_why_and_the_rest_is_skipped(tmp_path):
    state = a_smoke(tmp_path)
    failing = smoke.Part("train", "smoke: train", python("print('loading'); print('CUDA error: out of memory');"
                                                         "raise SystemExit(3)"), lambda log: "ok", 30)
    after = smoke.Part("resume", "smoke: resume", python("pass"), lambda log: "ok", 30, ("train",))
    first, second = smoke.run_part(failing, state, "t1"), smoke.run_part(after, state, "t1")
    assert first.status == "fail" and first.detail.startswith("train failed (exit code 3)")
    assert "CUDA error: out of memory" in first.detail and str(state.run / "logs" / "train.log") in first.fix
    assert second.status == "skip" and "train did not pass" in second.detail


def test_a_part_that_exits_0_without_its_outputs_fails(tmp_path):
    state = a_smoke(tmp_path)

    def verify(log):
        raise smoke.PartFailed("no checkpoint global_step_2")

    check = smoke.run_part(smoke.Part("train", "smoke: train", python("pass"), verify, 30), state, "t2")
    assert check.status == "fail" and "exited 0 but no checkpoint global_step_2" in check.detail


def test_a_missing_module_points_to_the_install(tmp_path):
    state = a_smoke(tmp_path)
    part = smoke.Part("verl", "smoke: verl", python("import vllm_is_not_here"), lambda log: "ok", 30)
    check = smoke.run_part(part, state, "t3")
    assert check.status == "fail" and check.fix == "pip install -e . (vllm_is_not_here is missing)"
    assert smoke.failure_fix(["ModuleNotFoundError: No module named 'vllm'"], 1, 1, Path("x")) == \
        'pip install -e ".[vllm]"'


def test_a_part_past_its_time_limit_is_stopped(tmp_path):
    """Stopped as Ctrl-C stops it (a training shuts its Ray down), also when the doctor was started with SIGINT
    ignored (in the background), which its children would inherit."""
    state = a_smoke(tmp_path)
    code = "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('stopping')\n    raise\n"
    part = smoke.Part("merge", "smoke: merge", python(code), lambda log: "ok", 2)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start = time.monotonic()
        check = smoke.run_part(part, state, "t4")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 20  # not the 30 s after which a part that ignores it is killed
    assert check.status == "fail" and "(timed out)" in check.detail and "2 s limit" in check.fix
    assert "stopping" in (state.run / "logs" / "merge.log").read_text()


def test_the_child_runner_runs_scripts_and_modules_as_python_does(tmp_path):
    script = tmp_path / "args.py"
    script.write_text("import sys\nprint(sys.argv[1:])\nsys.exit(3)\n")
    env = cli.child_env(ROOT, None)
    done = subprocess.run([sys.executable, "-m", "mars.doctor.child", str(script), "a", "b"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 3 and done.stdout.strip() == "['a', 'b']"
    done = subprocess.run([sys.executable, "-m", "mars.doctor.child", "-m", "mars.cli", "doctor", "--gpus", "x"],
                          capture_output=True, text=True, env={**env, "MARS_DOCTOR_GPU_PEAK": str(tmp_path / "g")})
    assert done.returncode == 2 and "--gpus x" in done.stderr
    assert not (tmp_path / "g").exists()  # no CUDA used, nothing measured (and torch not imported for it)


def test_processes_a_part_leaves_behind_are_found_and_stopped(tmp_path):
    """What the verl part must not do: leave a process (a raylet, a GCS) running after it ended."""
    orphan = "import subprocess; subprocess.Popen(['sleep', '120'], start_new_session=True)"
    outcome = run_logged(python(orphan), tmp_path / "orphan.log", dict(os.environ), tmp_path, 30, "t5", settle=0.5)
    assert outcome.code == 0 and len(outcome.leftovers) == 1 and outcome.leftovers[0].endswith("sleep")
    assert marked_processes("t5") == {}
    verl = Check("smoke: verl", "pass", "1 step", extra={"leftover_processes": outcome.leftovers})
    assert smoke.ray_leftovers_check(verl).status == "warn"
    clean = Check("smoke: verl", "pass", "1 step", extra={"leftover_processes": []})
    assert smoke.ray_leftovers_check(clean).status == "pass"


def test_a_failing_smoke_part_fails_the_doctor(tmp_path, monkeypatch):
    broken = smoke.Part("train", "smoke: train (local, cpu)", python("import sys; print('bad config');"
                                                                     "sys.exit(2)"), lambda log: "ok", 30)
    monkeypatch.setattr(smoke, "local_parts", lambda state: [broken])
    report_file = tmp_path / "report.json"
    assert cli.main(["--quick", "--out", str(tmp_path / "out"), "--json", str(report_file)]) == 1
    report = json.loads(report_file.read_text())
    row = rows(report)["smoke: train (local, cpu)"]
    assert row["status"] == "fail" and "train failed (exit code 2): bad config" in row["detail"]
    assert "smoke: train (local, cpu)" in report["failed"] and rows(report)["smoke: verl"]["status"] == "skip"


def test_the_smoke_overrides_are_keys_of_the_config(tmp_path):
    """Every override the smoke parts pass exists (mars train --cfg job refuses unknown keys), on both engines."""
    state = a_smoke(tmp_path)
    train = smoke.local_parts(state)[0].argv
    verl_gpu = smoke.verl_part(state, "vllm").argv
    for argv in (train, verl_gpu):
        args = argv[argv.index("train"):]
        done = subprocess.run([sys.executable, "-m", "mars.cli", *args, "--cfg", "job"], capture_output=True,
                              text=True, env=state.env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "actor_rollout_ref.rollout.name=vllm" in verl_gpu and "trainer.engine=verl" in verl_gpu


def test_the_report_table_shows_each_failure_with_its_fix():
    checks = [Check("torch", "pass", "2.11.0"), Check("disk", "fail", "1.0 GiB free", 0.1, fix="free space")]
    text = table(checks, width=80)
    assert "disk" in text and "fail" in text and "1.0 GiB free -- fix: free space" in text
    assert checks[1].as_json() == {"name": "disk", "status": "fail", "detail": "1.0 GiB free -- fix: free space",
                                   "seconds": 0.1, "fix": "free space"}
    with pytest.raises(ValueError):
        Check("x", "ok", "")


def test_a_quick_run_passes_the_whole_local_loop(tmp_path, monkeypatch):
    """The real thing: 2 steps, a resume, merge, inference and evaluation on the tiny model, in its own folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # anything written relative to the working directory would show here
    report_file = tmp_path / "report.json"
    code = cli.main(["--quick", "--out", str(tmp_path / "out"), "--json", str(report_file)])
    report = json.loads(report_file.read_text())
    got = rows(report)
    smoke_rows = {name: row for name, row in got.items() if name.startswith("smoke: ") and "verl" not in name
                  and "Ray" not in name}
    assert len(smoke_rows) == 6 and all(row["status"] == "pass" for row in smoke_rows.values()), smoke_rows
    assert got["smoke: verl"]["status"] == "skip" and "--quick" in got["smoke: verl"]["detail"]
    assert code == (1 if report["failed"] else 0)
    run = Path(report["out"])
    assert (run / "runs" / "local" / "global_step_3").is_dir() and (run / "merged" / "config.json").exists()
    assert json.loads((run / "results.report.json").read_text())["samples"] == 6
    assert all(row["peak_rss_mb"] > 0 for row in smoke_rows.values())
    assert list(cwd.iterdir()) == [] and {p.name for p in (tmp_path / "out").iterdir()} == {"cache", run.name}
