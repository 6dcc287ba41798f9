"""Does seeing more mean knowing more? The per-source report: each question answered fused and per source.

For every question with K >= 2 sources the model answers the fused prompt and each mono-source variant (one source
shown, as the anchors are built). From the verdicts, in percent of the multi-source questions:

    views[v].accuracy    share answered right when the model sees view v (``fused``, or one source alone)
    fusion_gain          fused accuracy minus the best single source's: < 0 means seeing more made it worse
    interference_rate    fused wrong although at least one source alone was right (fusion hurt)
    synergy_rate         fused right although every source alone was wrong (fusion helped)
    dominance[s]         source s alone right and every other source alone wrong (s carries the answer by itself)

Unparsed answers are wrong (and counted per view). One-source questions have no variants: they are scored as fused
only and reported apart (``single_source``), outside every rate above. With several ``data_source`` values the same
report is given per data source. Pure arithmetic on verdicts: generating the answers lives in ``mars.per_source``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

FUSED = "fused"


@dataclass(frozen=True)
class Verdict:
    """One answer scored: right or wrong (an unparsed answer is wrong), parsed, and its IoU for grounding."""

    correct: bool
    parsed: bool = True
    iou: float | None = None


@dataclass(frozen=True)
class ItemViews:
    """One question: its fused answer's verdict and each source's (empty for a one-source question)."""

    fused: Verdict
    mono: Mapping[str, Verdict] = field(default_factory=dict)
    data_source: str = ""


def _percent(hits: int, total: int) -> float:
    return 100.0 * hits / total if total else 0.0


def view_summary(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Accuracy and unparsed answers (in percent), the mean IoU where the answers have one, and the count."""
    out: dict[str, Any] = {
        "items": len(verdicts),
        "accuracy": _percent(sum(v.correct for v in verdicts), len(verdicts)),
        "unparsed": _percent(sum(not v.parsed for v in verdicts), len(verdicts)),
    }
    ious = [v.iou for v in verdicts if v.iou is not None]
    if ious:
        out["mean_iou"] = 100.0 * sum(ious) / len(ious)
    return out


def source_report(items: Sequence[ItemViews]) -> dict[str, Any]:
    """The report described in the module docstring (``by_data_source`` when the items mix data sources)."""
    report = _report(items)
    data_sources = sorted({item.data_source for item in items})
    if len(data_sources) > 1:
        report["by_data_source"] = {name: _report([i for i in items if i.data_source == name]) for name in data_sources}
    return report


def _report(items: Sequence[ItemViews]) -> dict[str, Any]:
    multi = [item for item in items if len(item.mono) >= 2]
    single = [item for item in items if len(item.mono) < 2]
    sources = list(dict.fromkeys(name for item in multi for name in item.mono))
    views = {FUSED: view_summary([item.fused for item in multi])}
    for name in sources:
        views[name] = view_summary([item.mono[name] for item in multi if name in item.mono])
    interference = sum(not item.fused.correct and any(v.correct for v in item.mono.values()) for item in multi)
    synergy = sum(item.fused.correct and not any(v.correct for v in item.mono.values()) for item in multi)
    dominance = {
        name: _percent(sum(name in item.mono and item.mono[name].correct
                           and not any(v.correct for other, v in item.mono.items() if other != name)
                           for item in multi), len(multi))
        for name in sources
    }
    best = max((views[name]["accuracy"] for name in sources), default=None)
    return {
        "items": len(items),
        "multi_source_items": len(multi),
        "views": views,
        "best_source": max(sources, key=lambda name: views[name]["accuracy"]) if sources else None,
        "fusion_gain": views[FUSED]["accuracy"] - best if best is not None else None,
        "interference_rate": _percent(interference, len(multi)),
        "synergy_rate": _percent(synergy, len(multi)),
        "dominance": dominance,
        "single_source": view_summary([item.fused for item in single]),
    }


def format_source_report(report: Mapping[str, Any], title: str = "") -> str:
    """The terminal table: one row per view, then the rates."""
    lines = [title] if title else []
    has_iou = any("mean_iou" in v for v in report["views"].values())
    header = f"{'view':<22}{'items':>7}{'accuracy %':>12}{'unparsed %':>12}" + (f"{'mean IoU %':>12}" if has_iou else "")
    lines += [header, "-" * len(header)]
    for name, view in report["views"].items():
        row = f"{name:<22}{view['items']:>7}{view['accuracy']:>12.2f}{view['unparsed']:>12.2f}"
        if has_iou:
            row += f"{view.get('mean_iou', float('nan')):>12.2f}"
        lines.append(row)
    if report["fusion_gain"] is not None:
        lines.append(f"fusion gain (fused - best source, {report['best_source']}): {report['fusion_gain']:+.2f} points")
    lines.append(f"interference (fused wrong, a source alone right): {report['interference_rate']:.2f}%   "
                 f"synergy (fused right, every source alone wrong): {report['synergy_rate']:.2f}%")
    if report["dominance"]:
        lines.append("dominance (only this source alone right): "
                     + ", ".join(f"{k} {v:.2f}%" for k, v in report["dominance"].items()))
    single = report["single_source"]
    if single["items"]:
        lines.append(f"one-source questions (fused only, outside the rates): {single['items']}, "
                     f"accuracy {single['accuracy']:.2f}%")
    lines.append(f"{report['multi_source_items']} multi-source questions of {report['items']}; "
                 "unparsed answers count as wrong")
    return "\n".join(lines)
