"""Dataset checker: find the rows that would crash or silently mis-train a MARS run, before it starts.

``validate_row(row, base_dir)`` returns the problems of one row (each a ``Problem``: a ``str`` with a
``kind``), with messages that name the image, the reason and what to do; the trainer can call it to fail or to
skip-and-count with the same wording. ``check_dataset(path)`` runs it over a parquet file, a directory of
train/val/test parquet files or a reference question JSON, adds the dataset-level checks (source names
consistent across rows) and returns a ``CheckReport``.

Images are opened one at a time with PIL and closed; each distinct path is decoded once per check; the
parquet files are read in batches. Memory stays bounded by one batch plus one image.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Iterator, Optional

import pyarrow.parquet as pq
from PIL import Image

from mars.anchors import variant_image_tokens
from mars.data import convert, schema

DEFAULT_MIN_PIXELS = 3136  # Qwen2.5-VL's processor limits (preprocessor_config.json of the 3B model)
DEFAULT_MAX_PIXELS = 12845056
PATCH_FACTOR = 28
BATCH_ROWS = 256

# Error kinds (a row with any of these fails the check).
BAD_ROW = "bad_row"
BAD_PROMPT = "bad_prompt"
PLACEHOLDER_MISMATCH = "placeholder_mismatch"
MISSING_SOURCE = "missing_source"
DUPLICATE_SOURCE = "duplicate_source"
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
IMAGE_TOO_LARGE = "image_too_large"
IMAGE_TOO_SMALL = "image_too_small"
HIGH_BIT_DEPTH = "high_bit_depth_image"
REFERENCE_IMAGES_HINT = (
    "the reference MARS release ships its question files without the images; download its datasets' images (e.g. "
    "LLVIP for llvip_*.json) and put them where the paths point (relative paths are read from the working "
    "directory when training; `mars data check --base-dir DIR` and `convert to-parquet --base-dir DIR` read them "
    "from DIR)"
)
# PIL modes whose conversion to RGB (the processor's, verl's qwen_vl_utils') clips every value above 255: a 16-bit
# or float picture becomes a uniform white image
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
BAD_GROUND_TRUTH = "bad_ground_truth"
EMPTY_DATASET = "empty_dataset"
PROMPT_TOO_LONG = "prompt_too_long"
# Warning kinds (reported, exit code stays 0).
MIXED_SOURCES = "mixed_sources"
RESIZED_GROUNDING = "resized_grounding_image"
BOX_OUTSIDE_IMAGE = "box_outside_image"
SOURCES_DIFFER_FROM_EXTRA_INFO = "image_sources_differ"


class Problem(str):
    """A problem message (a plain ``str`` for callers that only print it) that also carries its ``kind``."""

    kind: str

    def __new__(cls, kind: str, message: str) -> "Problem":
        problem = super().__new__(cls, message)
        problem.kind = kind
        return problem


@dataclass
class ImageFacts:
    """What one image check found: its size (None if unreadable) and the problem, if any."""

    size: Optional[tuple[int, int]]
    kind: Optional[str] = None
    detail: str = ""


@dataclass(frozen=True)
class LengthLimit:
    """What a prompt must fit: the rollout's ``prompt_length`` (verl's agent loop refuses a longer multimodal prompt)
    for the multi-source prompt and every mono-source variant of ``variant_mode``. ``tokenizer`` counts the text with
    the chat template; without one only the image tokens are counted (a lower bound: no false alarms)."""

    max_prompt_length: int
    variant_mode: str = "duplicate"
    tokenizer: Any = None
    factor: int = PATCH_FACTOR  # pixels per merged patch side: 28 for Qwen2.5-VL, 32 for Qwen3-VL


@dataclass
class RowFindings:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- one image


def inspect_image(
    image: Any, base_dir: Optional[str], min_pixels: int, max_pixels: int, decode: bool = True
) -> ImageFacts:
    """Open one image (a path, or ``{"bytes": ...}``), check its size against the processor's limits and
    decode it fully (``decode``) so that truncated or corrupt files are caught here, not mid-training."""
    if isinstance(image, dict) and image.get("bytes") is not None:
        opener, label = (lambda: Image.open(BytesIO(image["bytes"]))), "embedded bytes"
    else:
        path = image.get("image") if isinstance(image, dict) else image
        full = resolve(path, base_dir)
        if not os.path.isfile(full):
            return ImageFacts(None, MISSING_IMAGE, os.path.abspath(full))
        opener, label = (lambda: Image.open(full)), full
    try:
        with opener() as im:
            size = im.size
            pixels = size[0] * size[1]
            if pixels > max_pixels:  # checked before decoding: never decode a decompression bomb
                return ImageFacts(size, IMAGE_TOO_LARGE, f"{size[0]}x{size[1]} = {pixels} pixels > max {max_pixels}")
            if pixels < min_pixels:
                return ImageFacts(size, IMAGE_TOO_SMALL, f"{size[0]}x{size[1]} = {pixels} pixels < min {min_pixels}")
            if im.mode in HIGH_BIT_MODES:
                return ImageFacts(size, HIGH_BIT_DEPTH, im.mode)
            if decode:
                im.load()
            return ImageFacts(size)
    except Exception as exc:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, struct.error ...
        return ImageFacts(None, CORRUPT_IMAGE, f"{label}: {type(exc).__name__}: {exc}")


def resolve(path: Any, base_dir: Optional[str]) -> str:
    """The file a row's image path names: absolute paths as they are, relative ones under ``base_dir`` (the
    working directory when None, which is how verl opens them)."""
    path = os.fspath(path)
    if path.startswith("file://"):
        path = path[len("file://") :]
    return path if os.path.isabs(path) or base_dir is None else os.path.join(base_dir, path)


# ----------------------------------------------------------------------------------------------- one row


def validate_row(
    row: Any,
    base_dir: Optional[str] = None,
    *,
    reward: str = "auto",
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: bool = True,
    row_index: Optional[int] = None,
    file: Optional[str] = None,
    length_limit: Optional[LengthLimit] = None,
) -> list[Problem]:
    """The problems of one row (empty when it is fine). Messages start with ``FILE row N:`` when ``file`` /
    ``row_index`` are given; each ``Problem`` has a ``kind`` (the constants of this module)."""
    return inspect_row(
        row, base_dir, reward=reward, min_pixels=min_pixels, max_pixels=max_pixels, decode=decode,
        row_index=row_index, file=file, length_limit=length_limit,
    ).problems


def inspect_row(
    row: Any,
    base_dir: Optional[str] = None,
    *,
    reward: str = "auto",
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: bool = True,
    row_index: Optional[int] = None,
    file: Optional[str] = None,
    image_cache: Optional[dict] = None,
    length_limit: Optional[LengthLimit] = None,
) -> RowFindings:
    """Problems, warnings and source names of one row (``validate_row`` returns just the problems)."""
    where = " ".join(part for part in (file, None if row_index is None else f"row {row_index}") if part)
    where = f"{where}: " if where else ""
    found = RowFindings()

    def problem(kind: str, message: str) -> None:
        found.problems.append(Problem(kind, where + message))

    def warning(kind: str, message: str) -> None:
        found.warnings.append(Problem(kind, where + message))

    row = schema.to_plain(row)
    if not isinstance(row, dict):
        problem(BAD_ROW, f"a row must be a dict with the columns {list(schema.ROW_SCHEMA.names)}")
        return found
    missing = [column for column in ("prompt", "images", "reward_model") if row.get(column) is None]
    if missing:
        problem(BAD_ROW, f"missing column(s) {missing}: convert the data with `mars data convert to-parquet`")
        return found

    _check_prompt(row, problem)
    images = row["images"] if isinstance(row["images"], list) else []
    sizes = _check_images(images, base_dir, min_pixels, max_pixels, decode, image_cache, problem, found)
    _check_ground_truth(row, reward, sizes, problem, warning)
    if length_limit is not None and not found.problems:
        _check_prompt_length(row, sizes, found.sources, length_limit, min_pixels, max_pixels, problem)

    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    listed = extra.get("image_sources")
    if listed is not None and found.sources and list(listed) != found.sources:
        warning(
            SOURCES_DIFFER_FROM_EXTRA_INFO,
            f"extra_info.image_sources {listed} differs from the images' source names {found.sources} "
            "(anchors use the images' names)",
        )
    return found


def _check_prompt(row: dict, problem) -> None:
    prompt = row["prompt"]
    if not isinstance(prompt, list) or not all(isinstance(m, dict) for m in prompt) or not prompt:
        problem(BAD_PROMPT, "prompt must be a list of chat messages [{'role': 'user', 'content': '<image>...'}]")
        return
    if any(isinstance(m.get("content"), list) for m in prompt):
        problem(
            BAD_PROMPT,
            "a prompt message has list content: verl only expands <image> placeholders in string contents; "
            "write the content as a string with one <image> per image",
        )
        return
    images = row["images"] if isinstance(row["images"], list) else []
    placeholders = schema.count_placeholders(prompt)
    if placeholders != len(images):
        problem(
            PLACEHOLDER_MISMATCH,
            f"the prompt has {placeholders} {schema.IMAGE_PLACEHOLDER} placeholder(s) but the row has "
            f"{len(images)} image(s): put exactly one {schema.IMAGE_PLACEHOLDER} per image, in image order",
        )


def _check_images(images, base_dir, min_pixels, max_pixels, decode, cache, problem, found) -> list:
    sizes = []
    for k, image in enumerate(images):
        source = image.get(schema.SOURCE_KEY) if isinstance(image, dict) else None
        path = image.get("image") if isinstance(image, dict) else image
        label = f"image {k}" + (f" ({source})" if isinstance(source, str) and source else "")
        if not isinstance(source, str) or not source.strip():
            problem(
                MISSING_SOURCE,
                f"{label} has no source name: write images as {{'image': PATH, 'source': NAME}} "
                "(e.g. `mars data convert to-parquet --sources visible,infrared`)",
            )
        else:
            found.sources.append(source)
        if not (isinstance(path, str) and path) and not (isinstance(image, dict) and image.get("bytes")):
            problem(BAD_ROW, f"{label}: no image path (expected {{'image': PATH, 'source': NAME}}, got {image!r:.80})")
            sizes.append(None)
            continue
        key = (path, base_dir) if isinstance(path, str) and path else None
        facts = cache.get(key) if cache is not None and key else None
        if facts is None:
            facts = inspect_image(image, base_dir, min_pixels, max_pixels, decode)
            if cache is not None and key:
                cache[key] = facts
        sizes.append(facts.size)
        if facts.kind:
            problem(facts.kind, f"{label} {path!r:.120}: {_explain(facts, path, base_dir, max_pixels)}")
    if len(set(found.sources)) != len(found.sources):
        problem(
            DUPLICATE_SOURCE,
            f"source names repeat within the row {found.sources}: each image needs its own name "
            "(anchors are reported per source)",
        )
    return sizes


def image_tokens(size: tuple[int, int], min_pixels: int, max_pixels: int, factor: int = PATCH_FACTOR) -> int:
    """Prompt tokens of one image: one per merged patch of the processor-resized image, plus its vision start and
    end markers (Qwen2.5-VL / Qwen3-VL)."""
    from mars.rewards.coords import smart_resize

    width, height = size
    resized_h, resized_w = smart_resize(height, width, factor, min_pixels, max_pixels)
    return (resized_h // factor) * (resized_w // factor) + 2


def text_tokens(prompt: list, tokenizer: Any) -> int:
    """Tokens of the prompt's text with the chat template, image placeholders removed (0 without a tokenizer)."""
    if tokenizer is None:
        return 0
    messages = [{**m, "content": str(m.get("content", "")).replace(schema.IMAGE_PLACEHOLDER, "")} for m in prompt]
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    else:
        ids = tokenizer("".join(m["content"] for m in messages))["input_ids"]
    return len(ids)


