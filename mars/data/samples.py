"""Training and validation prompts from parquet files in verl's RL schema (see docs/data_formats.md).

Every row is checked with ``mars.data.check.validate_row`` when the dataset is opened, before any model is
loaded: a bad row stops the run with the checker's message (``mars.on_bad_row=error``), or is skipped, counted
and logged (``skip``). Images are referenced by path and decoded by the engine, once per step.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

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


def load_samples(files: str | Sequence[str], on_bad_row: str = "error", max_pixels: int | None = None,
                 length_limit: Any = None) -> list[PromptSample]:
    """All valid rows of the files. Raises ``BadDataError`` on the first bad row unless ``on_bad_row='skip'``.
    ``length_limit`` (``mars.data.check.LengthLimit``) makes a prompt too long for the rollout a bad row too."""
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"mars.on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    files = [files] if isinstance(files, str) else list(files)
    kwargs: dict[str, Any] = {"length_limit": length_limit}
    if max_pixels is not None:
        kwargs["max_pixels"] = max_pixels
    samples = []
    skipped: dict[str, list] = {}  # problem kind -> [count, first message]
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
                entry = skipped.setdefault(getattr(problems[0], "kind", "bad_row"), [0, str(problems[0])])
                entry[0] += 1
                continue
            samples.append(row_to_sample(row))
    causes = [f"{count} row(s): {kind}, e.g. {first}" for kind, (count, first) in
              sorted(skipped.items(), key=lambda item: -item[1][0])]
    for cause in causes:  # one line per cause, with a count, not one per row
        logger.warning("skipped (mars.on_bad_row=skip) %s", cause)
    if not samples:
        raise BadDataError(f"no usable rows in {files}" + ("; skipped:\n  " + "\n  ".join(causes) if causes else ""))
    return samples


def run_seed(cfg: Any) -> int:
    """The run's seed: ``data.seed``, else verl's ``actor.data_loader_seed``, else 42."""
    if cfg.data.get("seed") is not None:
        return int(cfg.data.seed)
    return int(cfg.actor_rollout_ref.actor.get("data_loader_seed", 42))


def training_samples(cfg: Any, length_limit: Any = None) -> list[PromptSample]:
    """``data.train_files`` as the trainer sees them (checked rows, ``data.train_max_samples``)."""
    samples = load_samples(cfg.data.train_files, str(cfg.mars.get("on_bad_row", "error")), length_limit=length_limit)
    limit = int(cfg.data.get("train_max_samples", -1) or -1)
    return samples[:limit] if limit > 0 else samples
