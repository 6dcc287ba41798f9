"""The one row schema MARS datasets use: verl's RL parquet schema plus a source name per image.

A row (documented in ``docs/data_formats.md``)::

    data_source   "mars_synth/ir_grounding", "llvip", ...
    prompt        [{"role": "user", "content": "<image><image>Question ... Output the thinking ..."}]
    images        [{"image": "data/x/images/000000_visible.png", "source": "visible"}, ...]  (prompt order)
    ability       "grounding" | "vqa"
    reward_model  {"style": "rule", "ground_truth": "<answer>[[x1, y1, x2, y2]]</answer>" | "<answer>Yes</answer>"}
    extra_info    {index, split, task, image_sources, answer_sources, image_size, coord_format, reward,
                   scenario, prompt_suffix, reference_extra_info}

verl's ``RLHFDataset`` turns each ``images`` dict into a chat part ``{"type": "image", **dict}``, so the
``source`` key reaches the chat messages, where ``mars.anchors`` reads it. Every writer here uses the same
explicit Arrow schema, so parquet files of different tasks (synthetic or converted) can be concatenated by
verl (``datasets.concatenate_datasets`` refuses files whose features differ).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

# numpy containers from parquet -> plain lists/dicts: one converter for the whole project (re-exported here)
from mars.rewards.parsing import to_plain  # noqa: F401

GROUNDING = "grounding"
VQA = "vqa"
REWARDS = (GROUNDING, VQA)
IMAGE_PLACEHOLDER = "<image>"
SOURCE_KEY = "source"  # the key mars.anchors reads from each image part; do not rename
SPLITS = ("train", "val", "test")
ABSOLUTE = "absolute"

# Appended to every question (after one space) so that the format part of the rewards can be earned.
FORMAT_INSTRUCTION = (
    "Output the thinking process in <think> </think> and the final answer in <answer> </answer> tags."
)

EXTRA_INFO_TYPE = pa.struct(
    [
        ("index", pa.int64()),
        ("split", pa.string()),
        ("task", pa.string()),
        ("image_sources", pa.list_(pa.string())),
        ("answer_sources", pa.list_(pa.string())),  # [] = not known (converted data)
        ("image_size", pa.list_(pa.int64())),  # [W, H] of the images (null when unreadable at conversion)
        ("coord_format", pa.string()),
        ("reward", pa.string()),
        ("scenario", pa.string()),  # task-specific condition of the sample ("dark", "size_misleading", ...)
        ("prompt_suffix", pa.string()),  # exact text appended to the question ("" = none)
        ("reference_extra_info", pa.string()),  # JSON of the reference item's extra_info ("" = it had none)
        ("regions", pa.list_(pa.list_(pa.float64()))),  # [[x1, y1, x2, y2], ...] in image pixels where the
        # objects the question is about are, in every image of the row ([] = not known); Faithful-MR1's anchoring
    ]
)
ROW_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("image", pa.string()), (SOURCE_KEY, pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", EXTRA_INFO_TYPE),
    ]
)
EXTRA_INFO_KEYS = tuple(field.name for field in EXTRA_INFO_TYPE)


def make_row(
    *,
    data_source: str,
    question: str,
    images: list[tuple[str, str]],
    reward: str,
    ground_truth: Any,
    index: int,
    split: str,
    task: str,
    answer_sources: Iterable[str] = (),
    image_size: Optional[tuple[int, int]] = None,
    coord_format: str = ABSOLUTE,
    scenario: str = "",
    prompt_suffix: str = " " + FORMAT_INSTRUCTION,
    reference_extra_info: str = "",
    question_has_placeholders: bool = False,
    regions: Iterable[Sequence[float]] = (),
) -> dict[str, Any]:
    """One row. ``images`` is [(path, source name)] in prompt order; ``ground_truth`` is the plain answer (a
    box list for grounding, a string for VQA) and is wrapped as ``<answer>...</answer>`` here.

    The prompt is ``"<image>" * len(images) + question + prompt_suffix`` unless ``question_has_placeholders``
    says the question already places them (converted data with text between images).
    """
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    placeholders = "" if question_has_placeholders else IMAGE_PLACEHOLDER * len(images)
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": placeholders + question + prompt_suffix}],
        "images": [{"image": path, SOURCE_KEY: source} for path, source in images],
        "ability": reward,
        "reward_model": {"style": "rule", "ground_truth": wrap_ground_truth(ground_truth, reward)},
        "extra_info": {
            "index": int(index),
            "split": split,
            "task": task,
            "image_sources": [source for _, source in images],
            "answer_sources": list(answer_sources),
            "image_size": None if image_size is None else [int(image_size[0]), int(image_size[1])],
            "coord_format": coord_format,
            "reward": reward,
            "scenario": scenario,
            "prompt_suffix": prompt_suffix,
            "reference_extra_info": reference_extra_info,
            "regions": [[float(v) for v in box] for box in regions],
        },
    }


def wrap_ground_truth(ground_truth: Any, reward: str) -> str:
    """``<answer>[[x1, y1, x2, y2], ...]</answer>`` (JSON) for grounding, ``<answer>Yes</answer>`` for VQA."""
    if reward == GROUNDING:
        return f"<answer>{json.dumps(ground_truth)}</answer>"
    return f"<answer>{ground_truth}</answer>"


def unwrap_answer(text: str) -> str:
    """The text inside ``<answer>...</answer>`` (the whole text, stripped, when there is no such block)."""
    text = str(text)
    start = text.find("<answer>")
    end = text.find("</answer>", start + 1) if start >= 0 else -1
    if start >= 0 and end >= 0:
        return text[start + len("<answer>") : end].strip()
    return text.strip()


def parse_ground_truth(ground_truth: Any, reward: str) -> tuple[Any, Optional[str]]:
    """``(value, None)`` when the ground truth is valid for ``reward``, else ``(None, reason)``.

    grounding: a list (or JSON list, optionally in ``<answer>``) of [x1, y1, x2, y2] with finite numbers,
    x1 < x2 and y1 < y2; an empty list (no objects) is valid. vqa: a non-empty string (optionally in
    ``<answer>``); numbers are accepted and written out.
    """
    ground_truth = to_plain(ground_truth)
    if reward == VQA:
        if isinstance(ground_truth, (int, float)) and not isinstance(ground_truth, bool):
            ground_truth = str(ground_truth)
        if not isinstance(ground_truth, str):
            return None, f"a VQA answer must be a string, got {type(ground_truth).__name__}"
        answer = unwrap_answer(ground_truth)
        return (answer, None) if answer else (None, "the VQA answer is empty")
    if isinstance(ground_truth, str):
        try:
            ground_truth = json.loads(unwrap_answer(ground_truth))
        except ValueError as exc:
            return None, f"the grounding answer is not a JSON box list ({exc}): {ground_truth[:80]!r}"
    if not isinstance(ground_truth, list):
        return None, f"grounding ground truth must be a list of [x1, y1, x2, y2] boxes, got {ground_truth!r:.80}"
    for k, box in enumerate(ground_truth):
        problem = box_problem(box)
        if problem:
            return None, f"box {k} {box!r:.60}: {problem}"
    return ground_truth, None


def box_problem(box: Any) -> Optional[str]:
    """Why ``box`` is not a valid [x1, y1, x2, y2] box, or None."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return "a box must be a list of 4 numbers [x1, y1, x2, y2]"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in box):
        return "box coordinates must be finite numbers"
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        return "needs x1 < x2 and y1 < y2 (corners top-left then bottom-right)"
    return None