def _check_prompt_length(row, sizes, sources, limit: LengthLimit, min_pixels, max_pixels, problem) -> None:
    """The longest of the multi-source prompt and its variants against the rollout's prompt length."""
    if not sizes or any(size is None for size in sizes):
        return
    tokens = [image_tokens(size, min_pixels, max_pixels, limit.factor) for size in sizes]
    text = text_tokens(row["prompt"], limit.tokenizer)
    names = sources if len(sources) == len(sizes) else [f"image {k}" for k in range(len(sizes))]
    lengths = {"the multi-source prompt": sum(tokens)}
    if len(sizes) >= 2:  # one source: no anchors
        for name, count in zip(names, variant_image_tokens(tokens, limit.variant_mode)):
            lengths[f"the {name} variant ({limit.variant_mode})"] = count
    which, images = max(lengths.items(), key=lambda item: item[1])
    if text + images <= limit.max_prompt_length:
        return
    counted = f"{images} image + {text} text tokens" if limit.tokenizer is not None else f"{images} image tokens"
    fix = "resize its largest image offline or lower the processor's max_pixels"
    if which != "the multi-source prompt" and limit.variant_mode == "duplicate":
        fix += ", or set mars.variant_mode=blank (same length as the prompt) or drop"
    problem(
        PROMPT_TOO_LONG,
        f"{which} has {text + images} tokens ({counted}), more than rollout.prompt_length="
        f"{limit.max_prompt_length}: verl's agent loop refuses it and the step stops. Raise data.max_prompt_length "
        f"to at least {text + images}, or {fix}",
    )


