"""Converters between the formats MARS users meet (fields: ``docs/data_formats.md``).

- reference question JSON (the authors' evaluation files) -> training/eval parquet in the MARS row schema;
- parquet -> reference question JSON (what ``evaluation/qwen_inference.sh`` reads); JSON -> parquet -> JSON
  gives back the same items;
- parquet -> LLaMA-Factory's multimodal SFT JSON, for the cold-start SFT before RL.

A reference item is ``{"role": "user", "content": [{"type": "image", "image": PATH}, ..., {"type": "text",
"text": Q}], "ground_truth": GT, "extra_info": {...}}`` (extra_info optional). Image parts may carry a
``"source"`` key, which then names the source; otherwise the name is inferred from the path
(``infer_source_names``) unless ``sources`` is given.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import PurePosixPath
from typing import Any, Iterable, Optional, Sequence

from PIL import Image

from mars.data import schema

# A nuScenes camera name anywhere in the path (folder "samples/CAM_FRONT/" or file "...__CAM_BACK_LEFT__...").
_CAMERA = re.compile(r"CAM_(?:FRONT|BACK)(?:_LEFT|_RIGHT)?(?![A-Za-z])")
# Folders that name a modality (LLVIP keeps visible/ and infrared/ side by side).
_MODALITY_FOLDERS = {
    "visible": "visible",
    "rgb": "rgb",
    "infrared": "infrared",
    "ir": "infrared",
    "lwir": "infrared",
    "thermal": "infrared",
    "depth": "depth",
}
# SpatialQA keeps each depth map in a sibling folder with this suffix ("existence_d/").
_DEPTH_FOLDER_SUFFIXES = ("_d", "_depth")
# Stored in extra_info["reference_extra_info"] for a reference item that had no extra_info key at all.
NO_EXTRA_INFO = "null"
_PLURALS = {"person": "people"}


# ---------------------------------------------------------------------------------------------- source names


def infer_source_names(paths: Sequence[str]) -> list[str]:
    """Source names for one sample's image paths, by the first rule that gives distinct names for all:

    1. a camera name in the path (``CAM_FRONT`` ... ``CAM_BACK_RIGHT``: nuScenes);
    2. a folder named after a modality (``visible``, ``infrared``/``ir``/``thermal``, ``rgb``, ``depth``: LLVIP);
    3. a folder ending in ``_d``/``_depth`` is ``depth``, the one other image ``rgb`` (SpatialQA);
    4. OCR-VQA paths: ``page_1``, ``page_2``, ...;
    5. a modality as the file name's last ``_`` part (``000123_infrared.png``: the synthetic tasks' files);
    6. otherwise ``image_0``, ``image_1``, ...
    """
    posix = [str(p).replace("\\", "/") for p in paths]
    folders = [PurePosixPath(p).parts[:-1] for p in posix]
    candidates = [
        [(_CAMERA.findall(p) or [None])[-1] for p in posix],
        [next((_MODALITY_FOLDERS[f.lower()] for f in reversed(fs) if f.lower() in _MODALITY_FOLDERS), None)
         for fs in folders],
    ]
    depth_flags = [bool(fs) and fs[-1].lower().endswith(_DEPTH_FOLDER_SUFFIXES) for fs in folders]
    if sum(depth_flags) == 1 and len(paths) == 2:
        candidates.append(["depth" if flag else "rgb" for flag in depth_flags])
    if any("ocr" in p.lower() for p in posix):
        candidates.append([f"page_{k + 1}" for k in range(len(paths))])
    candidates.append([_MODALITY_FOLDERS.get(PurePosixPath(p).stem.rsplit("_", 1)[-1].lower()) for p in posix])
    for names in candidates:
        if all(names) and len(set(names)) == len(names):
            return list(names)
    return [f"image_{k}" for k in range(len(paths))]


def parse_sources_option(text: Optional[str]) -> Optional[list[str]]:
    """``"visible,infrared"`` -> ["visible", "infrared"]; None/"" -> None."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"--sources needs distinct, non-empty names separated by commas, got {text!r}")
    return names


# ---------------------------------------------------------------------------------- reference JSON -> parquet


def load_reference_json(path: str) -> list[dict[str, Any]]:
    """The items of a reference question file (a JSON list of user messages)."""
    with open(path, encoding="utf-8") as fh:
        try:
            items = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of question items, got {type(items).__name__}")
    return items


