"""The supervised warm start (``mars.sft_warmup``), built once and cached by what determines it.

    path = warm_started_model(cfg)   # a Hugging Face model directory; the model path itself when steps == 0

RL starts from a policy whose answers parse (the reference starts RL from a CoT-SFT model). By default the warm start
shows every training prompt fused; ``mars.sft_warmup.stages`` can instead show some prompts through one source
(the interference setting: ``mars/config/embedded_interference.yaml``). The warm start depends
only on the model, the training prompts and their target answers, the warm-start settings, the seed and the device,
never on the experiment's name or its RL settings (but for ``perception=srpo``, whose targets open with a
perception block: its roles come from the output's format), so it is built once under ``mars.sft_warmup.cache_dir/<key>/``
and reused by every experiment on the same model and data (a DAPO run after a GRPO run, a new variant mode, ...).
Both engines call it; it trains in this process with transformers (CPU or one GPU), the same loss as the local
engine's log-probs: cross-entropy on the target answer tokens, prompt tokens masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mars.data.samples import PromptSample, run_seed, training_samples
from mars.hf.device import autocast_for, resolve_device, set_cpu_threads
from mars.hf.focus import Anchoring, focus_probe, measure_focus, sample_regions
from mars.hf.log_probs import teacher_forced
from mars.training.preflight import skipping_length_limit

# bump when the warm start's result changes for the same inputs (loss, target text, sampling of batches)
FORMAT = 1
DEFAULT_CACHE_DIR = "outputs/warm_start"
DONE = "warm_start.json"  # written last inside the temporary folder: a cache entry without it is never used
HASH_WHOLE_FILES_UP_TO = 64 << 20  # bigger files (real weights) are identified by name, size and mtime


def sft_target(sample: PromptSample, perception_block: bool = False) -> str:
    """The target answer of a prompt; ``perception_block``: SRPO's format (a perception block first)."""
    from mars.data.convert import sft_assistant_text

    row = {"reward_model": {"ground_truth": sample.ground_truth}, "extra_info": sample.extra_info,
           "ability": sample.extra_info.get("reward")}
    return sft_assistant_text(row, perception_block=perception_block)


def _path_identity(path: str) -> Any:
    """A file or a directory by content (small files) or name, size and mtime (big ones); a hub id by name."""
    root = Path(path)
    if not root.exists():
        return {"name": path}
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = {}
    for f in files:
        stat = f.stat()
        rel = f.name if f == root else str(f.relative_to(root))
        if stat.st_size <= HASH_WHOLE_FILES_UP_TO:
            out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
        else:
            out[rel] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return out


def _device(cfg: Any) -> torch.device:
    return resolve_device(cfg.trainer.get("device", "auto"))


@dataclass(frozen=True)
class Stage:
    """One stage of the warm start: ``steps`` batches drawn from its (prompt, target answer) pairs."""

    view: str
    steps: int
    samples: list[PromptSample]
    targets: list[str]


def answerable(sample: PromptSample, shown: Sequence[str]) -> bool:
    """Whether the sources ``shown`` hold the answer: each is among the sample's ``extra_info.answer_sources``
    (samples that do not say are answerable)."""
    known = sample.extra_info.get("answer_sources")
    return known is None or set(shown) <= set(known)