def _explain(facts: ImageFacts, path: Any, base_dir: Optional[str], max_pixels: int) -> str:
    """The reason and what to do, per kind."""
    if facts.kind == MISSING_IMAGE:
        hint = "fix the path"
        if isinstance(path, str) and not os.path.isabs(path):
            where = "the working directory" if base_dir is None else repr(base_dir)
            hint += (f", or run from the directory the paths are relative to, not {where} (`mars data check "
                     "--base-dir DIR` checks them from there)")
        return f"file not found (looked at {facts.detail}): {hint}"
    if facts.kind == CORRUPT_IMAGE:
        return f"cannot be decoded ({facts.detail}): re-export or remove the image"
    if facts.kind == IMAGE_TOO_LARGE:
        return (
            f"too large, {facts.detail}: resize it offline (keeping boxes in step) or raise --max-pixels "
            f"together with the processor's max_pixels"
        )
    if facts.kind == HIGH_BIT_DEPTH:
        return (f"a {facts.detail} image (16-bit or float): converting it to RGB, as the processor does, clips every "
                "value above 255 and trains on a white picture; save it as 8-bit first (16-bit: divide by 257)")
    if facts.kind == IMAGE_TOO_SMALL:
        return f"too small, {facts.detail}: the processor would upscale it; resize it to at least 56x56"
    return facts.detail


