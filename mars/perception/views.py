"""Altered views of a prompt's images, for the perception-aware methods: where they are built.

A method asks how the policy's tokens change when the picture changes. The alterations act on the processed pixel
values (Qwen-VL's patch rows), so the prompt's tokens, and the positions of the response, stay what they were:

    patches        square regions of ``patch_size`` model patches per side blacked out, a share ``ratio`` of them,
                   chosen by a seeded generator: one mask per prompt (every rollout of a group sees the same one)
    blank:<source> every patch of one source's image black: the anchors' ``blank`` variant, on pixel values
    no_image       every image black (the tokens stay: "no image" as content, not as a shorter prompt)

Why pixel values: a black image of the same size processes to the same row in every patch (the processor's
normalisation of 0), so blanking here equals processing a black picture (``mars.anchors.variants``, mode ``blank``),
and masking a region of model patches equals masking those pixels before the processor, with no re-encoding and
no re-tokenising on either engine. ``drop`` (a shorter prompt) would move every response position and is not
offered as a perception view.

Qwen-VL's patch rows come in merge blocks: for an image of grid (t, h, w) and merge size m, row
``((t * h/m + y // m) * w/m + x // m) * m * m + (y % m) * m + x % m`` holds the patch at (y, x) of frame t.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import torch

VIEW_KINDS = ("patches", "blank", "no_image")


@dataclass(frozen=True)
class AlteredView:
    """One alteration of a prompt's images (module docstring). ``name`` is how its signals are keyed."""

    name: str
    kind: str  # patches | blank | no_image
    ratio: float = 0.0  # patches: share of regions blacked out
    patch_pixels: int = 0  # patches: region side in pixels, a multiple of the model's patch (0: one model patch)
    source: str = ""  # blank: the source whose image goes black

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"view kind {self.kind!r}: valid {', '.join(VIEW_KINDS)}")
        if self.kind == "patches" and not 0.0 < self.ratio < 1.0:
            raise ValueError(f"view {self.name}: mask ratio {self.ratio} is outside (0, 1)")
        if self.kind == "patches" and self.patch_pixels < 0:
            raise ValueError(f"view {self.name}: patch size {self.patch_pixels} pixels is negative")
        if self.kind == "blank" and not self.source:
            raise ValueError(f"view {self.name}: a blank view names its source")

    def region_side(self, model_patch: int) -> int:
        """The masked region's side in model patches; a ValueError unless the size is a multiple of the patch."""
        if self.patch_pixels == 0:
            return 1
        if self.patch_pixels % model_patch:
            raise ValueError(f"perception.patch_size={self.patch_pixels} is not a multiple of the model's patch size "
                             f"({model_patch} pixels): use a multiple, or null for one model patch")
        return self.patch_pixels // model_patch


def view_seed(seed: int, step: int, group_id: str) -> int:
    """The mask seed of one prompt: a function of (seed, step, group) only, so every engine and every row order
    draws the same mask, and the rollouts of one prompt share it."""
    return zlib.crc32(f"{seed}:{step}:{group_id}".encode()) & 0x7FFFFFFF


def patch_rows(grid_thw: Sequence[int], merge: int) -> torch.Tensor:
    """(t, h, w) -> (t, h, w) tensor of the pixel-value row of each patch (module docstring)."""
    t, h, w = (int(x) for x in grid_thw)
    frame = torch.arange(t).view(t, 1, 1)
    y = torch.arange(h).view(1, h, 1)
    x = torch.arange(w).view(1, 1, w)
    return ((frame * (h // merge) + y // merge) * (w // merge) + x // merge) * merge * merge + (y % merge) * merge + x % merge


def region_mask(h: int, w: int, ratio: float, size: int, generator: torch.Generator) -> torch.Tensor:
    """(h, w) bool patch mask: regions of ``size`` x ``size`` patches (edge regions cut by the border), exactly
    round(ratio * regions) of them chosen at random, at least one."""
    rows, cols = -(-h // size), -(-w // size)
    regions = rows * cols
    count = min(regions, max(1, round(ratio * regions)))
    chosen = torch.zeros(regions, dtype=torch.bool)
    chosen[torch.randperm(regions, generator=generator)[:count]] = True
    grid = chosen.view(rows, cols).repeat_interleave(size, 0).repeat_interleave(size, 1)
    return grid[:h, :w]


def mask_tokens(pixel_values: torch.Tensor, tokens: torch.Tensor, black_row: torch.Tensor, merge: int) -> torch.Tensor:
    """One prompt's pixel values with the patches of the image tokens in ``tokens`` ((image tokens,) bool, image
    after image) black: token k is the merge block of patch rows ``k * m^2 .. (k + 1) * m^2 - 1``."""
    rows = tokens.repeat_interleave(merge * merge)
    if len(rows) != len(pixel_values):
        raise ValueError(f"{len(tokens)} image tokens cover {len(rows)} patch rows, pixel_values has {len(pixel_values)}")
    out = pixel_values.clone()
    out[rows.to(out.device)] = black_row.to(out.dtype)
    return out


def alter_pixel_values(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, sources: Sequence[str],
                       view: AlteredView, black_row: torch.Tensor, merge: int, seed: int, side: int = 1) -> torch.Tensor:
    """One prompt's pixel values under ``view``: rows of ``pixel_values`` (its images in order, ``image_grid_thw``
    one row per image, ``sources`` their names) replaced by ``black_row`` where the view blacks them out; ``side``:
    the masked regions' side in model patches."""
    out = pixel_values.clone()
    black = black_row.to(out.dtype)
    generator = torch.Generator().manual_seed(int(seed))
    start = 0
    for k, grid in enumerate(image_grid_thw.tolist()):
        n = int(grid[0] * grid[1] * grid[2])
        if view.kind == "no_image" or (view.kind == "blank" and k < len(sources) and sources[k] == view.source):
            out[start:start + n] = black
        elif view.kind == "patches":
            t, h, w = (int(x) for x in grid)
            mask = region_mask(h, w, view.ratio, side, generator).expand(t, h, w)
            out[start + patch_rows(grid, merge)[mask]] = black
        start += n
    if start != len(pixel_values):
        raise ValueError(f"image_grid_thw covers {start} patch rows, pixel_values has {len(pixel_values)}")
    return out
