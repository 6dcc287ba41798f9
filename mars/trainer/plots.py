"""PNG plots of a run from its metrics.jsonl: rewards, anchor reward per source, information gain, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_run(history: Sequence[dict[str, float]], out_path: str | Path) -> Path | None:
    """Three panels over training steps; returns the PNG's path (None when there is nothing to plot)."""
    train = [h for h in history if "critic/score/mean" in h]
    val = [h for h in history if "val/reward" in h]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    if train:
        ax.plot([h["step"] for h in train], [h["critic/score/mean"] for h in train], label="multi-source (train)")
    if val:
        ax.plot([h["step"] for h in val], [h["val/reward"] for h in val], "o-", label="validation")
    ax.set(title="reward", xlabel="step")
    ax.legend()

    ax = axes[1]
    sources = sorted({k.split("/", 2)[2] for h in train for k in h if k.startswith("mars/anchor_reward/")})
    for source in sources:
        key = f"mars/anchor_reward/{source}"
        points = [(h["step"], h[key]) for h in train if key in h]
        ax.plot(*zip(*points), label=f"anchor: {source}")
    if train:
        ax.plot([h["step"] for h in train], [h["critic/score/mean"] for h in train], "k--", label="multi-source")
    ax.set(title="anchor reward per source", xlabel="step")
    if sources:
        ax.legend()

    ax = axes[2]
    gain = [(h["step"], h["mars/information_gain"]) for h in train if "mars/information_gain" in h]
    if gain:
        ax.plot(*zip(*gain), color="tab:green")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(title="information gain (multi-source - anchors)", xlabel="step")

    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