def _check_ground_truth(row: dict, reward: str, sizes: list, problem, warning) -> None:
    chosen = convert.row_reward(row) if reward == "auto" else reward
    reward_model = row.get("reward_model")
    ground_truth = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    value, reason = schema.parse_ground_truth(ground_truth, chosen)
    if reason:
        wanted = "<answer>[[x1, y1, x2, y2], ...]</answer>" if chosen == schema.GROUNDING else "<answer>TEXT</answer>"
        problem(BAD_GROUND_TRUTH, f"ground truth invalid for the {chosen} reward: {reason}; expected {wanted}")
        return
    if chosen != schema.GROUNDING:
        return
    first = next((size for size in sizes if size), None)
    if first is None:
        return
    width, height = first
    outside = [box for box in value if min(box) < 0 or box[2] > width or box[3] > height]
    if outside:
        warning(
            BOX_OUTSIDE_IMAGE, f"{len(outside)} box(es) reach outside the {width}x{height} image, e.g. {outside[0]}"
        )
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    absolute = (extra.get("coord_format") or schema.ABSOLUTE) == schema.ABSOLUTE
    if absolute and (width % PATCH_FACTOR or height % PATCH_FACTOR):
        from mars.rewards.coords import smart_resize  # the rewards' copy of the processor's rule

        resized_h, resized_w = smart_resize(height, width)
        warning(
            RESIZED_GROUNDING,
            f"the processor resizes this {width}x{height} grounding image to {resized_w}x{resized_h}, so "
            "Qwen2.5-VL's absolute coordinates differ from the ground truth's pixels: set "
            "extra_info.coord_format='qwen2_5_vl' (`mars data convert to-parquet --coord-format qwen2_5_vl`)",
        )


