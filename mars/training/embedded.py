"""The embedded default's ingredients, built on first use: synthetic data and the tiny model (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def prepare_embedded(cfg: Any, write=print) -> None:
    """Build ``mars.embedded``'s dataset and model unless they are already there (both are deterministic)."""
    spec = cfg.mars.get("embedded")
    if spec is None:
        return
    data_dir = Path(spec.data_dir)
    uses_data = str(cfg.data.train_files) == str(data_dir / "train.parquet")  # not when overridden by the user
    if uses_data and not (data_dir / "train.parquet").exists():
        from mars.data.synth.build import synthesize

        write(f"building the synthetic {spec.task} dataset in {data_dir} ...")
        synthesize(spec.task, str(data_dir), int(spec.num), seed=int(spec.seed),
                   val_frac=float(spec.get("val_frac", 0.1)), test_frac=float(spec.get("test_frac", 0.1)))
    model_dir = Path(spec.model_dir)
    uses_model = str(cfg.actor_rollout_ref.model.path) == str(model_dir)
    if uses_model and not (model_dir / "config.json").exists():
        from mars.models.tiny import build_tiny_model

        write(f"building the tiny {spec.arch} model in {model_dir} ...")
        build_tiny_model(model_dir, arch=str(spec.arch), seed=int(spec.seed), overwrite=True)
