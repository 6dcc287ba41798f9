"""Decode and process each distinct image of a batch once, however many prompts and variants show it.

A MARS step shows every source image in the full prompt and again in one or more mono-source variants (SPEC §2):
with K sources and the ``duplicate`` mode, an image appears in up to 1 + K prompts. Decoding (JPEG/PNG) and the
image processor (resize, normalise, patchify) are the expensive part of the data path, so ``ImageCache`` does them
once per distinct image and hands out the same per-image tensors to every prompt that needs them.

Distinct means: the same path (after ``file://`` and normalisation), or the same Python object (a PIL image, a bytes
value). Variants built by ``mars.anchors.variants`` share the original prompt's image objects, and blank slots of
one size share one cached black image, so identity is exactly the right key. The cache keeps a reference to every
keyed object: an id can then never be reused by another object while the cache lives. Create one cache per batch
(per step), not one per process, so that memory does not grow.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Hashable, Iterable

import torch
from PIL import Image


@dataclass(frozen=True)
class ProcessedImage:
    """One image as the model consumes it: its patch rows and its (t, h, w) patch grid."""

    pixel_values: torch.Tensor  # (t*h*w, channels * temporal_patch * patch * patch)
    grid_thw: torch.Tensor  # (3,) int64
    num_tokens: int  # <|image_pad|> tokens it takes in the prompt: t*h*w / merge_size**2


@dataclass
class CacheStats:
    """How much work the cache saved: ``requests`` image slots served by ``processed`` image-processor runs."""

    requests: int = 0  # image slots looked up (over all prompts and variants)
    decoded: int = 0  # images decoded from files or bytes
    processed: int = 0  # images run through the image processor


def _strip_file_scheme(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _is_encoded(image: Any) -> bool:
    """Whether the value must be read from a file or bytes (as opposed to an image already in memory)."""
    if isinstance(image, dict):
        return image.get("bytes") is not None or bool(image.get("path")) or _is_encoded(image.get("image"))
    return isinstance(image, (str, os.PathLike, bytes, bytearray))


def image_key(image: Any) -> Hashable:
    """The cache key of an image value: its normalised path, or the identity of the object."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return ("object", id(image["bytes"]))
        if image.get("path"):
            image = image["path"]
        elif image.get("image") is not None:
            return image_key(image["image"])
        else:
            raise TypeError(f"an image dict needs 'bytes', 'path' or 'image', got keys {sorted(image)}")
    if isinstance(image, (str, os.PathLike)):
        return ("path", os.path.normpath(os.path.abspath(_strip_file_scheme(os.fspath(image)))))
    return ("object", id(image))


def decode_image(image: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, a path (optionally ``file://``), bytes, or ``{"bytes"|"path"|"image": ...}``.

    PIL images already in RGB are returned as they are (no copy): the image processor only reads them.
    """
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return decode_image(image["bytes"])
        if image.get("path"):
            return decode_image(image["path"])
        if image.get("image") is not None:
            return decode_image(image["image"])
        raise TypeError(f"an image dict needs 'bytes', 'path' or 'image', got keys {sorted(image)}")
    if isinstance(image, (bytes, bytearray)):
        with Image.open(BytesIO(image)) as opened:
            return opened.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        path = _strip_file_scheme(os.fspath(image))
        try:
            with Image.open(path) as opened:
                return opened.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot decode image {path!r}: {exc}") from exc
    raise TypeError(f"unsupported image value of type {type(image).__name__}: use a path, bytes or a PIL image")


class ImageCache:
    """Per-batch cache: ``prepare(images)`` decodes and processes the new ones in one image-processor call;
    ``cache[image]`` then returns its ``ProcessedImage``.

    ``decode_threads`` > 1 decodes files in a thread pool (Pillow releases the GIL while decoding).
    """

    def __init__(self, image_processor, decode_threads: int = 1):
        self.image_processor = image_processor
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        self.decode_threads = max(1, int(decode_threads))
        self.stats = CacheStats()
        self._entries: dict[Hashable, ProcessedImage] = {}
        self._keepalive: list[Any] = []  # see the module docstring: keyed objects must outlive the cache

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, image: Any) -> bool:
        return image_key(image) in self._entries

    def __getitem__(self, image: Any) -> ProcessedImage:
        self.stats.requests += 1
        try:
            return self._entries[image_key(image)]
        except KeyError:
            raise KeyError(f"image {image!r} was not prepared: call ImageCache.prepare() with it first") from None

    def prepare(self, images: Iterable[Any]) -> None:
        """Decode and process every image not seen before, all in one batched image-processor call."""
        pending: dict[Hashable, Any] = {}
        for image in images:
            key = image_key(image)
            if key not in self._entries and key not in pending:
                pending[key] = image
        if not pending:
            return
        values = list(pending.values())
        decoded = self._decode_all(values)
        self.stats.decoded += sum(_is_encoded(v) for v in values)
        out = self.image_processor(images=decoded, return_tensors="pt")
        grids = out["image_grid_thw"]
        rows = grids.prod(dim=-1).tolist()
        for (key, value), pixel_values, grid in zip(pending.items(), torch.split(out["pixel_values"], rows), grids):
            tokens = int(grid.prod()) // self.merge_size**2
            self._entries[key] = ProcessedImage(pixel_values=pixel_values, grid_thw=grid, num_tokens=tokens)
            self._keepalive.append(value)
        self.stats.processed += len(values)

    def _decode_all(self, values: list[Any]) -> list[Image.Image]:
        if self.decode_threads == 1 or len(values) < 2:
            return [decode_image(v) for v in values]
        with ThreadPoolExecutor(self.decode_threads) as pool:
            return list(pool.map(decode_image, values))
