"""LoRA adapters (peft) on a policy, as ``actor_rollout_ref.model.lora_rank`` asks: for training and for merging."""

from __future__ import annotations

from typing import Any


def wrap_lora(model: Any, model_cfg: Any) -> Any:
    """``model`` with LoRA adapters of rank ``lora_rank`` on ``target_modules`` (default every linear layer)."""
    from peft import LoraConfig, get_peft_model

    targets = model_cfg.get("target_modules", "all-linear")
    targets = targets if isinstance(targets, str) else list(targets)
    config = LoraConfig(r=int(model_cfg.lora_rank), lora_alpha=int(model_cfg.get("lora_alpha", 16)),
                        target_modules=targets, lora_dropout=0.0)
    return get_peft_model(model, config)
