"""PNG plots of a run from its metrics.jsonl: rewards, anchor reward per source, information gain and the share of
groups with MARS-only signal, validation, the validation accuracy per view (fused against each source alone), and
with Faithful-MR1, where the focus token looks (and, under ``perception=faithful_mr1``, the bonus it earned).

Two rules: a value measured only at some steps (validation) is drawn as markers at those steps, never as a line
through steps where nothing was measured; and series that coincide (two sources with equal anchor rewards) stay
visible, each with its own line style and marker, drawn widest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# per anchor source, in turn: (line style, marker, line width); later series are thinner, so that equal series
# show as a thin line inside a wide one instead of one hiding the other
SERIES_STYLES = (("-", "o", 3.5), ("--", "s", 2.2), (":", "^", 1.4), ("-.", "v", 1.0), ((0, (1, 1)), "D", 0.8))


def legend_below(ax) -> None:
    """The panel's legend under its axes, never over its data points."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def _points(history: Sequence[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(h["step"], h[key]) for h in history if key in h]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def draw_run(history: Sequence[dict[str, float]]):
    """The figure (three panels over training steps), or None when there is nothing to plot."""
    train = [h for h in history if "critic/score/mean" in h]
    if not train and not any("val/reward" in h for h in history):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = sorted({k.split("/")[2] for h in history for k in h if k.startswith("val/view/")},
                   key=lambda name: (name != "fused", name))
    focus = any("perception/focus_in_box" in h for h in history)
    panels = 3 + bool(views) + focus
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.8))
    ax = axes[0]
    if train:
        ax.plot(*_points(train, "critic/score/mean"), color="tab:blue", label="multi-source (train)")
    val_steps, val = _points(history, "val/reward")
    if val_steps:
        ax.plot(val_steps, val, linestyle="none", marker="o", markersize=7, color="tab:orange",
                label="validation (measured steps)")
    ax.set(title="reward", xlabel="step")
    legend_below(ax)

    ax = axes[1]
    sources = sorted({k.split("/", 2)[2] for h in train for k in h if k.startswith("mars/anchor_reward/")})
    for i, source in enumerate(sources):
        style, marker, width = SERIES_STYLES[i % len(SERIES_STYLES)]
        steps, values = _points(train, f"mars/anchor_reward/{source}")
        ax.plot(steps, values, linestyle=style, marker=marker, lw=width, markersize=3 + width, alpha=0.85,
                markevery=max(len(steps) // 15, 1), label=f"anchor: {source}")
    if train:
        ax.plot(*_points(train, "critic/score/mean"), color="k", linestyle="--", lw=1.0, label="multi-source")
    ax.set(title="anchor reward per source", xlabel="step")
    if sources:
        legend_below(ax)

    ax = axes[2]
    gain_steps, gain = _points(train, "mars/information_gain")
    if gain_steps:
        ax.plot(gain_steps, gain, color="tab:green", label="information gain (multi-source - anchors)")
    # the groups MARS trains on and GRPO would not: where the anchors changed the signal
    only_steps, only = _points(train, "mars/signal_mars_only")
    if gain_steps and only_steps:
        ax.bar(only_steps, only, color="tab:purple", alpha=0.35, label="share of groups with MARS-only signal")
        legend_below(ax)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(title="what the anchors change", xlabel="step")

    if views:  # does seeing more mean knowing more: validation accuracy, fused against each source alone
        ax = axes[3]
        for i, name in enumerate(views):
            steps, values = _points(history, f"val/view/{name}/accuracy")
            style, marker, width = SERIES_STYLES[i % len(SERIES_STYLES)]
            ax.plot(steps, values, linestyle=style, marker=marker, lw=width + (1.5 if name == "fused" else 0),
                    markersize=4 + width, color="k" if name == "fused" else None, alpha=0.85, label=name)
        ax.set(title="validation accuracy per view", xlabel="step", ylim=(-0.03, 1.03))
        legend_below(ax)
    if focus:  # Faithful-MR1's anchoring: where the focus token looks, against attention spread evenly
        ax = axes[-1]
        for key, label, style in (("perception/focus_in_box", "focus token's attention in the boxes", "-"),
                                  ("perception/focus_in_box_uniform", "uniform attention would get", "--")):
            steps, values = _points(history, key)
            ax.plot(steps, values, linestyle=style, marker="o", color="k" if style == "-" else "grey", label=label)
        steps, values = _points(train, "perception/faithful/bonus")  # perception=faithful_mr1: every step
        if steps:
            ax.plot(steps, values, color="tab:green", label="causal-map bonus of correct answers (train, x lambda)")
        ax.set(title="where the focus token looks", xlabel="step", ylim=(-0.03, 1.03))
        legend_below(ax)
    fig.tight_layout()
    return fig


def plot_run(history: Sequence[dict[str, float]], out_path: str | Path) -> Path | None:
    """``draw_run`` saved as a PNG; returns its path (None when there is nothing to plot)."""
    fig = draw_run(history)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