def stage_steps(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` steps split in proportion to ``weights``, rounded so that they add up to ``total``."""
    bounds = np.round(np.cumsum([0.0, *weights]) / sum(weights) * total).astype(int)
    return [int(b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def warm_start_stages(cfg: Any, samples: Sequence[PromptSample]) -> list[Stage]:
    """``mars.sft_warmup.stages`` in order, or one stage: every training prompt, fused. ``mars.sft_warmup.steps`` is
    split between the stages in proportion to their ``weight`` (default 1).

    A stage shows each prompt ``fused`` or as the mono-source variant of one source (``mars.variant_mode``, as the
    anchors are built; prompts without that source are left out); ``answerable_only`` keeps the prompts whose shown
    sources hold the answer. The targets are always the true answers: a stage changes what the model is shown,
    never what it is told."""
    from mars.anchors import build_mono_source_variants
    from mars.perception.methods import perception_settings
    from mars.training.settings import AnchorSettings

    sft = cfg.mars.sft_warmup
    specs = sft.get("stages") or [{"view": "fused"}]
    steps = stage_steps(int(sft.steps), [float(spec.get("weight", 1.0)) for spec in specs])
    mode = AnchorSettings.from_config(cfg).variant_mode
    perception_block = perception_settings(cfg).name == "srpo"  # SRPO's roles come from the output's format
    stages = []
    for spec, n in zip(specs, steps):
        view, chosen = str(spec["view"]), []
        for sample in samples:
            if view == "fused":
                shown, messages = list(sample.sources), sample.messages
            else:
                variant = build_mono_source_variants(sample.messages, sample.sources, mode, [view])
                if not variant:
                    continue
                shown, messages = [view], variant[0].messages
            if spec.get("answerable_only", False) and not answerable(sample, shown):
                continue
            chosen.append(replace(sample, messages=messages))
        if not chosen and n > 0:
            raise ValueError(f"mars.sft_warmup.stages: no training prompt for the stage that shows {view} "
                             f"(answerable_only={spec.get('answerable_only', False)}): more training data, or "
                             "another stage")
        stages.append(Stage(view, n, chosen, [sft_target(s, perception_block) for s in chosen]))
    return stages


def warm_start_identity(cfg: Any, stages: Sequence[Stage]) -> dict[str, Any]:
    """Everything the warm-started weights depend on (the cache key is its hash; it is saved beside the model)."""
    sft = cfg.mars.sft_warmup
    files = cfg.data.train_files
    files = [files] if isinstance(files, str) else list(files)
    pairs = [[s.messages, t] for stage in stages for s, t in zip(stage.samples, stage.targets)]
    prompts = hashlib.sha256(json.dumps(pairs, sort_keys=True, default=str).encode()).hexdigest()
    identity = {
        "format": FORMAT,
        "model": str(cfg.actor_rollout_ref.model.path),
        "model_files": _path_identity(str(cfg.actor_rollout_ref.model.path)),
        "train_files": {str(f): _path_identity(str(f)) for f in files},
        "prompts_and_targets": prompts,  # also covers train_max_samples, skipped rows and the target text
        "steps": int(sft.steps), "lr": float(sft.lr), "batch_size": int(sft.batch_size),
        "seed": run_seed(cfg),
        "temperature": float(cfg.actor_rollout_ref.rollout.temperature) or 1.0,  # the log-probs divide by it
        "device": _device(cfg).type,  # bf16 autocast on cuda, fp32 on the cpu: different weights
    }
    if sft.get("stages"):
        identity["stages"] = [[stage.view, stage.steps, len(stage.samples)] for stage in stages]
    focus = focus_settings(cfg)
    if focus is not None:
        identity["focus"] = focus
    return identity


def focus_settings(cfg: Any) -> dict[str, Any] | None:
    """``mars.sft_warmup.focus`` when enabled, or under ``perception=faithful_mr1`` (Faithful-MR1's anchoring stage):
    token, weight, layer; else None."""
    focus = (cfg.mars.get("sft_warmup") or {}).get("focus") or {}
    faithful = (cfg.get("perception", None) or {}).get("name", "none") == "faithful_mr1"  # its first stage
    if not (focus.get("enable", False) or faithful):
        return None
    return {"token": str(focus.get("token", "<Focus>")), "weight": float(focus.get("weight", 1.0)),
            "layer": int(focus.get("layer", -1))}


def warm_started_model(cfg: Any, write=print) -> str:
    """The Hugging Face directory of ``actor_rollout_ref.model.path`` after ``mars.sft_warmup`` on ``data.train_files``.

    Built on first use under ``mars.sft_warmup.cache_dir/<key>/`` (default ``outputs/warm_start``) and reused by
    every later run with the same model, data, warm-start settings, seed and device. Returns the model path
    unchanged when it has no step to train. A crash while building leaves no entry behind."""
    sft = cfg.mars.get("sft_warmup")
    model_path = str(cfg.actor_rollout_ref.model.path)
    if sft is None or int(sft.steps) <= 0:
        return model_path
    stages = warm_start_stages(cfg, training_samples(cfg, skipping_length_limit(cfg)))
    identity = warm_start_identity(cfg, stages)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(sft.get("cache_dir") or DEFAULT_CACHE_DIR).absolute()
    final = root / key
    if (final / DONE).exists():
        summary = json.loads((final / DONE).read_text())
        write(f"SFT warm start: reusing {final} ({identity['steps']} steps, loss {summary['loss_first']:.3f} -> "
              f"{summary['loss_last']:.3f})")
        return str(final)

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
    try:
        losses, focus = _train(cfg, stages, tmp, write)
        summary = {"identity": identity, "loss_first": losses[0], "loss_last": float(np.mean(losses[-10:])),
                   "losses": losses}
        if focus:
            summary["focus"] = focus
        (tmp / DONE).write_text(json.dumps(summary, indent=1))
        try:
            os.replace(tmp, final)
        except OSError:  # another run finished the same entry first: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write(f"SFT warm start: {identity['steps']} steps, loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f};"
          f" cached in {final}")
    if summary.get("focus"):
        write(focus_line(summary["focus"]))
    return str(final)


def focus_line(focus: dict[str, Any]) -> str:
    """The anchoring stage's result in one line: the focus token's attention inside the boxes, before and after."""
    def part(name: str) -> str:
        m = focus.get(name) or {}
        if not m:
            return f"{name}: no validation prompt with regions"
        ratio = m["focus_in_box"] / m["focus_in_box_uniform"] if m["focus_in_box_uniform"] > 0 else float("nan")
        return f"{name} {m['focus_in_box']:.3f} ({ratio:.2f}x uniform)"

    uniform = (focus.get("after") or {}).get("focus_in_box_uniform", float("nan"))
    prompts = (focus.get("after") or {}).get("prompts", 0)
    return (f"SFT warm start: focus token's attention inside the regions, on {prompts} validation prompts: "
            f"{part('before')} -> {part('after')}; uniform attention would get {uniform:.3f}")


def _train(cfg: Any, stages: Sequence[Stage], out: Path, write) -> tuple[list[float], dict[str, Any]]:
    """AdamW on all weights, one stage after the other (its own optimizer: the RL optimizer and schedule start fresh
    afterwards). With ``mars.sft_warmup.focus``: the focus token opens every target, and its attention over the image
    tokens is trained toward the regions (``anchoring``), measured on validation before and after. Returns the
    losses and that measurement."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mars.hf.decoding import eos_token_ids
    from mars.processing import ImageCache, MultimodalEncoder
    from mars.training.progress import Progress

    sft = cfg.mars.sft_warmup
    steps, batch_size, seed = sum(stage.steps for stage in stages), int(sft.batch_size), run_seed(cfg)
    device = _device(cfg)
    set_cpu_threads(cfg, device, write)
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(str(cfg.actor_rollout_ref.model.path))
    tokenizer = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(str(cfg.actor_rollout_ref.model.path), dtype=torch.float32)
    merge = int(processor.image_processor.merge_size)
    focus = focus_settings(cfg)
    anchoring = Anchoring(focus, model, tokenizer, merge) if focus else None  # before the move: it may add a row
    model = model.to(device).train()
    encoder, images = MultimodalEncoder(processor), ImageCache(processor.image_processor)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos_ids = eos_token_ids(model, tokenizer)
    eos = tokenizer.convert_ids_to_tokens(sorted(eos_ids)[0])
    temperature = float(cfg.actor_rollout_ref.rollout.temperature) or 1.0
    # prompts and answers are encoded once per sample, not once per draw (the images dominate the data path)
    encoded: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}

    def encode(s: int, i: int):
        if (s, i) not in encoded:
            stage, sample = stages[s], stages[s].samples[i]
            ids = tokenizer(stage.targets[i] + eos, add_special_tokens=False)["input_ids"]
            prompt = encoder.encode([sample.messages], images)[0]
            mask = None
            if anchoring:
                ids, mask = anchoring.target(ids, prompt, sample)
            encoded[s, i] = (prompt, torch.tensor(ids), mask)
            if len(encoded) > 4096:  # a big dataset: bounded memory, re-encoding what falls out
                encoded.pop(next(iter(encoded)))
        return encoded[s, i]

    def measured() -> dict[str, float]:  # where the focus token looks on the validation prompts with regions
        model.eval()
        result = measure_focus(model, *probe, anchoring.focus_id, anchoring.layer, device, pad_id,
                               lambda: autocast_for(device))
        model.train()
        return result

    focus_report: dict[str, Any] = {}
    if anchoring:
        from mars.data.samples import load_samples

        pairs = [(sample.extra_info, sample.ground_truth) for stage in stages for sample in stage.samples]
        with_regions = sum(bool(sample_regions(*pair)) for pair in pairs)
        write(f"SFT warm start: the focus token {anchoring.token} opens every target; its attention (layer "
              f"{anchoring.layer}) is anchored on the {with_regions} of {len(pairs)} training prompts with regions"
              + ("" if with_regions else " (none: extra_info.regions or grounding boxes; data built by an older "
                 "MARS has none, remove it to build it again)"))
        probe = focus_probe(load_samples(cfg.data.val_files, str(cfg.mars.get("on_bad_row", "error"))), encoder,
                            images, merge)
        focus_report["before"] = measured()

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(sft.lr))
    rng = np.random.default_rng([seed, 7])
    losses: list[float] = []
    bar = Progress(steps, "SFT warm start", write=write)
    anchoring_losses: list[float] = []
    for s in (s for s, stage in enumerate(stages) for _ in range(stage.steps)):
        n = len(stages[s].samples)
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        prompts, answers, masks = zip(*(encode(s, int(i)) for i in idx))
        width = max(len(a) for a in answers)
        optimizer.zero_grad(set_to_none=True)
        with anchoring.recording(model) if anchoring else contextlib.nullcontext() as kept:
            log_probs, targets, valid, _, batch = teacher_forced(
                model, prompts, answers, np.arange(len(answers)), width, device, pad_id, temperature,
                lambda: autocast_for(device))
        log_prob = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * valid
        loss = answer_loss = -log_prob.sum() / sum(len(a) for a in answers)
        shown = {}
        focus_loss = anchoring.loss(kept, batch, prompts, masks) if anchoring else None
        if focus_loss is not None:
            loss = loss + anchoring.weight * focus_loss
            anchoring_losses.append(focus_loss.item())
            shown["anchoring"] = f"{anchoring_losses[-1]:.3f}"
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(answer_loss.item())  # the answer's loss alone: comparable with and without anchoring
        bar.update(loss=f"{losses[-1]:.3f}", **shown)
    bar.close()
    if anchoring:
        focus_report["after"] = measured()
        if anchoring_losses:  # cross-entropy to the normalised box mask: its floor is the mask's entropy, not 0
            focus_report["anchoring_loss_first"] = anchoring_losses[0]
            focus_report["anchoring_loss_last"] = float(np.mean(anchoring_losses[-10:]))
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))  # with the focus token, so merge, inference and verl load it
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return losses, focus_report
