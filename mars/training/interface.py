"""The engine interface: the few things the training step asks of a backend.

The step (``mars/training/step.py``) is written once against this interface. The ``local`` engine implements it in
one process with Hugging Face transformers; the ``verl`` engine implements it on Ray worker groups (its payload
is a ``DataProto``). Everything the step needs to know about a row lives in ``RolloutBatch``'s plain fields;
everything only the engine needs (token ids, pixel values, ...) lives in the opaque ``payload``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from mars.perception.views import AlteredView


@dataclass(frozen=True)
class Sampling:
    """Decoding settings of one rollout request."""

    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass(frozen=True)
class RolloutRequest:
    """One generation: a prompt (chat messages with image parts) and how to decode it.

    ``group_id`` ties a request to its prompt (verl's ``uid``); anchors carry the name of the one source they show.
    """

    messages: list[dict[str, Any]]
    group_id: str
    sampling: Sampling
    is_anchor: bool = False
    source: str = ""  # the source an anchor shows ("" for a multi-source rollout)
    sample: Any = None  # the dataset sample it came from (ground truth, data source, extra_info)


class Payload(Protocol):
    """Engine-private per-row data that can be selected and concatenated along the row axis."""

    def select(self, rows: np.ndarray) -> "Payload": ...

    @classmethod
    def concat(cls, parts: Sequence["Payload"]) -> "Payload": ...


@dataclass
class RolloutBatch:
    """Generated rows: multi-source rollouts and anchors together, one row per request, in request order."""

    group_ids: np.ndarray  # (B,) str
    is_anchor: np.ndarray  # (B,) bool
    sources: np.ndarray  # (B,) str, "" for multi-source rows
    texts: list[str]  # decoded responses
    response_lengths: np.ndarray  # (B,) int: generated tokens
    truncated: np.ndarray  # (B,) bool: stopped by the length limit, not by EOS
    samples: list[Any]  # the dataset sample of each row
    payload: Any  # engine-private (local: tensors per row; verl: DataProto)
    rewards: np.ndarray | None = None  # (B,) float, filled by the step
    reward_extras: dict[str, np.ndarray] = field(default_factory=dict)  # the reward's parts, for logging

    def __len__(self) -> int:
        return len(self.group_ids)

    def row_sources(self) -> list[list[str]]:
        """The source name of each image of each row, from its sample."""
        return [list(getattr(sample, "sources", None) or []) for sample in self.samples]

    def select(self, rows: np.ndarray | Sequence[int]) -> "RolloutBatch":
        rows = np.asarray(rows, dtype=np.int64)
        return replace(
            self,
            group_ids=self.group_ids[rows],
            is_anchor=self.is_anchor[rows],
            sources=self.sources[rows],
            texts=[self.texts[i] for i in rows],
            response_lengths=self.response_lengths[rows],
            truncated=self.truncated[rows],
            samples=[self.samples[i] for i in rows],
            payload=self.payload.select(rows),
            rewards=None if self.rewards is None else self.rewards[rows],
            reward_extras={k: v[rows] for k, v in self.reward_extras.items()},
        )

    @staticmethod
    def concat(parts: Sequence["RolloutBatch"]) -> "RolloutBatch":
        """Rows of several generation batches (DAPO's dynamic sampling), each keeping its group id."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        with_rewards = all(p.rewards is not None for p in parts)
        extras = set.intersection(*(set(p.reward_extras) for p in parts))
        return RolloutBatch(
            group_ids=np.concatenate([p.group_ids for p in parts]),
            is_anchor=np.concatenate([p.is_anchor for p in parts]),
            sources=np.concatenate([p.sources for p in parts]),
            texts=[t for p in parts for t in p.texts],
            response_lengths=np.concatenate([p.response_lengths for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            samples=[s for p in parts for s in p.samples],
            payload=type(first.payload).concat([p.payload for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]) if with_rewards else None,
            reward_extras={k: np.concatenate([p.reward_extras[k] for p in parts]) for k in sorted(extras)},
        )


@dataclass(frozen=True)
class FocusRequest:
    """Faithful-MR1's reinforcing stage (``mars.perception.focus``): ``focus/attention`` (B, cells^2), each row's
    attention shares over a ``cells x cells`` grid of regions at ``layer`` (``attention``: its focus token's, or its
    response's from the focus token on), and ``focus/causal``
    (len(causal_rows), cells^2), the causal maps of the rows ``causal_rows`` (one masked copy per region)."""

    token: str = "<Focus>"
    layer: int = -1
    cells: int = 3
    causal_rows: tuple[int, ...] = ()
    attention: str = "focus"  # whose attention: the focus token's, or the response's from the focus token on


@dataclass(frozen=True)
class PerceptionRequest:
    """What a perception-aware method asks of the actor's old-log-prob pass, besides the log-probs.

    ``similarity``: VGPO's hidden-state similarity of each response token to the image (from the real forward);
    ``views``: altered images under which the sampled tokens' log-probs and the per-token KL to the real
    distribution are computed. Masks depend on (``seed``, ``step``, group id) only."""

    views: tuple[AlteredView, ...] = ()
    similarity: bool = False
    roles: bool = False  # SRPO: each response token's role (perception, reasoning, none) from the output's format
    focus: FocusRequest | None = None  # Faithful-MR1: focus attention per region, causal maps of the asked rows
    seed: int = 0
    step: int = 0


@dataclass(frozen=True)
class PerceptionLoss:
    """PAPO's term of the policy loss (``mars.perception.papo``): a second forward with gradient on ``view``."""

    view: AlteredView
    kl_coef: float
    entropy_coef: float
    seed: int = 0
    step: int = 0


@dataclass
class PolicyBatch:
    """What a policy update needs, besides the rows: per-token advantages and log-probs, (B, T) each."""

    rows: RolloutBatch
    advantages: torch.Tensor
    old_log_probs: torch.Tensor
    ref_log_probs: torch.Tensor | None
    perception_loss: PerceptionLoss | None = None


class Engine(Protocol):
    """What the training step needs from a backend."""

    def generate(self, requests: Sequence[RolloutRequest], max_new_tokens: int) -> RolloutBatch:
        """All requests in ONE generation call (multi-source rollouts and anchors together)."""

    def score(self, rows: RolloutBatch, shaping: bool = True) -> None:
        """Fill ``rows.rewards`` and ``rows.reward_extras`` (every row, anchors too) with the configured reward;
        ``shaping`` adds DAPO's overlong penalty where configured (off for validation)."""

    def response_mask(self, rows: RolloutBatch) -> torch.Tensor:
        """(B, T) float mask of the generated tokens, T the longest response of the batch."""

    def compute_log_probs(self, rows: RolloutBatch, model: str = "actor") -> torch.Tensor:
        """(B, T) log-probabilities of the generated tokens under the ``actor`` or the ``ref`` model."""

    def compute_log_probs_with_signals(
        self, rows: RolloutBatch, request: PerceptionRequest
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actor's (B, T) log-probs and the perception signals of ``request`` (``mars.hf.perception``), (B, T)
        each, keyed ``similarity``, ``log_probs/<view>``, ``kl/<view>``; no gradient."""

    def update_policy(self, batch: PolicyBatch) -> dict[str, float]:
        """One PPO update (mini-batches, micro-batches, verl's losses) on the rows; returns ``actor/*`` metrics."""
