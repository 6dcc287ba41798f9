"""Per-token labels of responses from each token's own text.

Methods that read a response's format (SRPO's roles, Faithful-MR1's answer tokens) label every token by where its
text falls; decoding token by token makes each token's span exact whatever the tokenizer merges.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def label_tokens(responses: Sequence[torch.Tensor], tokenizer, width: int,
                 label: Callable[[list[str]], list], dtype: torch.dtype) -> torch.Tensor:
    """(B, width) ``label`` applied to each response's token texts (one label per token), zeros past it."""
    out = torch.zeros(len(responses), width, dtype=dtype)
    for i, ids in enumerate(responses):
        ids = [int(t) for t in ids.tolist()][:width]
        if ids:
            out[i, : len(ids)] = torch.tensor(label(tokenizer.batch_decode([[t] for t in ids])), dtype=dtype)
    return out


__all__ = ["label_tokens"]
