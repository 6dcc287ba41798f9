"""What both engines check before the first step, once the tokenizer and processor are loaded."""

from __future__ import annotations

import os
from typing import Any

from mars.data import check
from mars.data.samples import BadDataError
from mars.training.settings import AnchorSettings


def base_tokenizer_and_processor(cfg: Any) -> tuple[Any, Any]:
    """The configured model's tokenizer and processor (no weights): what the checks before the warm start need.
    A model path that is neither a folder nor a hub id, or that cannot be loaded, is a ``SettingsError``."""
    import re

    from transformers import AutoProcessor

    from mars.training.settings import SettingsError

    path = str(cfg.actor_rollout_ref.model.path)
    key = f"actor_rollout_ref.model.path={path}"
    hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", path) is not None
    if not os.path.isdir(os.path.expanduser(path)) and not hub_id:
        raise SettingsError([f"{key}: no such folder (give a local Hugging Face model folder or a hub id such as "
                             "Qwen/Qwen2.5-VL-3B-Instruct)"])
    try:
        processor = AutoProcessor.from_pretrained(os.path.expanduser(path))
    except (OSError, ValueError) as exc:
        raise SettingsError([f"{key}: cannot load its processor ({str(exc).splitlines()[0]})"]) from None
    return processor.tokenizer, processor


def prompt_length_limit(cfg: Any, tokenizer: Any = None, processor: Any = None) -> tuple[check.LengthLimit, int, int]:
    """What every prompt and mono-source variant must fit (``actor_rollout_ref.rollout.prompt_length``), and the
    processor's pixel bounds (min, max) it is counted with: the processor's image settings when given, else
    Qwen2.5-VL's."""
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None) or {}
    min_pixels = int(getattr(image_processor, "min_pixels", None) or size.get("shortest_edge")
                     or check.DEFAULT_MIN_PIXELS)
    max_pixels = int(getattr(image_processor, "max_pixels", None) or size.get("longest_edge")
                     or check.DEFAULT_MAX_PIXELS)
    factor = int(getattr(image_processor, "patch_size", 14) or 14) * int(getattr(image_processor, "merge_size", 2) or 2)
    limit = check.LengthLimit(int(cfg.actor_rollout_ref.rollout.prompt_length),
                              AnchorSettings.from_config(cfg).variant_mode, tokenizer, factor)
    return limit, min_pixels, max_pixels


def skipping_length_limit(cfg: Any, processor: Any = None) -> check.LengthLimit | None:
    """The limit rows are loaded with under ``mars.on_bad_row=skip`` (a prompt too long is a bad row, skipped and
    counted with the others); None otherwise (``check_prompt_lengths`` refuses it before the warm start)."""
    if str(cfg.mars.get("on_bad_row", "error")) != "skip":
        return None
    if processor is None:
        processor = base_tokenizer_and_processor(cfg)[1]
    return prompt_length_limit(cfg, processor.tokenizer, processor)[0]


def check_prompt_lengths(cfg: Any, tokenizer: Any = None, processor: Any = None) -> None:
    """Before training (and before the warm start): every training and validation prompt and mono-source variant
    fits ``actor_rollout_ref.rollout.prompt_length`` (image headers only). Raises ``BadDataError`` naming the rows and
    the fix, like ``mars data check --max-prompt-length``."""
    limit, min_pixels, max_pixels = prompt_length_limit(cfg, tokenizer, processor)
    for key in ("train_files", "val_files"):
        files = cfg.data.get(key)
        for path in [files] if isinstance(files, str) else list(files or []):
            report = check.check_dataset(str(path), min_pixels=min_pixels, max_pixels=max_pixels, decode=False,
                                         length_limit=limit)
            too_long_rows = report.errors.get(check.PROMPT_TOO_LONG)
            if too_long_rows:
                too_long = [example for example in report.examples if "rollout.prompt_length=" in example]
                raise BadDataError(
                    f"data.{key}: {too_long_rows} row(s) of {path} have a prompt or mono-source variant longer "
                    f"than rollout.prompt_length={limit.max_prompt_length}:\n  " + "\n  ".join(too_long)
                    + "\n(shorten them, raise data.max_prompt_length, or leave them out with mars.on_bad_row=skip on the "
                    "local engine)"
                )


