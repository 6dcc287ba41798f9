"""The step's stream of prompts: batches drawn for at most ``trainer.total_epochs`` passes over the data.

One stream for both engines. Position is counted in batches drawn (DAPO's dynamic sampling draws several per step),
so the epoch follows from that count, never from the step number, and a resumed run continues from the same batch:
    local   ``PromptSampler``: seeded permutations of the samples, one per epoch (its state: the batches drawn)
    verl    ``PromptStream`` over verl's train dataloader (whose own state verl checkpoints)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mars.data.samples import PromptSample


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


class PromptStream:
    """The step's ``next_prompts``: batches from ``open_epoch(epoch, skip)``, for at most ``max_epochs`` passes.

    ``open_epoch`` returns an iterator over the batches of one epoch, starting after its first ``skip`` batches; when
    it runs dry the next epoch is opened. ``convert`` turns a drawn batch into the step's prompts. ``batches`` (drawn
    since the run began, resumed runs included) is the whole position: it is what a checkpoint saves."""

    def __init__(self, open_epoch: Callable[[int, int], Iterator[Any]], batches_per_epoch: int,
                 max_epochs: int | None = None, batches: int = 0, convert: Callable[[Any], list] = list):
        self.open_epoch = open_epoch
        self.batches_per_epoch = max(int(batches_per_epoch), 1)
        self.max_epochs = max_epochs
        self.batches = int(batches)
        self.convert = convert
        self._current: Iterator[Any] | None = None

    @property
    def epoch(self) -> int:
        """The epoch of the last batch drawn, from 0 (verl's ``training/epoch``)."""
        return max(self.batches - 1, 0) // self.batches_per_epoch

    def next_batch(self) -> list:
        exhausted = epochs_used_up(self.max_epochs, self.batches, self.batches_per_epoch)
        if exhausted is not None:
            raise exhausted
        if self._current is None:
            self._current = self.open_epoch(*divmod(self.batches, self.batches_per_epoch))
        try:
            batch = next(self._current)
        except StopIteration:  # an epoch ended (or a restored position was at its end): the next one starts
            self._current = self.open_epoch(-(-self.batches // self.batches_per_epoch), 0)
            batch = next(self._current)
        self.batches += 1
        return self.convert(batch)

    __call__ = next_batch

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if "batches" not in state:  # a local checkpoint of an older MARS: (epoch, position in samples)
            state = {"batches": int(state["epoch"]) * self.batches_per_epoch + int(state["position"]) // getattr(
                self, "batch_size", 1)}
        self.batches, self._current = int(state["batches"]), None


class PromptSampler(PromptStream):
    """Batches of prompts in a seeded order, reshuffled every epoch; a batch never spans two epochs (the tail of an
    epoch is dropped). The order of epoch e depends on (seed, e) only, so the position alone resumes it."""

    def __init__(self, samples: Sequence[PromptSample], batch_size: int, seed: int, shuffle: bool = True,
                 max_epochs: int | None = None):
        if batch_size > len(samples):
            raise ValueError(f"data.train_batch_size={batch_size} is larger than the dataset ({len(samples)} rows)")
        self.samples, self.batch_size, self.seed, self.shuffle = samples, batch_size, seed, shuffle
        super().__init__(self._epoch_batches, len(samples) // batch_size, max_epochs)

    def _epoch_batches(self, epoch: int, skip: int) -> Iterator[list[PromptSample]]:
        order = (np.random.default_rng([self.seed, epoch]).permutation(len(self.samples)) if self.shuffle
                 else np.arange(len(self.samples)))
        for b in range(skip, self.batches_per_epoch):
            yield [self.samples[i] for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
