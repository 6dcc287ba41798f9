"""A few rows of one layer's attention, recomputed from that layer's queries and keys.

Only eager attention returns attention weights in transformers, eager attention over a whole model is costly, and
verl replaces Qwen-VL attention with its own flash-attention paths. A method that needs the attention of a few query
positions (Faithful-MR1: the focus token's attention over the image tokens) keeps the input of one layer's
self-attention (a forward pre-hook, which runs whatever attention implementation the layer uses) and recomputes,
for the asked query positions q only,

    a[b, h, q, j] = softmax_j( <rot(W_q x_q)_h, rot(W_k x_j)_h> * d^-1/2 ),   over the real tokens j <= q,

with the layer's own projections, its per-head norms (Qwen3-VL) and its rotary embedding (multimodal sections for
Qwen2.5-VL), the key heads shared by groups of query heads as the layer shares them. Cost: Q rows x L keys per head
instead of L x L, and the keys' projection of one layer.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

import torch


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The language model's decoder layers (``...language_model.layers``)."""
    for name, module in model.named_modules():
        if name.endswith("language_model.layers") and isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"{type(model).__name__} has no language_model.layers: not a Qwen-VL model?")


@contextmanager
def layer_input(model: torch.nn.Module, layer: int = -1) -> Iterator[dict[str, Any]]:
    """Within the block, each forward of ``model`` leaves in the yielded dict what layer ``layer``'s self-attention
    received: ``attention`` (the module), ``hidden_states`` (B, L, D, after the layer's input norm) and
    ``position_embeddings`` (cos, sin), and the layer's rotated ``query`` and ``key`` (``queries_and_keys``),
    projected during the forward itself: under FSDP a layer's weights are whole only while it runs."""
    attention = decoder_layers(model)[layer].self_attn
    kept: dict[str, Any] = {"attention": attention}

    def keep(module, args, kwargs):
        kept["hidden_states"] = kwargs.get("hidden_states", args[0] if args else None)
        kept["position_embeddings"] = kwargs.get("position_embeddings")
        kept["query"], kept["key"] = queries_and_keys(module, kept["hidden_states"], kept["position_embeddings"])

    handle = attention.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield kept
    finally:
        handle.remove()


def queries_and_keys(attention: torch.nn.Module, hidden_states: torch.Tensor,
                     position_embeddings: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's rotated queries (B, H, L, d) and keys (B, H_kv, L, d), as its own forward computes them."""
    family = sys.modules[type(attention).__module__]
    batch, length, _ = hidden_states.shape
    head_dim = attention.head_dim
    query = attention.q_proj(hidden_states).view(batch, length, -1, head_dim)
    key = attention.k_proj(hidden_states).view(batch, length, -1, head_dim)
    cos, sin = position_embeddings
    if hasattr(attention, "q_norm"):  # Qwen3-VL: per-head norms, then the (already interleaved) rotary embedding
        query, key = attention.q_norm(query).transpose(1, 2), attention.k_norm(key).transpose(1, 2)
        return family.apply_rotary_pos_emb(query, key, cos, sin)
    if hasattr(family, "apply_multimodal_rotary_pos_emb"):  # Qwen2-VL / Qwen2.5-VL: mRoPE sections
        sections = attention.config.rope_parameters["mrope_section"]
        return family.apply_multimodal_rotary_pos_emb(query.transpose(1, 2), key.transpose(1, 2), cos, sin, sections)
    raise NotImplementedError(f"attention rows of {type(attention).__name__} are not implemented")


def attention_rows(kept: dict[str, Any], query_positions: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """The attention probabilities (B, H, Q, L) of ``query_positions`` (B, Q) over all positions, from a forward
    recorded by ``layer_input``. ``key_mask`` (B, L): the real tokens (the attention mask; padding gets 0). Causal:
    a query attends to the real tokens at or before it, as in the forward itself. In float32."""
    attention = kept["attention"]
    query, key = kept["query"], kept["key"]
    query = query.float().gather(2, query_positions[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[3]))
    key = key.float().repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scores = torch.einsum("bhqd,bhld->bhql", query, key) * attention.scaling
    length = key.shape[2]
    causal = torch.arange(length, device=scores.device)[None, None, :] <= query_positions[:, :, None]  # (B, Q, L)
    allowed = causal & key_mask.bool()[:, None, :]
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return torch.softmax(scores, dim=-1)


__all__ = ["attention_rows", "decoder_layers", "layer_input", "queries_and_keys"]