def dataset_name(path: str) -> str:
    """``.../llvip_eval.json`` -> ``llvip``: the file stem, lower-case, without a trailing split word."""
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    return re.sub(r"[_\-.](eval|test|val|valid|train)$", "", stem) or stem


def split_of(path: str) -> str:
    """``train``, ``val`` or ``test`` from the file name (eval/test files are test); default ``train``."""
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    if re.search(r"(eval|test)", stem):
        return "test"
    return "val" if re.search(r"val", stem) else "train"


def read_image_size(path: str, base_dir: Optional[str] = None) -> Optional[tuple[int, int]]:
    """(width, height) from the image header, or None when the file cannot be opened."""
    full = path if base_dir is None or os.path.isabs(path) else os.path.join(base_dir, path)
    try:
        with Image.open(full) as image:
            return image.size
    except (OSError, ValueError):
        return None


def reference_item_to_row(
    item: Any,
    index: int,
    *,
    data_source: str,
    split: str = "train",
    sources: Optional[Sequence[str]] = None,
    instruction: bool = True,
    coord_format: str = schema.ABSOLUTE,
    base_dir: Optional[str] = ".",
    validate_ground_truth: bool = True,
) -> dict[str, Any]:
    """One reference item as a MARS row; raises ValueError naming item ``index`` and what is wrong.

    ``instruction`` appends the think/answer format instruction to the question (recorded in
    ``extra_info["prompt_suffix"]`` so the reverse converter can strip it). ``base_dir`` is where relative
    image paths are read from to record ``image_size`` (None: do not open images). ``validate_ground_truth=
    False`` keeps a bad ground truth as it is (the dataset checker then reports it with the item's other
    problems).
    """
    where = f"item {index}"
    if not isinstance(item, dict) or not isinstance(item.get("content"), list):
        raise ValueError(f"{where}: expected {{'role': 'user', 'content': [...], 'ground_truth': ...}}")
    if "ground_truth" not in item:
        raise ValueError(f"{where}: no 'ground_truth' key")
    text, images, given = "", [], []
    for k, part in enumerate(item["content"]):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image" and isinstance(part.get("image"), str) and part["image"]:
            images.append(part["image"])
            given.append(part.get(schema.SOURCE_KEY))
            text += schema.IMAGE_PLACEHOLDER
        elif kind == "text" and isinstance(part.get("text"), str):
            if schema.IMAGE_PLACEHOLDER in part["text"]:
                raise ValueError(f"{where}: the text contains a literal {schema.IMAGE_PLACEHOLDER}; remove it")
            text += part["text"]
        else:
            raise ValueError(f"{where}: content part {k} is neither an image path nor a text part: {part!r:.100}")
    if not images:
        raise ValueError(f"{where}: no image parts")
    names = _source_names(where, images, given, sources)
    ground_truth = schema.to_plain(item["ground_truth"])
    reward = schema.infer_reward(ground_truth)
    value, problem = schema.parse_ground_truth(ground_truth, reward)
    if problem and validate_ground_truth:
        raise ValueError(f"{where}: bad ground truth: {problem}")
    suffix = " " + schema.FORMAT_INSTRUCTION if instruction else ""
    if suffix and text.endswith(suffix):  # a question exported with its instruction (to-json): not a second one
        text = text[: -len(suffix)]
    extra = item.get("extra_info")
    reference_extra = NO_EXTRA_INFO if "extra_info" not in item else json.dumps(extra, ensure_ascii=False)
    row = schema.make_row(
        data_source=data_source,
        question=text,
        question_has_placeholders=True,
        images=list(zip(images, names)),
        reward=reward,
        ground_truth=ground_truth if problem else value,
        index=index,
        split=split,
        task=data_source,
        image_size=read_image_size(images[0], base_dir) if base_dir is not None else None,
        coord_format=coord_format,
        prompt_suffix=suffix,
        reference_extra_info=reference_extra,
    )
    if problem:  # only reached with validate_ground_truth=False: keep the raw value for the checker to report
        row["reward_model"]["ground_truth"] = ground_truth
    return row


def _source_names(where: str, images: list[str], given: list[Any], sources: Optional[Sequence[str]]) -> list[str]:
    if sources is not None:
        if len(sources) != len(images):
            raise ValueError(f"{where}: {len(images)} images but --sources names {len(sources)}: {list(sources)}")
        return list(sources)
    if all(isinstance(name, str) and name for name in given):
        if len(set(given)) != len(given):
            raise ValueError(f"{where}: the image parts' source names repeat: {given}")
        return list(given)
    return infer_source_names(images)


