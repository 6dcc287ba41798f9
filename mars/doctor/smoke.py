"""The smoke test: the README's loop on the embedded default's tiny model and data, small enough to take a minute,
each part a command a user runs, in a folder of its own.

    train       mars train ... trainer.total_training_steps=2     (local engine, best device, checkpoint at step 2)
    resume      the same with trainer.total_training_steps=3      (resumes from global_step_2)
    merge       sh scripts/merge.sh RUN merged
    questions   mars data convert to-json TEST.parquet questions.json
    inference   sh evaluation/qwen_inference.sh merged questions.json results.json --max-new-tokens 32
    evaluation  sh evaluation/eval_qwen.sh results.json vqa
    verl        mars train trainer.engine=verl ... (1 step; vLLM/SGLang on a GPU, the hf rollout on a CPU)
    model       inference and evaluation of --model on a few of the same questions

The data, the tiny model and the warm start are built once under ``--out``/cache and reused by later doctor runs
(each run trains afresh in its own folder).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mars.doctor.procs import Outcome, last_lines, run_logged
from mars.doctor.report import Check

MODEL_QUESTIONS = 4


class PartFailed(Exception):
    """The command succeeded but its outputs are not what it should have written."""


@dataclass
class Smoke:
    """Where a doctor run works, and with what."""

    root: Path               # the repository: scripts/ and evaluation/
    run: Path                # this doctor run's folder
    cache: Path              # data, tiny model and warm start, shared by the doctor runs under --out
    env: dict[str, str]
    device: str              # what trainer.device=auto picks: cuda or cpu
    results: dict[str, str] = field(default_factory=dict)  # part -> status


@dataclass
class Part:
    key: str
    title: str
    argv: list[str]
    verify: Callable[[str], str]  # the log's text -> the detail; raises PartFailed
    timeout: float
    needs: tuple[str, ...] = ()
    settle: float = 2.0           # seconds its processes get to end by themselves (Ray's take a few)
    prepare: Callable[[], None] | None = None
    rss: str = "peak RSS"         # whose memory ru_maxrss measures: Ray's workers are not the child's children


def python_shim(smoke: Smoke) -> Path:
    """A ``python`` for the repository's shell scripts: this interpreter, through mars.doctor.child (peak GPU
    memory), whatever ``python`` the user's PATH holds."""
    shim = smoke.run / "bin" / "python"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m mars.doctor.child "$@"\n')
    shim.chmod(0o755)
    return shim.parent


def data_dir(smoke: Smoke) -> Path:
    return smoke.cache / "data" / "ir_presence_64"


def train_overrides(smoke: Smoke, name: str, steps: int, every: int) -> list[str]:
    """The embedded default, smaller: 64 samples, a 20-step warm start, 4 validation prompts, its own folders;
    a checkpoint and a validation every ``every`` steps and at the last."""
    return ["mars.embedded.num=64", f"mars.embedded.data_dir={data_dir(smoke)}",
            f"mars.embedded.model_dir={smoke.cache / 'tiny_qwen2_5_vl'}", "mars.sft_warmup.steps=20",
            f"mars.sft_warmup.cache_dir={smoke.cache / 'warm_start'}", "data.val_max_samples=4",
            "trainer.val_before_train=false", f"trainer.experiment_name=doctor_{name}",
            f"trainer.default_local_dir={smoke.run / 'runs' / name}", f"trainer.total_training_steps={steps}",
            f"trainer.save_freq={every}", f"trainer.test_freq={every}"]


def mars_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mars.doctor.child", "-m", "mars.cli", *args]


def script_command(smoke: Smoke, script: str, *args) -> list[str]:
    """One of the repository's shell scripts, as the README runs it."""
    return ["sh", str(smoke.root / script), *map(str, args)]


def _json(path: Path):
    if not path.exists():
        raise PartFailed(f"{path} was not written")
    return json.loads(path.read_text())


