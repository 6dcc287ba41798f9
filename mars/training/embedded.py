"""The embedded default's ingredients, built on first use: synthetic data and the tiny model (no download).

A build is complete when its folder holds ``.mars_build_complete``, written last: a build interrupted by a kill (a
0-byte ``config.json`` or parquet file) is found incomplete by the next run, removed and built again. Both builds
are deterministic, so a rebuild gives the same files (and the warm-start cache still applies).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

COMPLETE = ".mars_build_complete"


def needs_build(folder: Path, write=print) -> bool:
    """True when ``folder`` holds no complete build; a partial one is removed (module docstring)."""
    if (folder / COMPLETE).exists():
        return False
    if folder.exists() and any(folder.iterdir()):
        write(f"{folder} holds an incomplete build (interrupted?): building it again")
        shutil.rmtree(folder)
    return True


def mark_complete(folder: Path) -> None:
    (folder / COMPLETE).write_text("")


def prepare_embedded(cfg: Any, write=print) -> None:
    """Build ``mars.embedded``'s dataset and model unless they are already there (both are deterministic)."""
    spec = cfg.mars.get("embedded")
    if spec is None:
        return
    data_dir = Path(spec.data_dir)
    uses_data = str(cfg.data.train_files) == str(data_dir / "train.parquet")  # not when overridden by the user
    if uses_data and needs_build(data_dir, write):
        from mars.data.synth.build import synthesize

        write(f"building the synthetic {spec.task} dataset in {data_dir} ...")
        synthesize(spec.task, str(data_dir), int(spec.num), seed=int(spec.seed),
                   val_frac=float(spec.get("val_frac", 0.1)), test_frac=float(spec.get("test_frac", 0.1)))
        mark_complete(data_dir)
    model_dir = Path(spec.model_dir)
    uses_model = str(cfg.actor_rollout_ref.model.path) == str(model_dir)
    if uses_model and needs_build(model_dir, write):
        from mars.models.tiny import build_tiny_model

        write(f"building the tiny {spec.arch} model in {model_dir} ...")
        build_tiny_model(model_dir, arch=str(spec.arch), seed=int(spec.seed), overwrite=True)
        mark_complete(model_dir)
