"""The comparison folder, from the runs' ``metrics.jsonl``: ``summary.json``, ``table.md`` and ``curves.png``.

Per run (one arm, one seed), from its metrics:
    val_reward_start     validation reward before training (step 0; greedy answers, ``rollout.val_kwargs``)
    val_reward_final     validation reward at the last step
    val_reward_mean      mean of the validation rewards measured after step 0 (less noisy than one point)
    val_accuracy_final   the last validation accuracy: ``val/accuracy`` (VQA) or ``val/iou`` (grounding, the
                         reward's IoU part), named in ``accuracy_key`` (see ``accuracy_key_of``)
    view/<v>_final       the last validation accuracy per view (``fused``, each source alone; per-view validation,
                         ``mars.training.validation``), ``view/fused_mean``: the fused accuracy's mean over the
                         validations after step 0 (how fast it recovers), and ``interference_start`` /
                         ``interference_final``: the
                         share of validation prompts answered wrong fused but right by a source alone
    generated_tokens     every token the run generated for training (rollouts, anchors and the groups DAPO's
                         filter dropped; validation answers not counted): the sum of ``mars/generated_tokens``
    train_s              the sum of the steps' ``timing_s/step`` (generation to update; no validation, no saving)
    wall_s               the run's measured wall time (``runs.json``; warm start excluded)
    mars/...             the step mean of each ``mars/*`` diagnostic (mars/advantage/diagnostics.py explains
                         them), and ``mars/steps_with_mars_only_signal``: the share of steps where
                         ``mars/signal_mars_only`` > 0; with DAPO's dynamic sampling, the step means of
                         ``mars/filter/gen_batches`` (generation batches to fill a step) and ``mars/filter/kept_share``
                         (share of generated groups it kept)
Per arm: mean, sample standard deviation and count over seeds of each of these.
Paired differences: within a family (the preset), every MARS arm minus every other arm, seed by seed, on the
final and mean validation reward and the final accuracy: mean, standard deviation, min, max, seeds where MARS is
ahead, every seed's difference, and a 95% t-interval of the mean difference over seeds (``ci95``: mean +- t(0.975,
n-1) sd / sqrt(n); none for one seed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mars.compare.arms import ROLLOUT_N, Arm
from mars.training.checkpoint import write_text_atomic
from mars.training.tracking import read_history

ACCURACY_KEYS = ("val/accuracy", "val/iou")
PAIRED_METRICS = ("val_reward_final", "val_reward_mean", "val_accuracy_final", "view/fused_final", "view/fused_mean")
DIAGNOSTICS = ("mars/signal_mars_only", "mars/signal_grpo_only", "mars/signal_groups", "mars/signal_groups_grpo",
               "mars/information_gain", "mars/anchor_reward", "mars/multi_source_reward")
# DAPO's dynamic sampling (mars/training/step.py): generation batches per step, share of groups it kept
FILTER = ("mars/filter/gen_batches", "mars/filter/kept_share")


def curve(history: Sequence[dict[str, float]], key: str) -> dict[str, list[float]]:
    """The validation points of ``key``: steps, values and the generated tokens up to each step."""
    cumulative, out = 0.0, {"step": [], "value": [], "tokens": []}
    for h in sorted(history, key=lambda h: h["step"]):
        cumulative += h.get("mars/generated_tokens", 0.0)
        if key in h:
            out["step"].append(h["step"])
            out["value"].append(h[key])
            out["tokens"].append(cumulative)
    return out


def accuracy_key_of(history: Sequence[dict[str, float]]) -> str | None:
    """The reward's accuracy part: every reward logs both parts (a grounding reward's accuracy is 0, a VQA reward's
    IoU is 0), so the first of ``ACCURACY_KEYS`` that is non-zero somewhere, else the first one present."""
    present = [k for k in ACCURACY_KEYS if any(k in h for h in history)]
    return next((k for k in present if any(h.get(k, 0.0) != 0.0 for h in history)), present[0] if present else None)


def run_stats(history: Sequence[dict[str, float]], wall_s: float | None = None) -> dict[str, Any]:
    steps = [h for h in history if h["step"] > 0]
    val = curve(history, "val/reward")
    accuracy_key = accuracy_key_of(history)
    stats: dict[str, Any] = {
        "steps": max((h["step"] for h in steps), default=0),
        "val_reward_start": val["value"][0] if val["step"][:1] == [0] else None,
        "val_reward_final": val["value"][-1] if steps and val["value"] else None,
        "val_reward_mean": float(np.mean([v for s, v in zip(val["step"], val["value"]) if s > 0]))
        if any(s > 0 for s in val["step"]) else None,
        "accuracy_key": accuracy_key,
        "val_accuracy_final": curve(history, accuracy_key)["value"][-1] if accuracy_key and steps else None,
        "generated_tokens": float(sum(h.get("mars/generated_tokens", 0.0) for h in steps)),
        "train_s": float(sum(h.get("timing_s/step", 0.0) for h in steps)),
        "wall_s": wall_s,
        "curves": {"val/reward": val, **({accuracy_key: curve(history, accuracy_key)} if accuracy_key else {})},
    }
    views = curve(history, "val/interference_rate")
    if views["value"]:
        stats["interference_start"] = views["value"][0] if views["step"][0] == 0 else None
        stats["interference_final"] = views["value"][-1]
        stats["curves"]["val/interference_rate"] = views
        for key in sorted({k for h in history for k in h if k.startswith("val/view/") and k.endswith("/accuracy")}):
            points = curve(history, key)
            stats[f"view/{key.split('/')[2]}_final"] = points["value"][-1]
            stats["curves"][key] = points
        fused = curve(history, "val/view/fused/accuracy")
        trained = [v for step, v in zip(fused["step"], fused["value"]) if step > 0]
        if trained:  # how fast the fused answer recovers, not only where it ends
            stats["view/fused_mean"] = float(np.mean(trained))
    keys = sorted({k for h in steps for k in h if k.startswith("mars/anchor_reward/")} | set(DIAGNOSTICS))
    if not any("mars/anchor_reward" in h for h in steps):  # no anchors (a GRPO arm): MARS's columns say nothing
        keys = [k for k in keys if k in ("mars/signal_groups_grpo", "mars/multi_source_reward")]
    keys += list(FILTER)
    for key in keys:
        values = [h[key] for h in steps if key in h]
        if values:
            stats[key] = float(np.mean(values))
    if "mars/signal_mars_only" in stats:
        stats["mars/steps_with_mars_only_signal"] = float(np.mean([h.get("mars/signal_mars_only", 0.0) > 0
                                                                   for h in steps]))
    return stats


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (None for one value), min, max and count."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
            "min": min(v), "max": max(v), "n": len(v)}


def t_interval(values: Sequence[float], level: float = 0.95) -> list[float] | None:
    """The t-interval of the mean: mean +- t((1 + level) / 2, n - 1) * sd / sqrt(n) (None below two values)."""
    from scipy import stats

    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if len(v) < 2:
        return None
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1)) * float(np.std(v, ddof=1)) / math.sqrt(len(v))
    return [float(np.mean(v)) - half, float(np.mean(v)) + half]


def paired_differences(per_run: dict[str, dict[int, dict[str, Any]]], arms: Sequence[Arm]) -> list[dict[str, Any]]:
    """Seed by seed (only seeds both arms finished), within a family: each MARS arm minus each non-MARS arm of the
    same perception method (MARS's effect), and each perception-aware arm minus the arm of the same estimator
    without one (the method's effect)."""
    out = []
    for a, b in comparable_pairs(arms):
        seeds = sorted(set(per_run.get(a.name, {})) & set(per_run.get(b.name, {})))
        entry: dict[str, Any] = {"arm": a.name, "baseline": b.name, "seeds": seeds}
        for metric in PAIRED_METRICS:
            diffs = [per_run[a.name][s][metric] - per_run[b.name][s][metric] for s in seeds
                     if per_run[a.name][s].get(metric) is not None and per_run[b.name][s].get(metric) is not None]
            entry[metric] = {**spread(diffs), "ahead": sum(d > 0 for d in diffs), "per_seed": diffs,
                             "ci95": t_interval(diffs)}
        out.append(entry)
    return out


def comparable_pairs(arms: Sequence[Arm]) -> list[tuple[Arm, Arm]]:
    """(arm, baseline) pairs of ``paired_differences``."""
    pairs = []
    for a in arms:
        for b in arms:
            if b is a or b.family() != a.family():
                continue
            mars_effect = a.estimator() == "mars" and b.estimator() != "mars" and a.perception() == b.perception()
            method_effect = (a.perception() != "none" and b.perception() == "none" and a.estimator() == b.estimator()
                             and not any(o.startswith(ROLLOUT_N + "=") for o in b.overrides))  # not the n+K control
            if mars_effect or method_effect:
                pairs.append((a, b))
    return pairs


def summarize(arms: Sequence[Arm], seeds: Sequence[int], runs: dict[str, Any]) -> dict[str, Any]:
    per_run: dict[str, dict[int, dict[str, Any]]] = {}
    for arm in arms:
        for seed in seeds:
            record = runs.get(f"{arm.name}_s{seed}")
            if not record or record.get("status") != "complete":
                continue
            per_run.setdefault(arm.name, {})[seed] = run_stats(read_history(record["run_dir"]), record.get("wall_s"))
    summary_arms = []
    for arm in arms:
        by_seed = per_run.get(arm.name, {})
        scalar_keys = sorted({k for s in by_seed.values() for k, v in s.items() if isinstance(v, (int, float))
                              and not isinstance(v, bool)})
        failed = [r["seed"] for r in runs.values() if r.get("arm") == arm.name and r.get("status") == "failed"
                  and r["seed"] in seeds]
        summary_arms.append({
            "name": arm.name, "label": arm.label, "family": arm.family(), "estimator": arm.estimator(),
            "overrides": arm.overrides, "seeds": sorted(by_seed), "failed_seeds": failed,
            "accuracy_key": next((s["accuracy_key"] for s in by_seed.values() if s["accuracy_key"]), None),
            "stats": {k: spread([s.get(k) for s in by_seed.values()]) for k in scalar_keys},
            "runs": {str(seed): s for seed, s in by_seed.items()},
        })
    return {"seeds": list(seeds), "arms": summary_arms, "paired": paired_differences(per_run, arms)}


def _fmt(stat: dict[str, Any] | None, digits: int = 3, scale: float = 1.0) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    text = f"{stat['mean'] * scale:.{digits}f}"
    return text + (f" ± {stat['std'] * scale:.{digits}f}" if stat.get("std") is not None else "")


def _with_ci(stat: dict[str, Any] | None, digits: int = 3) -> str:
    text = _fmt(stat, digits)
    if stat and stat.get("ci95"):
        low, high = stat["ci95"]
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    return text


def markdown_table(summary: dict[str, Any]) -> str:
    """Two tables: the arms (mean ± sd over seeds), then the paired differences."""
    sources = sorted({k.split("/", 2)[2] for a in summary["arms"] for k in a["stats"]
                      if k.startswith("mars/anchor_reward/")})
    acc = next((a["accuracy_key"] for a in summary["arms"] if a["accuracy_key"]), None)
    dapo = any("mars/filter/gen_batches" in a["stats"] for a in summary["arms"])
    views = sorted({k[len("view/"):-len("_final")] for a in summary["arms"] for k in a["stats"]
                    if k.startswith("view/") and k.endswith("_final")}, key=lambda v: (v != "fused", v))
    head = ["arm", "seeds", "val reward start", "val reward final", "val reward mean", f"{acc or 'accuracy'} final",
            *[f"accuracy {v} final" for v in views], *(["interference start", "interference final"] if views else []),
            "gen. tokens (k)", "train s", "wall s", "MARS-only", "GRPO-only", "steps MARS-only", "info gain",
            *[f"anchor {s}" for s in sources], *(["gen. batches / step", "kept share"] if dapo else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for a in summary["arms"]:
        st = a["stats"].get
        seeds = f"{len(a['seeds'])}" + (f" ({len(a['failed_seeds'])} failed)" if a["failed_seeds"] else "")
        row = [a["label"], seeds, _fmt(st("val_reward_start")), _fmt(st("val_reward_final")),
               _fmt(st("val_reward_mean")), _fmt(st("val_accuracy_final")),
               *[_fmt(st(f"view/{v}_final")) for v in views],
               *([_fmt(st("interference_start")), _fmt(st("interference_final"))] if views else []),
               _fmt(st("generated_tokens"), 1, 1e-3),
               _fmt(st("train_s"), 0), _fmt(st("wall_s"), 0), _fmt(st("mars/signal_mars_only")),
               _fmt(st("mars/signal_grpo_only")), _fmt(st("mars/steps_with_mars_only_signal"), 2),
               _fmt(st("mars/information_gain")), *[_fmt(st(f"mars/anchor_reward/{s}")) for s in sources],
               *([_fmt(st("mars/filter/gen_batches"), 2), _fmt(st("mars/filter/kept_share"), 2)] if dapo else [])]
        lines.append("| " + " | ".join(row) + " |")
    labels = {a["name"]: a["label"] for a in summary["arms"]}
    if summary["paired"]:
        lines += ["", "| paired difference (mean ± sd over seeds [95% t-interval]) | seeds | val reward final | "
                      f"val reward mean | {acc or 'accuracy'} final | fused accuracy final | fused accuracy mean | "
                      "MARS ahead (final reward) | per seed (final reward) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for p in summary["paired"]:
            per_seed = ", ".join(f"{d:+.3f}" for d in p["val_reward_final"]["per_seed"])
            lines.append(f"| {labels[p['arm']]} − {labels[p['baseline']]} | {len(p['seeds'])} | "
                         f"{_with_ci(p['val_reward_final'])} | {_with_ci(p['val_reward_mean'])} | "
                         f"{_with_ci(p['val_accuracy_final'])} | {_with_ci(p.get('view/fused_final'))} | "
                         f"{_with_ci(p.get('view/fused_mean'))} | "
                         f"{p['val_reward_final']['ahead']} of {p['val_reward_final']['n']} | {per_seed} |")
    return "\n".join(lines) + "\n"


def write_comparison(out_dir: str | Path, arms: Sequence[Arm], seeds: Sequence[int], runs: dict[str, Any]) -> dict:
    from mars.compare.curves import plot_curves

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(arms, seeds, runs)
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=1))
    write_text_atomic(out_dir / "table.md", markdown_table(summary))
    plot_curves(summary, out_dir / "curves.png")
    return summary