def local_parts(smoke: Smoke) -> list[Part]:
    """train, resume, merge, questions, inference, evaluation: the README's loop."""
    run, runs = smoke.run, smoke.run / "runs" / "local"
    merged, questions, results = run / "merged", run / "questions.json", run / "results.json"

    def trained(log: str) -> str:
        if not (runs / "global_step_2").is_dir():
            raise PartFailed("no checkpoint global_step_2")
        result = _json(runs / "result.json")
        autocast = ", bf16 autocast" if smoke.device == "cuda" else ""
        return f"{result['step']} steps on {smoke.device}{autocast}, checkpoint global_step_2, validation reward " \
               f"{result['val_after']}"

    def resumed(log: str) -> str:
        result = _json(runs / "result.json")
        if "resumed from" not in log or result["step"] != 3:
            raise PartFailed(f"did not resume from global_step_2 (result: step {result['step']})")
        return "resumed from global_step_2, trained step 3"

    def merged_ok(log: str) -> str:
        if not (merged / "config.json").exists() or not list(merged.glob("*.safetensors")):
            raise PartFailed(f"no Hugging Face model in {merged}")
        return f"Hugging Face model in {merged}"

    def asked(log: str) -> str:
        return f"{len(_json(questions))} test questions in {questions}"

    def answered(log: str) -> str:
        got, want = len(_json(results)), len(_json(questions))
        if got != want:
            raise PartFailed(f"{got} answers for {want} questions")
        return f"{got} answers (batched, 32 new tokens at most)"

    def scored(log: str) -> str:
        report = _json(results.with_suffix(".report.json"))
        return f"accuracy {report['accuracy']:.2f} on {report['samples']} questions, {report['unparsed']} " \
               "unparsed (a 3-step tiny model: the number shows the scoring runs, not skill)"

    train = ["train", *train_overrides(smoke, "local", 2, every=2)]
    resume = ["train", *train_overrides(smoke, "local", 3, every=2)]  # only the length differs: a resume

    def sh(script: str, *args) -> list[str]:
        return script_command(smoke, script, *args)

    return [
        Part("train", f"smoke: train (local, {smoke.device})", mars_command(*train), trained, 900),
        Part("resume", "smoke: resume", mars_command(*resume), resumed, 600, ("train",)),
        Part("merge", "smoke: merge", sh("scripts/merge.sh", runs, merged), merged_ok, 300, ("resume",)),
        Part("questions", "smoke: questions (to-json)",
             mars_command("data", "convert", "to-json", data_dir(smoke) / "test.parquet", questions), asked, 300,
             ("train",)),
        Part("inference", "smoke: inference", sh("evaluation/qwen_inference.sh", merged, questions, results,
                                                 "--max-new-tokens", "32"), answered, 600, ("merge", "questions")),
        Part("evaluation", "smoke: evaluation", sh("evaluation/eval_qwen.sh", results, "vqa"), scored, 300,
             ("inference",)),
    ]


def verl_rollout(device: str, quick: bool, joins_cluster: bool) -> tuple[str | None, str]:
    """The rollout the verl part runs with, or None and why it does not run."""
    if quick:
        return None, "--quick"
    if joins_cluster:
        return None, "a Ray cluster is running that a run would join (see ray cluster)"
    missing = [m for m in ("verl", "ray") if importlib.util.find_spec(m) is None]
    if missing:
        return None, f"{' and '.join(missing)} not installed (see the stack checks)"
    if device == "cpu":
        return "hf", ""
    for name in ("vllm", "sglang"):
        if importlib.util.find_spec(name) is not None:
            return name, ""
    return None, 'neither vLLM nor SGLang is installed: pip install -e ".[vllm]" (rollouts on GPU)'


def verl_part(smoke: Smoke, rollout: str) -> Part:
    """One step of the verl engine: Ray, FSDP2 workers, the rollout, the reward loop, a checkpoint."""
    runs = smoke.run / "runs" / "verl"
    args = ["train", "trainer.engine=verl", *train_overrides(smoke, "verl", 1, every=1)]
    if rollout != "hf":  # one GPU, no CUDA graphs (they cost start-up time, not correctness)
        args += [f"actor_rollout_ref.rollout.name={rollout}", "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
                 "actor_rollout_ref.rollout.enforce_eager=true", "actor_rollout_ref.rollout.gpu_memory_utilization=0.4"]
        if importlib.util.find_spec("flash_attn") is None:  # remove-padding goes through flash-attention
            args += ["actor_rollout_ref.model.use_remove_padding=false",
                     "+actor_rollout_ref.model.override_config.attn_implementation=sdpa"]

    def stepped(log: str) -> str:
        result = _json(runs / "result.json")
        if result.get("engine") != "verl" or result.get("step") != 1:
            raise PartFailed(f"result.json says {result}")
        return f"1 step on verl ({rollout} rollout, {smoke.device}), checkpoint {Path(result['checkpoint']).name}"

    return Part("verl", f"smoke: verl ({rollout} rollout)", mars_command(*args), stepped,
                900, settle=15.0, rss="driver's peak RSS")


