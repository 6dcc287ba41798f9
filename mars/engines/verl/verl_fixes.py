"""Workarounds for verl 0.9.1 faults that hit every device, applied from outside (verl itself is never edited).

Each fix replaces one function of a verl module with a wrapper that handles the failing case and calls verl's own
function otherwise; ``tests/test_verl_fixes.py`` reproduces each fault with verl's original function.

1. ``verl.models.transformers.qwen2_vl._get_input_embeds``: for a micro-batch without images it runs the vision
   tower on a dummy image (so every FSDP rank runs the same modules) and adds ``0 * image_embeds.mean()``; under
   transformers 5.x the tower returns a model output, not a tensor, and ``.mean()`` raises ``AttributeError``.
   The fix unpacks the output as verl does in its image branch.
"""

from __future__ import annotations

from typing import Any

ORIGINALS: dict[str, Any] = {}


def _fix_qwen2_vl_input_embeds() -> None:
    from verl.models.transformers import qwen2_vl

    if "qwen2_vl._get_input_embeds" in ORIGINALS:
        return
    original = ORIGINALS["qwen2_vl._get_input_embeds"] = qwen2_vl._get_input_embeds

    def _get_input_embeds(model, input_ids, attention_mask=None, pixel_values=None, pixel_values_videos=None,
                          image_grid_thw=None, video_grid_thw=None):
        if pixel_values is not None or pixel_values_videos is not None:
            return original(model, input_ids, attention_mask, pixel_values, pixel_values_videos, image_grid_thw,
                            video_grid_thw)
        import torch

        inputs_embeds = model.get_input_embeddings()(input_ids)
        vision = model.config.vision_config
        patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        dummy = torch.zeros((16, patch_dim), dtype=inputs_embeds.dtype, device=inputs_embeds.device)
        grid = torch.tensor([[1, 4, 4]], dtype=torch.long, device=inputs_embeds.device)
        image_embeds, _ = qwen2_vl.unpack_visual_output(model.visual(dummy.type(model.visual.dtype), grid_thw=grid))
        inputs_embeds = inputs_embeds + 0.0 * image_embeds.mean()  # keeps the tower in the graph on every rank
        if attention_mask is not None:
            attention_mask = attention_mask.to(inputs_embeds.device)
        return inputs_embeds, attention_mask

    qwen2_vl._get_input_embeds = _get_input_embeds


def apply() -> None:
    """Install every fix (idempotent)."""
    _fix_qwen2_vl_input_embeds()