# --------------------------------------------------------------------------------------------- a dataset


@dataclass
class CheckReport:
    path: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    bad_rows: int = 0
    images: int = 0
    sources: Counter = field(default_factory=Counter)  # source name -> images
    source_lists: Counter = field(default_factory=Counter)  # tuple of names -> rows
    errors: Counter = field(default_factory=Counter)  # kind -> count
    warnings: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # the first problems, with file and row
    warning_examples: list[str] = field(default_factory=list)  # the first warning of each kind
    hints: list[str] = field(default_factory=list)  # dataset-wide advice (e.g. the right --base-dir)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        lines = [
            f"checked {self.path}: {len(self.files)} file(s), {self.rows} rows, {self.images} images",
            "sources: " + (", ".join(f"{name} x{n}" for name, n in sorted(self.sources.items())) or "none"),
        ]
        for names, n in self.source_lists.most_common(5):
            lines.append(f"  {n} rows with sources {list(names)}")
        if self.warnings:
            lines.append("warnings: " + ", ".join(f"{kind} x{n}" for kind, n in self.warnings.most_common()))
            lines.extend(f"  {message}" for message in self.warning_examples)
        if self.errors:
            kinds = ", ".join(f"{kind} x{n}" for kind, n in self.errors.most_common())
            lines.append(f"ERRORS in {self.bad_rows} row(s): {kinds}")
            lines.append(f"first {len(self.examples)} problem(s):")
            lines.extend(f"  {message}" for message in self.examples)
        lines.extend(f"hint: {hint}" for hint in self.hints)
        lines.append("OK" if self.ok else "FAILED: fix the rows above (or drop them) and run `mars data check` again")
        return "\n".join(lines)


def dataset_files(path: str) -> list[str]:
    """The files a check covers: the parquet/JSON file itself, or a directory's {train,val,test}.parquet."""
    if os.path.isdir(path):
        files = [os.path.join(path, f"{split}.parquet") for split in schema.SPLITS]
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            others = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
            files = [os.path.join(path, f) for f in others]
        if not files:
            raise FileNotFoundError(f"{path}: no train/val/test .parquet files in this directory")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not path.endswith((".parquet", ".json")):
        raise ValueError(f"{path}: expected a .parquet file, a .json reference question file or a directory")
    return [path]


def iter_rows(path: str) -> Iterator[tuple[int, Any, Optional[str]]]:
    """(row index, row or None, structural problem) for a parquet or reference JSON file, in batches."""
    if path.endswith(".json"):
        for index, item in enumerate(convert.load_reference_json(path)):
            try:
                yield index, convert.reference_item_to_row(
                    item, index, data_source="check", base_dir=None, validate_ground_truth=False
                ), None
            except ValueError as exc:
                yield index, None, str(exc).split(": ", 1)[-1]
        return
    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        try:
            rows = [(row, None) for row in batch.to_pylist()]
        except UnicodeDecodeError:  # a text cell that is not UTF-8: find its row and column
            rows = [undecodable_row(batch, i) for i in range(batch.num_rows)]
        for row, problem in rows:
            yield index, row, problem
            index += 1


def undecodable_row(batch: Any, i: int) -> tuple[Any, Optional[str]]:
    """Row ``i`` of a record batch, or (None, which column is not UTF-8 and the fix)."""
    try:
        return batch.slice(i, 1).to_pylist()[0], None
    except UnicodeDecodeError as exc:
        for name in batch.schema.names:
            try:
                batch.column(name).slice(i, 1).to_pylist()
            except UnicodeDecodeError:
                return None, (f"column {name!r} holds text that is not UTF-8 ({exc.reason}, byte "
                              f"{exc.object[exc.start:exc.start + 1]!r} at position {exc.start}): re-encode the "
                              "file's text as UTF-8")
        return None, f"text that is not UTF-8 ({exc.reason})"