def model_parts(smoke: Smoke, model: Path) -> list[Part]:
    """The user's model answering a few of the smoke test's questions (the reference question format)."""
    questions, results = smoke.run / "model_questions.json", smoke.run / "model_results.json"

    def prepare() -> None:
        questions.write_text(json.dumps(_json(smoke.run / "questions.json")[:MODEL_QUESTIONS], indent=1))

    def answered(log: str) -> str:
        got = _json(results)
        if len(got) != MODEL_QUESTIONS:
            raise PartFailed(f"{len(got)} answers for {MODEL_QUESTIONS} questions")
        kind = _json(model / "config.json").get("model_type", "?")
        first = got[0]["content"][0]
        shown = " ".join(first.split())[:60] or repr(first[:12])  # a tiny model may answer blank lines only
        return f"{len(got)} answers from {model.name} ({kind}); first: {shown}"

    def scored(log: str) -> str:
        report = _json(results.with_suffix(".report.json"))
        return f"accuracy {report['accuracy']:.2f}, {report['unparsed']} of {report['samples']} unparsed"

    return [
        Part("model", f"model: inference ({model.name})",
             script_command(smoke, "evaluation/qwen_inference.sh", model, questions, results, "--max-new-tokens", "32"),
             answered, 1800, ("questions",), prepare=prepare),
        Part("model_eval", "model: evaluation", script_command(smoke, "evaluation/eval_qwen.sh", results, "vqa"),
             scored, 300, ("model",)),
    ]


def failure_fix(lines: list[str], code: int | None, timeout: float, log: Path) -> str:
    """The fix a failing part's output points to: a missing module is an install, anything else is in the log."""
    missing = next((m.group(1) for line in lines if (m := re.search(r"No module named '([\w.]+)'", line))), None)
    if missing:
        top = missing.split(".")[0]
        extra = {"vllm": "vllm", "sglang": "sglang", "flash_attn": "flash-attn"}.get(top)
        return f'pip install -e ".[{extra}]"' if extra else f"pip install -e . ({top} is missing)"
    if code is None:
        return f"it ran past its {timeout:.0f} s limit: see {log}"
    return f"see {log}"


def memory(outcome: Outcome, rss: str = "peak RSS") -> str:
    parts = [f"{rss} {outcome.peak_rss_mb / 1024:.1f} GiB"] if outcome.peak_rss_mb else []
    if outcome.peak_gpu_mb is not None:
        parts.append(f"GPU {outcome.peak_gpu_mb:.0f} MiB")
    return ", ".join(parts)


def run_part(part: Part, smoke: Smoke, token: str) -> Check:
    """Run one part unless a part it needs did not pass; a failure names the part and the last lines it printed."""
    failed = [n for n in part.needs if smoke.results.get(n) != "pass"]
    if failed:
        smoke.results[part.key] = "skip"
        return Check(part.title, "skip", f"not run: {', '.join(failed)} did not pass")
    if part.prepare:
        part.prepare()
    outcome = run_logged(part.argv, smoke.run / "logs" / f"{part.key}.log", smoke.env, smoke.run, part.timeout,
                         f"{token}:{part.key}", part.settle)
    extra = {"log": str(outcome.log), "peak_rss_mb": outcome.peak_rss_mb, "peak_gpu_mb": outcome.peak_gpu_mb,
             "leftover_processes": outcome.leftovers}
    left = f"; stopped {len(outcome.leftovers)} process(es) it left: {', '.join(outcome.leftovers)}" \
        if outcome.leftovers else ""
    if outcome.code != 0:
        lines = last_lines(outcome.log, 40)  # a Ray worker's traceback can end well before the driver's output
        why = "timed out" if outcome.code is None else f"exit code {outcome.code}"
        smoke.results[part.key] = "fail"
        return Check(part.title, "fail", f"{part.key} failed ({why}): {' | '.join(lines[-6:])}{left}",
                     outcome.seconds, failure_fix(lines, outcome.code, part.timeout, outcome.log), extra)
    try:
        detail = part.verify(outcome.log.read_text(errors="replace"))
    except (PartFailed, KeyError, ValueError) as exc:
        smoke.results[part.key] = "fail"
        return Check(part.title, "fail", f"{part.key} exited 0 but {exc}{left}", outcome.seconds,
                     f"see {outcome.log}", extra)
    smoke.results[part.key] = "pass"
    mem = memory(outcome, part.rss)
    return Check(part.title, "pass", detail + (f"; {mem}" if mem else "") + left, outcome.seconds, extra=extra)


def ray_leftovers_check(check: Check) -> Check:
    """The verl part must leave no Ray process behind (its GCS, raylet, workers): a run started on Ray stops it."""
    if check.status == "skip":
        return Check("smoke: Ray cleanup", "skip", "the verl part did not run")
    left = check.extra.get("leftover_processes", [])
    if sys.platform != "linux":
        return Check("smoke: Ray cleanup", "skip", "not checked (needs Linux /proc)")
    if left:
        return Check("smoke: Ray cleanup", "warn", f"{len(left)} process(es) were left, the doctor "
                     f"stopped them: {', '.join(left)}", fix="ray stop after a verl run (and report the leak)")
    return Check("smoke: Ray cleanup", "pass", "no process of the verl part remains")