def data_source_names(files: Any) -> set[str]:
    """The source names of the images of every row of the given parquet files (the ``images`` column only)."""
    import pandas as pd

    names: set[str] = set()
    for path in [files] if isinstance(files, str) else list(files or []):
        for images in pd.read_parquet(str(path), columns=["images"])["images"]:
            names.update(str(image.get("source")) for image in (images if images is not None else [])
                         if isinstance(image, dict) and image.get("source"))
    return names


def check_perception(cfg: Any, processor: Any) -> None:
    """Before training: ``perception.source`` is a source of the training data, ``perception.patch_size`` a
    multiple of the model's patch, and faithful_mr1's policy will have its focus token. Raises ``SettingsError``
    naming the key."""
    from mars.perception.methods import perception_settings
    from mars.training.settings import SettingsError

    settings = perception_settings(cfg)
    if settings.name == "none" and not settings.log_sources:
        return
    if settings.name == "faithful_mr1" and int(cfg.mars.sft_warmup.get("steps", 0) or 0) <= 0:
        from mars.perception.focus import focus_token_id

        if focus_token_id(processor.tokenizer, settings.focus_token) is None:
            raise SettingsError([f"perception=faithful_mr1: the model has no focus token {settings.focus_token} and "
                                 "mars.sft_warmup.steps=0 skips the anchoring stage that adds it; valid: "
                                 "mars.sft_warmup.steps > 0, or a model trained with it (mars.sft_warmup.focus.token)"])
    if settings.view == "drop_source" and settings.method_view() is not None:
        names = data_source_names(cfg.data.train_files)
        if settings.source not in names:
            raise SettingsError([f"perception.source={settings.source}: the training data has no such source; "
                                 f"valid: {', '.join(sorted(names)) or '(none: the rows name no sources)'}"])
    view = settings.method_view()
    if view is not None:
        try:
            view.region_side(int(processor.image_processor.patch_size))
        except ValueError as exc:
            raise SettingsError([str(exc)]) from None


def check_before_warm_start(cfg: Any, rows: int | None = None, processor: Any = None) -> None:
    """What both engines check once the run folder is known and before the warm start, with the configured model's
    processor loaded once: enough prompts for a batch, the perception settings, every prompt's length (unless the
    rows were loaded with ``mars.on_bad_row=skip``, which left the long ones out already)."""
    check_data_paths(cfg)
    if processor is None:
        processor = base_tokenizer_and_processor(cfg)[1]
    check_enough_rows(cfg, rows)
    check_perception(cfg, processor)
    if str(cfg.mars.get("on_bad_row", "error")) != "skip":
        check_prompt_lengths(cfg, processor.tokenizer, processor)


def check_data_paths(cfg: Any) -> None:
    """Every file ``data.train_files`` and ``data.val_files`` name exists; ``BadDataError`` naming the key and the
    file otherwise."""
    missing = []
    for key in ("train_files", "val_files"):
        files = cfg.data.get(key)
        missing += [f"data.{key}: {path} does not exist" for path in ([files] if isinstance(files, str) else
                                                                       list(files or []))
                    if not os.path.exists(os.path.expanduser(str(path)))]
    if missing:
        raise BadDataError("\n".join(missing))


def check_enough_rows(cfg: Any, rows: int | None = None) -> None:
    """Before training: at least ``data.train_batch_size`` training prompts (``rows``: the usable ones, else every row
    of ``data.train_files``). Raises ``SettingsError`` naming both numbers."""
    from mars.training.settings import SettingsError

    batch = int(cfg.data.train_batch_size)
    if rows is None:
        import pyarrow.parquet as pq

        files = cfg.data.train_files
        rows = sum(pq.ParquetFile(str(path)).metadata.num_rows
                   for path in ([files] if isinstance(files, str) else list(files)))
    if rows < batch:
        raise SettingsError([f"data.train_batch_size={batch}: the training data has {rows} usable prompt(s), fewer "
                             f"than one batch; lower data.train_batch_size to at most {rows} or add data"])