def infer_reward(ground_truth: Any) -> str:
    """``grounding`` for a box list (or a JSON/<answer> string holding one), ``vqa`` for anything else."""
    value = to_plain(ground_truth)
    if isinstance(value, list):
        return VQA if value and all(isinstance(item, str) for item in value) else GROUNDING
    if isinstance(value, str):
        inner = unwrap_answer(value)
        if inner.startswith("["):
            parsed, problem = parse_ground_truth(inner, GROUNDING)
            if problem is None:
                return GROUNDING
    return VQA


def write_parquet(rows: list[dict[str, Any]], path: str) -> None:
    """Write rows with ``ROW_SCHEMA`` (byte-identical output for identical rows)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    pq.write_table(table, path, compression="zstd")


def read_parquet_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a parquet file as plain Python dicts and lists (no numpy)."""
    return pq.read_table(path).to_pylist()


def prompt_texts(prompt: Any) -> list[str]:
    """The string contents of a prompt's messages (verl only expands placeholders in string contents)."""
    prompt = to_plain(prompt)
    if not isinstance(prompt, list):
        return []
    return [m["content"] for m in prompt if isinstance(m, dict) and isinstance(m.get("content"), str)]


def count_placeholders(prompt: Any) -> int:
    """Number of ``<image>`` placeholders over all the prompt's string message contents."""
    return sum(text.count(IMAGE_PLACEHOLDER) for text in prompt_texts(prompt))
