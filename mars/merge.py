"""``sh scripts/merge.sh DIR [TARGET]``: a checkpoint -> a Hugging Face model directory.

DIR may be
  - a local-engine run folder (``trainer.default_local_dir``: its latest checkpoint is used) or one of its
    ``global_step_N`` folders: the weights are loaded into the run's base model (LoRA merged) and saved;
  - a verl engine's run folder (its latest checkpoint), or a verl FSDP checkpoint (``global_step_N`` or its
    ``actor`` folder, with ``model_world_size_*_rank_*.pt`` shards): verl's own model merger does the work
    (``python -m verl.model_merger merge --backend fsdp``).
TARGET defaults to ``DIR/huggingface``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mars.training.checkpoint import (
    ENGINE_STATE,
    CheckpointError,
    is_verl_checkpoint,
    latest_checkpoint,
    load_checkpoint,
)


def find_local_checkpoint(directory: Path) -> Path | None:
    if (directory / ENGINE_STATE).exists():
        return directory
    found = latest_checkpoint(directory)
    return found if found is not None and not is_verl_checkpoint(found) else None


def find_fsdp_actor(directory: Path) -> Path | None:
    latest = latest_checkpoint(directory) if not any(directory.glob("*.pt")) else None
    for candidate in (directory, directory / "actor", *([latest / "actor"] if latest is not None else [])):
        if any(candidate.glob("model_world_size_*_rank_*.pt")):
            return candidate
    return None


def merge_local(checkpoint: Path, target: Path) -> Path:
    """Rebuild the run's model from its config, load the checkpoint's weights, save it as a HF directory."""
    from omegaconf import OmegaConf
    from transformers import AutoModelForImageTextToText, AutoProcessor

    run_dir = checkpoint.parent
    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} is missing: merge needs the run's config to find its base model")
    cfg = OmegaConf.load(config_file)
    base = cfg.actor_rollout_ref.model.path
    model = AutoModelForImageTextToText.from_pretrained(base)
    engine_state, trainer_state = load_checkpoint(checkpoint)
    if int(cfg.actor_rollout_ref.model.get("lora_rank", 0) or 0) > 0:
        from mars.hf.lora import wrap_lora

        model = wrap_lora(model, cfg.actor_rollout_ref.model)
        model.load_state_dict(engine_state["model"])
        model = model.merge_and_unload()
    else:
        model.load_state_dict(engine_state["model"])
    model.save_pretrained(target)
    AutoProcessor.from_pretrained(base).save_pretrained(target)
    print(f"merged {checkpoint} (step {trainer_state['step']}) into {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    directory = Path(argv[0])
    if not directory.exists():
        print(f"merge: {directory} does not exist", file=sys.stderr)
        return 2
    try:
        local = find_local_checkpoint(directory)
        actor = find_fsdp_actor(directory) if local is None else None
    except CheckpointError as exc:
        print(f"merge: {exc}", file=sys.stderr)
        return 2
    if local is not None:
        target = Path(argv[1]) if len(argv) > 1 else local / "huggingface"
        merge_local(local, target)
        return 0
    if actor is not None:
        target = Path(argv[1]) if len(argv) > 1 else actor / "huggingface"
        command = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
                   "--local_dir", str(actor), "--target_dir", str(target)]
        print("running:", " ".join(command))
        return subprocess.call(command)
    print(f"merge: no checkpoint in {directory}: expected a MARS run folder, a global_step_N folder, or a verl FSDP "
          "checkpoint (model_world_size_*_rank_*.pt)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
