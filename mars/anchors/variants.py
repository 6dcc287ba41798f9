"""Mono-source variants of a multi-source prompt: where anchors are built (SPEC §2).

A prompt is a list of chat messages whose ``content`` is a list of parts, ``{"type": "image", "image": ...}`` and
``{"type": "text", "text": ...}``: the form verl 0.9.1's ``RLHFDataset`` hands its agent loop as ``raw_prompt``.
Variant k shows only source k, in one of three ways:

    duplicate  every image slot shows source k's image (the reference code; text and image-token count unchanged)
    drop       only source k's image part remains (fewer image tokens; the text is unchanged)
    blank      the other slots show a black image of their own size (same token count, no content)

Images are never decoded or copied here: the variants share the image objects (paths or PIL images) of the
original prompt, so a sample's pictures are processed once however many variants it has. Only ``blank`` needs a
size, read from the image header when the slot holds a path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from typing import Any, Iterable, Literal, Sequence

from PIL import Image

VariantMode = Literal["duplicate", "drop", "blank"]
VARIANT_MODES: tuple[str, ...] = ("duplicate", "drop", "blank")
SOURCE_KEY = "source"  # optional per-part source name: {"type": "image", "image": ..., "source": "infrared"}


@dataclass(frozen=True)
class MonoSourceVariant:
    """The prompt as seen through one source."""

    source: str  # the source name, e.g. "infrared"
    source_index: int  # position of that source among the prompt's images
    messages: list[dict[str, Any]]


def image_slots(messages: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(message index, part index) of every image part, in prompt order."""
    slots = []
    for m, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, list):
            slots.extend((m, p) for p, part in enumerate(content) if isinstance(part, dict) and part.get("type") == "image")
    return slots


def resolve_sources(messages: Sequence[dict[str, Any]], sources: Sequence[str] | None = None) -> list[str]:
    """The source name of each image slot: ``sources`` if given, else each part's ``source`` key.

    Raises a ValueError naming the problem when the names are missing, of the wrong count, or repeated (anchors
    are reported per source name, so two slots must not share one).
    """
    slots = image_slots(messages)
    if sources is None:
        names = [messages[m]["content"][p].get(SOURCE_KEY) for m, p in slots]
        if any(not isinstance(n, str) or not n for n in names):
            raise ValueError(
                "every image needs a source name: pass sources=[...] (e.g. extra_info['image_sources']) or give each "
                f"image part a '{SOURCE_KEY}' key; got {names}"
            )
    else:
        names = [str(s) for s in sources]
        if len(names) != len(slots):
            raise ValueError(f"the prompt has {len(slots)} images but {len(names)} source names were given: {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be distinct within a sample, got {names}")
    return names


def select_anchor_sources(sources: Sequence[str], anchor_sources: str | Iterable[str] | None = "all") -> list[int]:
    """Indices of the sources that become anchors: all (``"all"`` or None) or the named subset present here."""
    if anchor_sources is None or anchor_sources == "all":
        return list(range(len(sources)))
    if isinstance(anchor_sources, str):
        anchor_sources = [anchor_sources]
    wanted = set(anchor_sources)
    return [k for k, name in enumerate(sources) if name in wanted]


def check_variant_mode(mode: str) -> str:
    """``mode`` if it is one of ``VARIANT_MODES``; else a ValueError naming the valid ones."""
    if mode not in VARIANT_MODES:
        raise ValueError(f"unknown variant mode {mode!r}: choose one of {VARIANT_MODES}")
    return mode


def variant_image_tokens(tokens: Sequence[int], mode: VariantMode) -> list[int]:
    """Image tokens of each source's variant, given each slot's own image tokens: what ``_show_only`` builds, counted.

    ``duplicate`` shows source k in every slot (K times its tokens: longer than the prompt when k is the largest
    image), ``blank`` keeps every slot's size, ``drop`` keeps source k's slot alone."""
    check_variant_mode(mode)
    if mode == "duplicate":
        return [len(tokens) * t for t in tokens]
    if mode == "blank":
        return [sum(tokens)] * len(tokens)
    return list(tokens)


def build_mono_source_variants(
    messages: Sequence[dict[str, Any]],
    sources: Sequence[str] | None = None,
    mode: VariantMode = "duplicate",
    anchor_sources: str | Iterable[str] | None = "all",
) -> list[MonoSourceVariant]:
    """One variant per anchor source; none for a prompt with fewer than two sources (nothing to anchor against)."""
    check_variant_mode(mode)
    slots = image_slots(messages)
    if len(slots) < 2:
        return []
    names = resolve_sources(messages, sources)
    return [
        MonoSourceVariant(source=names[k], source_index=k, messages=_show_only(messages, slots, k, mode))
        for k in select_anchor_sources(names, anchor_sources)
    ]


def _show_only(messages: Sequence[dict[str, Any]], slots: list[tuple[int, int]], k: int, mode: str) -> list[dict]:
    """A fresh copy of the messages (dicts and lists new, image objects shared) showing only slot k's image."""
    keep_m, keep_p = slots[k]
    chosen = messages[keep_m]["content"][keep_p]
    slot_set = set(slots)
    out = []
    for m, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        parts = []
        for p, part in enumerate(content):
            if (m, p) not in slot_set or (m, p) == (keep_m, keep_p):
                parts.append(dict(part))
            elif mode == "duplicate":
                parts.append(dict(chosen))
            elif mode == "blank":
                parts.append({**part, "image": blank_image(image_size(part.get("image")))})
            # mode == "drop": the slot disappears
        out.append({**message, "content": parts})
    return out


def image_size(image: Any) -> tuple[int, int]:
    """(width, height) of an image given as a PIL image, a path (optionally ``file://``), bytes or ``{"bytes": ...}``."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, dict) and "bytes" in image:
        image = image["bytes"]
    if isinstance(image, (bytes, bytearray)):
        with Image.open(BytesIO(image)) as im:
            return im.size
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        path = path[len("file://") :] if path.startswith("file://") else path
        try:
            with Image.open(path) as im:  # reads the header only
                return im.size
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the size of image {path!r} for a blank variant: {exc}") from exc
    raise TypeError(f"unsupported image value of type {type(image).__name__}: use a path, bytes or a PIL image")


@lru_cache(maxsize=64)
def blank_image(size: tuple[int, int]) -> Image.Image:
    """A black RGB image of the given (width, height); cached, so all blank slots of one size share one object."""
    return Image.new("RGB", size, (0, 0, 0))
