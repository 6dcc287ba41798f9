"""Training and validation prompts from parquet files in verl's RL schema (see docs/data_formats.md).

Every row is checked with ``mars.data.check.validate_row`` when the dataset is opened, before any model is
loaded: a bad row stops the run with the checker's message (``mars.on_bad_row=error``), or is skipped, counted
and logged (``skip``). Images are referenced by path and decoded by the engine, once per step.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from mars.data.check import validate_row
from mars.data.schema import IMAGE_PLACEHOLDER, SOURCE_KEY, to_plain

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSample:
    """One prompt as the step sees it: chat messages with image parts, and what its reward needs."""

    messages: list[dict[str, Any]]
    sources: list[str]
    ground_truth: Any
    data_source: str
    extra_info: dict[str, Any] = field(default_factory=dict)
    index: int = 0


class BadDataError(ValueError):
    """A dataset row failed validation; the message is the checker's, naming the file, the row and the fix."""


def row_to_sample(row: dict[str, Any]) -> PromptSample:
    """A parquet row -> a PromptSample: each ``<image>`` becomes ``{"type": "image", "image": path, "source": name}``."""
    images = list(row.get("images") or [])
    messages, used = [], 0
    for message in row["prompt"]:
        content = message["content"]
        if not isinstance(content, str) or IMAGE_PLACEHOLDER not in content:
            messages.append(dict(message))
            continue
        parts = []
        for piece in re.split(f"({re.escape(IMAGE_PLACEHOLDER)})", content):
            if piece == IMAGE_PLACEHOLDER:
                parts.append({"type": "image", **images[used]})
                used += 1
            elif piece:
                parts.append({"type": "text", "text": piece})
        messages.append({**message, "content": parts})
    extra_info = dict(row.get("extra_info") or {})
    return PromptSample(
        messages=messages,
        sources=[image[SOURCE_KEY] for image in images],
        ground_truth=row["reward_model"]["ground_truth"],
        data_source=row.get("data_source", ""),
        extra_info=extra_info,
        index=int(extra_info.get("index", 0) or 0),
    )


def load_samples(files: str | Sequence[str], on_bad_row: str = "error", max_pixels: int | None = None) -> list[PromptSample]:
    """All valid rows of the files. Raises ``BadDataError`` on the first bad row unless ``on_bad_row='skip'``."""
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"mars.on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    files = [files] if isinstance(files, str) else list(files)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    samples, skipped = [], 0
    for path in files:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001
            raise BadDataError(f"{path}: cannot read the parquet file ({exc}); run `mars data check {path}`") from exc
        for index, row in enumerate(frame.to_dict("records")):
            row = to_plain(row)
            problems = validate_row(row, row_index=index, file=path, **kwargs)
            if problems:
                if on_bad_row == "error":
                    raise BadDataError(
                        f"{problems[0]}\n(run `mars data check {path}` for every bad row, or set mars.on_bad_row=skip)"
                    )
                skipped += 1
                logger.warning("skipping bad row: %s", problems[0])
                continue
            samples.append(row_to_sample(row))
    if skipped:
        logger.warning("skipped %d bad rows of %s (mars.on_bad_row=skip)", skipped, files)
    if not samples:
        raise BadDataError(f"no usable rows in {files}")
    return samples


class DataExhausted(RuntimeError):
    """The prompts of ``trainer.total_epochs`` passes over the training data are used up.

    One rule on every engine (verl's ``RayPPOTrainer.fit`` and its DAPO recipe): a run ends at
    ``trainer.total_training_steps`` or when the data of ``trainer.total_epochs`` epochs is drawn, whichever comes
    first. DAPO's dynamic sampling draws several batches per step, so there the data usually ends the run; the step
    that runs out is not trained on."""


def epochs_used_up(max_epochs: int | None, batches_drawn: int, batches_per_epoch: int) -> DataExhausted | None:
    """The exception to raise before drawing another batch, or None while the data lasts."""
    if max_epochs is None or batches_drawn < max_epochs * batches_per_epoch:
        return None
    return DataExhausted(
        f"the training data is used up: {batches_drawn} batches = trainer.total_epochs={max_epochs} x "
        f"{batches_per_epoch} batches per epoch (raise trainer.total_epochs to train on)"
    )


class PromptSampler:
    """Batches of prompts in a seeded order, reshuffled every epoch; its state is two integers (resumable)."""

    def __init__(self, samples: Sequence[PromptSample], batch_size: int, seed: int, shuffle: bool = True,
                 max_epochs: int | None = None):
        if batch_size > len(samples):
            raise ValueError(f"data.train_batch_size={batch_size} is larger than the dataset ({len(samples)} rows)")
        self.samples = samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.max_epochs = max_epochs  # trainer.total_epochs: next_batch raises DataExhausted after that many
        self.epoch = 0
        self.position = 0

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.samples))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))

    def next_batch(self) -> list[PromptSample]:
        """The next ``batch_size`` prompts; a batch never spans two epochs (the tail of an epoch is dropped)."""
        per_epoch = len(self.samples) // self.batch_size
        drawn = self.epoch * per_epoch + self.position // self.batch_size
        exhausted = epochs_used_up(self.max_epochs, drawn, per_epoch)
        if exhausted is not None:
            raise exhausted
        if self.position + self.batch_size > len(self.samples):
            self.epoch += 1
            self.position = 0
        order = self._order()[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return [self.samples[i] for i in order]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[list[PromptSample]]:
        while True:
            yield self.next_batch()