def reference_json_to_rows(
    items: Iterable[Any], *, data_source: str, split: str = "train", **options: Any
) -> list[dict[str, Any]]:
    return [
        reference_item_to_row(item, k, data_source=data_source, split=split, **options)
        for k, item in enumerate(items)
    ]


def reference_json_to_parquet(
    json_path: str,
    out_path: str,
    *,
    data_source: Optional[str] = None,
    split: Optional[str] = None,
    sources: Optional[Sequence[str]] = None,
    instruction: bool = True,
    coord_format: str = schema.ABSOLUTE,
    base_dir: Optional[str] = ".",
) -> list[dict[str, Any]]:
    """Convert a reference question file to parquet; returns the rows written.

    Defaults: ``data_source`` from the file name (``llvip_eval.json`` -> ``llvip``), ``split`` from it too
    (eval/test -> test), source names inferred per item, image sizes read relative to ``base_dir`` (the
    directory the paths are relative to: the repository root for the reference files).
    """
    name = data_source or dataset_name(json_path)
    rows = reference_json_to_rows(
        load_reference_json(json_path),
        data_source=name,
        split=split or split_of(json_path),
        sources=sources,
        instruction=instruction,
        coord_format=coord_format,
        base_dir=base_dir,
    )
    warn_mixed_sources(rows, json_path)
    schema.write_parquet(rows, out_path)
    return rows


def warn_mixed_sources(rows: Sequence[dict[str, Any]], label: str) -> None:
    """Print a warning when rows with the same number of images got different source names."""
    by_count: dict[int, Counter] = {}
    for row in rows:
        names = tuple(image[schema.SOURCE_KEY] for image in row["images"])
        by_count.setdefault(len(names), Counter())[names] += 1
    for count, patterns in by_count.items():
        if len(patterns) > 1:
            shown = "; ".join(f"{list(p)} x{n}" for p, n in patterns.most_common(3))
            print(
                f"warning: {label}: samples with {count} images have {len(patterns)} different source name lists "
                f"({shown}); pass --sources to name them uniformly",
                file=sys.stderr,
            )


# ---------------------------------------------------------------------------------- parquet -> reference JSON


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of one parquet file as plain Python objects."""
    if not path.endswith(".parquet"):
        raise ValueError(f"{path}: expected a .parquet file")
    return schema.read_parquet_rows(path)


def row_reward(row: dict[str, Any]) -> str:
    """The reward a row declares (extra_info.reward, else ability), else the one its ground truth implies."""
    extra = row.get("extra_info") or {}
    for declared in (extra.get("reward"), row.get("ability")):
        if declared in schema.REWARDS:
            return declared
    return schema.infer_reward((row.get("reward_model") or {}).get("ground_truth"))


def user_text(row: dict[str, Any]) -> str:
    """The content of the row's (last) user message, the one that holds the image placeholders."""
    prompt = schema.to_plain(row.get("prompt")) or []
    users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)]
    if not users:
        raise ValueError(f"row {row.get('extra_info', {}).get('index')}: the prompt has no user message with text")
    return users[-1]["content"]


def row_to_reference_item(
    row: dict[str, Any], *, include_sources: bool = False, keep_instruction: bool = True
) -> dict[str, Any]:
    """One row as a reference question item (the inverse of ``reference_item_to_row``).

    The question is the training prompt's text: the format instruction recorded in ``extra_info["prompt_suffix"]``
    stays, so that a model is asked at inference what it was trained on (without it, a tiny model's answers do not
    parse at all); ``keep_instruction=False`` strips it (for a reference file that had none). ``include_sources`` adds each image part's ``"source"`` key. The item's
    ``extra_info`` is the reference one for converted rows, and a summary (index, task, scenario, sources) for
    synthetic rows.
    """
    row = schema.to_plain(row)
    extra = row.get("extra_info") or {}
    text = user_text(row)
    suffix = extra.get("prompt_suffix") or ""
    if suffix and not keep_instruction and text.endswith(suffix):
        text = text[: -len(suffix)]
    images = row.get("images") or []
    content, k = [], 0
    for segment in re.split(f"({re.escape(schema.IMAGE_PLACEHOLDER)})", text):
        if segment == schema.IMAGE_PLACEHOLDER:
            if k >= len(images):
                raise ValueError(f"row {extra.get('index')}: more {schema.IMAGE_PLACEHOLDER} placeholders than images")
            image = images[k]
            part = {"type": "image", "image": image["image"] if isinstance(image, dict) else image}
            if include_sources and isinstance(image, dict) and image.get(schema.SOURCE_KEY):
                part[schema.SOURCE_KEY] = image[schema.SOURCE_KEY]
            content.append(part)
            k += 1
        elif segment:
            content.append({"type": "text", "text": segment})
    reward = row_reward(row)
    value, problem = schema.parse_ground_truth((row.get("reward_model") or {}).get("ground_truth"), reward)
    if problem:
        raise ValueError(f"row {extra.get('index')}: bad ground truth: {problem}")
    item: dict[str, Any] = {"role": "user", "content": content, "ground_truth": value}
    reference_extra = extra.get("reference_extra_info") or ""
    if reference_extra and reference_extra != NO_EXTRA_INFO:
        item["extra_info"] = json.loads(reference_extra)
    elif not reference_extra:
        keys = ("index", "task", "scenario", "image_sources", "answer_sources")
        item["extra_info"] = {key: extra.get(key) for key in keys if key in extra}
    return item


