"""Workarounds for verl 0.9.1 faults that hit every device, applied from outside (verl itself is never edited).

Each fix replaces one function of a verl module with a wrapper that handles the failing case and calls verl's own
function otherwise; ``tests/test_verl_fixes.py`` reproduces each fault with verl's original function.

1. ``verl.models.transformers.qwen2_vl._get_input_embeds``: for a micro-batch without images it runs the vision
   tower on a dummy image (so every FSDP rank runs the same modules) and adds ``0 * image_embeds.mean()``; under
   transformers 5.x the tower returns a model output, not a tensor, and ``.mean()`` raises ``AttributeError``.
   The fix unpacks the output as verl does in its image branch.
2. ``verl.utils.tensordict_utils.maybe_fix_3d_position_ids``: the actor's micro-batches carry Qwen-VL's mRoPE
   position ids as a jagged tensor of (4, length) rows. When every row of a micro-batch has the same length, torch
   marks the 4 rows as the ragged dimension (``_ragged_idx=1``); verl then forces ``_ragged_idx=2`` and the next
   ``index_select_tensor_dict`` fails inside torch (``Expected cond to be True``). The fix rebuilds such a tensor
   with the length as its ragged dimension, which is what verl meant; any other tensor goes to verl's function.
   verl's workers import the function by name, so the name is replaced in those modules too, as they load.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

ORIGINALS: dict[str, Any] = {}
MROPE_ROWS = 4  # Qwen-VL's position ids: text, temporal, height, width


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


def mrope_rows(positions: Any) -> list | None:
    """The (4, length) rows of a jagged mRoPE position-id tensor, read from its values and offsets (its
    ``_ragged_idx`` cannot be trusted after pickling); None when it is not laid out as mRoPE rows."""
    values, offsets, lengths = positions.values(), positions.offsets().tolist(), positions.lengths()
    n = len(offsets) - 1
    if values.dim() != 2 or n < 1:
        return None
    ends = [offsets[i] + int(lengths[i]) for i in range(n)] if lengths is not None else offsets[1:]
    fits = (lambda end, size: end <= size) if lengths is not None else (lambda end, size: end == size)
    if values.shape[0] == MROPE_ROWS and fits(ends[-1], values.shape[1]):
        return [values[:, offsets[i] : ends[i]] for i in range(n)]  # ragged along the length (what verl means)
    if all(e - o == MROPE_ROWS for o, e in zip(offsets, ends)) and fits(ends[-1], values.shape[0]):
        return [values[offsets[i] : ends[i]] for i in range(n)]  # equal lengths: torch made the 4 rows ragged
    return None


def fixed_3d_position_ids(data: Any) -> None:
    """verl's ``maybe_fix_3d_position_ids``, right also when every row has the same length (module doc, fix 2)."""
    from verl.utils import tensordict_utils

    if "position_ids" in data.keys():
        positions = data["position_ids"]
        if positions.is_nested and positions.dim() == 3:
            rows = mrope_rows(positions)
            if rows is not None:
                data["position_ids"] = tensordict_utils.nested_tensor_from_tensor_list(rows, ragged_idx=2)
                return
    ORIGINALS["maybe_fix_3d_position_ids"](data)


# verl modules that import maybe_fix_3d_position_ids by name (``from ... import``)
POSITION_IDS_IMPORTERS = ("verl.workers.engine_workers", "verl.workers.engine.base", "verl.workers.engine_workers_tinker")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Replaces ``attr`` in the named modules right after they execute, so a heavy verl module need not be imported
    early just to be patched."""

    def __init__(self, modules: tuple[str, ...], attr: str, value: Any):
        self.modules, self.attr, self.value = set(modules), attr, value

    def find_spec(self, name, path=None, target=None):
        if name not in self.modules:
            return None
        self.modules.discard(name)  # find the real spec without finding ourselves again
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            self.modules.add(name)
        if spec is None or spec.loader is None:
            return spec
        loader, attr, value = spec.loader, self.attr, self.value

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                setattr(module, attr, value)

        spec.loader = Loader()
        return spec


def _fix_3d_position_ids() -> None:
    from verl.utils import tensordict_utils

    if "maybe_fix_3d_position_ids" in ORIGINALS:
        return
    ORIGINALS["maybe_fix_3d_position_ids"] = tensordict_utils.maybe_fix_3d_position_ids
    tensordict_utils.maybe_fix_3d_position_ids = fixed_3d_position_ids
    pending = []
    for name in POSITION_IDS_IMPORTERS:
        if name in sys.modules:
            setattr(sys.modules[name], "maybe_fix_3d_position_ids", fixed_3d_position_ids)
        else:
            pending.append(name)
    if pending:
        sys.meta_path.insert(0, _PatchOnImport(tuple(pending), "maybe_fix_3d_position_ids", fixed_3d_position_ids))


def apply() -> None:
    """Install every fix (idempotent)."""
    _fix_qwen2_vl_input_embeds()
    _fix_3d_position_ids()
