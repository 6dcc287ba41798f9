"""``curves.png``: validation reward and accuracy of every arm, against training steps and against generated tokens.

One line per arm: the mean over seeds at each validation step, with a band of one standard deviation over seeds
around it, and each seed's own curve as a thin line (a min-max band hides everything once one seed differs). Against tokens, a point sits at the seeds' mean number of
tokens generated up to that step, so arms that generate more per step (n+K rollouts, DAPO's regenerated batches,
MARS's anchors) stretch to the right: equal x means equal generation budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _mean_curve(runs: dict[str, Any], key: str):
    """(steps, tokens, mean, sd, per-seed values) over the seeds that measured ``key`` at the same steps as the
    first."""
    curves = [r["curves"][key] for r in runs.values() if key in r.get("curves", {}) and r["curves"][key]["step"]]
    if not curves:
        return None
    steps = curves[0]["step"]
    curves = [c for c in curves if c["step"] == steps]
    values = np.array([c["value"] for c in curves])
    tokens = np.array([c["tokens"] for c in curves]).mean(axis=0)
    sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    return np.array(steps), tokens, values.mean(axis=0), sd, values


def plot_curves(summary: dict[str, Any], out_path: str | Path) -> Path | None:
    arms = [a for a in summary["arms"] if a["runs"]]
    if not arms:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc_key = next((a["accuracy_key"] for a in arms if a["accuracy_key"]), None)
    rows = [("val/reward", "validation reward")] + ([(acc_key, f"validation {acc_key.split('/', 1)[1]}")]
                                                    if acc_key else [])
    if any("val/interference_rate" in r.get("curves", {}) for a in arms for r in a["runs"].values()):
        rows.append(("val/interference_rate", "interference rate"))
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 4 * len(rows)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for r, (key, title) in enumerate(rows):
        for i, arm in enumerate(arms):
            got = _mean_curve(arm["runs"], key)
            if got is None:
                continue
            steps, tokens, mean, sd, per_seed = got
            style = "-" if arm["estimator"] == "mars" else ("--" if arm["family"] == "grpo" else ":")
            label = f"{arm['label']} ({len(arm['runs'])} seed{'s' if len(arm['runs']) != 1 else ''})"
            for c, x in enumerate((steps, tokens / 1000)):
                ax = axes[r, c]
                ax.plot(x, mean, linestyle=style, marker="o", markersize=4, color=colours(i % 10), label=label)
                if len(arm["runs"]) > 1:
                    ax.fill_between(x, mean - sd, mean + sd, color=colours(i % 10), alpha=0.15)
                    for values in per_seed:
                        ax.plot(x, values, linestyle=style, lw=0.6, alpha=0.45, color=colours(i % 10))
        axes[r, 0].set(title=f"{title} (mean, band: ± 1 sd over seeds, thin: each seed)", xlabel="training step")
        axes[r, 1].set(title=f"{title} against generation budget", xlabel="generated tokens (thousands)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