def write_json(items: Any, path: str) -> None:
    """JSON with the reference files' layout (4-space indent, UTF-8 kept as is)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(items, fh, indent=4, ensure_ascii=False)
        fh.write("\n")


def parquet_to_reference_json(
    parquet_path: str, out_path: str, *, include_sources: bool = False, keep_instruction: bool = True
) -> list[dict[str, Any]]:
    items = [
        row_to_reference_item(row, include_sources=include_sources, keep_instruction=keep_instruction)
        for row in read_rows(parquet_path)
    ]
    write_json(items, out_path)
    return items


# ----------------------------------------------------------------------------- parquet -> LLaMA-Factory SFT


def sft_assistant_text(row: dict[str, Any], label: str = "person", perception_block: bool = False) -> str:
    """A target answer ``<think>...</think><answer>...</answer>`` built from the ground truth; with
    ``perception_block``, SRPO's format: ``<perception>...</perception>`` first, what the decisive images show.

    The thinking names the sources that carry the answer when the row records them (synthetic data), which
    is the habit MARS rewards: read the decisive source, not the fused noise.
    """
    row = schema.to_plain(row)
    extra = row.get("extra_info") or {}
    reward = row_reward(row)
    value, problem = schema.parse_ground_truth((row.get("reward_model") or {}).get("ground_truth"), reward)
    if problem:
        raise ValueError(f"row {extra.get('index')}: bad ground truth: {problem}")
    answer_sources = extra.get("answer_sources") or []
    if len(answer_sources) == 1:
        where, verb = f"the {answer_sources[0]} image", "shows"
    else:
        where, verb = (f"the {' and '.join(answer_sources)} images" if answer_sources else "they"), "show"
    if reward == schema.GROUNDING:
        count = len(value)
        noun = label if count == 1 else _PLURALS.get(label, f"{label}s")
        think = f"I compare the images; {where} {verb} the {noun} most clearly. I find {count} {noun}."
        seen = f"{where} {verb} {count} {noun}"
        boxes = json.dumps([{"bbox_2d": box, "label": label} for box in value], ensure_ascii=False)
        answer = f"```json\n{boxes}\n```"
    else:
        think = f"I compare the images; {where} {verb} what the question asks. The answer is {value}."
        seen = f"{where} {verb}: {value}"
        answer = value
    perception = f"<perception>{seen[0].upper()}{seen[1:]}.</perception>" if perception_block else ""
    return f"{perception}<think>{think}</think><answer>{answer}</answer>"


def row_to_sft_example(row: dict[str, Any], label: str = "person") -> dict[str, Any]:
    """``{"messages": [user, assistant], "images": [paths]}`` (LLaMA-Factory, sharegpt-style multimodal)."""
    row = schema.to_plain(row)
    images = [image["image"] if isinstance(image, dict) else image for image in row.get("images") or []]
    return {
        "messages": [
            {"role": "user", "content": user_text(row)},
            {"role": "assistant", "content": sft_assistant_text(row, label)},
        ],
        "images": images,
    }


def parquet_to_llamafactory(parquet_path: str, out_path: str, *, label: str = "person") -> list[dict[str, Any]]:
    examples = [row_to_sft_example(row, label) for row in read_rows(parquet_path)]
    write_json(examples, out_path)
    return examples