def check_dataset(
    path: str,
    *,
    reward: str = "auto",
    base_dir: Optional[str] = None,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limit_errors: int = 20,
    decode: bool = True,
    progress: bool = False,
    length_limit: Optional[LengthLimit] = None,
) -> CheckReport:
    """Validate every row of a dataset (see the module docstring); never raises for bad rows, only for a
    path that is not a dataset at all."""
    if reward not in ("auto", *schema.REWARDS):
        raise ValueError(f"reward must be auto, grounding or vqa, got {reward!r}")
    report = CheckReport(path=path, files=dataset_files(path))
    cache: dict = {}
    first_missing: Optional[tuple[str, str]] = None  # (file, relative image path) of the first missing image
    for file in report.files:
        name = os.path.basename(file)
        for index, row, structural in iter_rows(file):
            report.rows += 1
            if row is None:
                findings = RowFindings(problems=[Problem(BAD_ROW, f"{name} row {index}: {structural}")])
            else:
                findings = inspect_row(
                    row, base_dir, reward=reward, min_pixels=min_pixels, max_pixels=max_pixels, decode=decode,
                    row_index=index, file=name, image_cache=cache, length_limit=length_limit,
                )
                if first_missing is None and any(p.kind == MISSING_IMAGE for p in findings.problems):
                    first_missing = _first_relative_path(file, row)
                report.images += len(row.get("images") or [])
                report.sources.update(findings.sources)
                report.source_lists[tuple(findings.sources)] += 1
            _record(report, findings, limit_errors)
            if progress and report.rows % 1000 == 0:
                print(f"[mars data check] {report.rows} rows checked", file=sys.stderr, flush=True)
        if len(cache) > 100_000:  # bounded memory on huge datasets: forget decoded paths between files
            cache.clear()
    _check_consistency(report)
    if first_missing is not None:
        report.hints.extend(_base_dir_hint(*first_missing, base_dir))
    if report.errors.get(MISSING_IMAGE) and any(f.endswith(".json") for f in report.files):
        report.hints.append(f"{report.errors[MISSING_IMAGE]} image(s) missing: {REFERENCE_IMAGES_HINT}")
    if report.rows == 0:
        report.errors[EMPTY_DATASET] += 1
        report.examples.append(f"{path}: no rows at all: nothing to train on")
    return report


def _first_relative_path(file: str, row: dict) -> Optional[tuple[str, str]]:
    for image in row.get("images") or []:
        path = image.get("image") if isinstance(image, dict) else image
        if isinstance(path, str) and path and not os.path.isabs(path):
            return file, path
    return None


def _base_dir_hint(file: str, relative: str, base_dir: Optional[str]) -> list[str]:
    """Where a missing relative image path would exist: the dataset file's folder or one of its parents."""
    folder = os.path.dirname(os.path.abspath(file))
    for _ in range(6):
        if os.path.isfile(os.path.join(folder, relative)) and folder != os.path.abspath(base_dir or "."):
            return [f"{relative!r} exists under {folder}: run from there or pass --base-dir {folder}"]
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return []


def _record(report: CheckReport, findings: RowFindings, limit_errors: int) -> None:
    if findings.problems:
        report.bad_rows += 1
    for found in findings.problems:
        report.errors[found.kind] += 1
        if len(report.examples) < limit_errors:
            report.examples.append(str(found))
    for found in findings.warnings:
        report.warnings[found.kind] += 1
        if report.warnings[found.kind] == 1:
            report.warning_examples.append(str(found))


def _check_consistency(report: CheckReport) -> None:
    """Rows with the same number of images should name their sources the same way, in the same order;
    anchors are averaged per source name, so mixed names split one source's statistics."""
    by_count: dict[int, Counter] = {}
    for names, rows in report.source_lists.items():
        by_count.setdefault(len(names), Counter())[names] = rows
    for count, patterns in sorted(by_count.items()):
        if count and len(patterns) > 1:
            shown = "; ".join(f"{list(names)} in {rows} rows" for names, rows in patterns.most_common(3))
            report.warnings[MIXED_SOURCES] += 1
            report.warning_examples.append(
                f"rows with {count} images name their sources in {len(patterns)} different ways ({shown}): "
                "use one naming (e.g. `mars data convert to-parquet --sources a,b`) unless the mix is intended"
            )
