"""verl's training batches as the step's prompts, and the image-count check behind the scripts' NUM_IMAGE.

verl's ``RLHFDataset`` hands out each parquet row with ``raw_prompt``: the chat messages with one
``{"type": "image", "image": PATH, "source": NAME}`` part per ``<image>`` (the ``source`` key comes from the row's
``images`` entries, see docs/data_formats.md). The step needs those messages, the source names and the reward
inputs; everything else in the row (``reward_model``, ``ability``, ``tools_kwargs``, ...) rides along untouched in
``VerlPromptSample.row`` so that verl's agent loop and reward manager see the same fields as in plain verl.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from mars.data.samples import PromptSample

# Row fields that the verl engine replaces per request (the variant's messages, the group id).
REPLACED_FIELDS = ("raw_prompt", "prompt", "uid")


@dataclass(frozen=True)
class VerlPromptSample(PromptSample):
    """A prompt of verl's dataloader; ``row`` holds the dataset row's other fields, passed on to verl as they are."""

    row: dict[str, Any] = field(default_factory=dict)


def image_parts(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The image parts of chat messages, in prompt order."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts += [p for p in content if isinstance(p, dict) and p.get("type") == "image"]
    return parts


def source_names(messages: Sequence[dict[str, Any]], extra_info: dict[str, Any]) -> list[str]:
    """Each image's source name: the parts' ``source`` keys, else ``extra_info["image_sources"]``; [] if unknown."""
    parts = image_parts(messages)
    names = [p.get("source") for p in parts]
    if parts and all(isinstance(n, str) and n for n in names):
        return names
    fallback = extra_info.get("image_sources")
    if fallback is not None and len(fallback) == len(parts):
        return [str(n) for n in fallback]
    return []


def check_image_counts(counts: Iterable[int], expected: int | None, where: str) -> None:
    """Every sample must show ``expected`` images (the launch scripts' NUM_IMAGE); None skips the check."""
    if expected is None:
        return
    histogram = Counter(int(c) for c in counts)
    wrong = {count: n for count, n in sorted(histogram.items()) if count != expected}
    if wrong:
        found = ", ".join(f"{n} with {count}" for count, n in wrong.items())
        raise ValueError(
            f"{where}: mars.expected_num_images={expected} (the launch script's NUM_IMAGE), but the data has samples "
            f"with another number of images ({found}). Pass the number of images your samples have, or `any` when "
            f"they differ on purpose (MARS reads each sample's sources from the data)."
        )


def expected_num_images(mars_cfg: Any) -> int | None:
    """``mars.expected_num_images`` as an int, or None when it is unset, null or ``any``."""
    value = mars_cfg.get("expected_num_images", None) if mars_cfg is not None else None
    if value is None or str(value).lower() in ("any", "none", "null", ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"mars.expected_num_images must be a positive integer or `any`, got {value!r}") from None
    if number < 1:
        raise ValueError(f"mars.expected_num_images must be a positive integer or `any`, got {value!r}")
    return number


def dataset_image_counts(dataset: Any) -> list[int] | None:
    """Images per row of a verl ``RLHFDataset`` read from its ``images`` column (no image is opened); None if the
    dataset has no such column (a custom dataset class)."""
    frame = getattr(dataset, "dataframe", None)
    key = getattr(dataset, "image_key", "images")
    if frame is None or key not in getattr(frame, "column_names", ()):
        return None
    return [len(images or []) for images in frame[key]]


def samples_from_batch(batch: dict[str, Any], expected_images: int | None = None) -> list[VerlPromptSample]:
    """A collated verl batch (``RLHFDataset`` + ``collate_fn``) -> one ``VerlPromptSample`` per row."""
    if "raw_prompt" not in batch:
        raise KeyError(
            "verl's batch has no `raw_prompt`: the MARS verl engine needs the chat messages (keep "
            "data.return_raw_chat=true and verl's RLHFDataset, or a dataset class that returns raw_prompt)"
        )
    columns = {k: v for k, v in batch.items() if isinstance(v, np.ndarray) and k not in REPLACED_FIELDS}
    samples = []
    for i, messages in enumerate(batch["raw_prompt"]):
        messages = list(messages)
        row = {key: values[i] for key, values in columns.items()}
        extra_info = dict(row.get("extra_info") or {})
        reward_model = row.get("reward_model") or {}
        where = f"sample index={extra_info.get('index', i)} of {row.get('data_source', '?')}"
        num_images = len(image_parts(messages))
        check_image_counts([num_images], expected_images, where)
        sources = source_names(messages, extra_info)
        if num_images >= 2 and not sources:
            raise ValueError(
                f"{where}: its {num_images} images have no source names. Each entry of the parquet `images` column "
                f"needs a `source` (e.g. visible, infrared): convert the data with `mars data convert to-parquet` and "
                f"check it with `mars data check`"
            )
        samples.append(
            VerlPromptSample(
                messages=messages,
                sources=sources,
                ground_truth=reward_model.get("ground_truth") if isinstance(reward_model, dict) else None,
                data_source=str(row.get("data_source", "")),
                extra_info=extra_info,
                index=int(row.get("index", extra_info.get("index", i)) or 0),
                row=row,
            )
        )
    return samples
