"""Benchmark: the multi-source data path with each image decoded and processed once per step, against processing
every prompt and every mono-source variant separately (what calling the processor per prompt does).

    python benchmarks/bench_data_path.py [--prompts 32] [--size 640x512] [--modes duplicate drop blank] [--repeats 3]

Both paths run side by side in one process, on the same JPEG files on disk (decoding is part of the cost), with the
tiny model's processor (built into a temporary directory; no download). For K = 2 and K = 6 sources per prompt it
reports image slots served per second (over the prompts and all their variants), the best of ``--repeats`` runs of
each, and the speed-up. The results are checked to be equal before timing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mars.anchors.variants import build_mono_source_variants  # noqa: E402
from mars.models import build_tiny_model  # noqa: E402
from mars.processing import decode_image, encode_with_variants, image_values  # noqa: E402
from timing import best_time  # noqa: E402  (benchmarks/timing.py)


def write_images(folder: Path, prompts: int, sources: int, size: tuple[int, int], seed: int = 0) -> list[list[str]]:
    """prompts x sources JPEG files of smooth random content (compresses and decodes like a photo)."""
    rng = np.random.default_rng(seed)
    width, height = size
    paths = []
    for i in range(prompts):
        row = []
        for k in range(sources):
            small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
            path = folder / f"p{i}_s{k}.jpg"
            image.save(path, quality=90)
            row.append(str(path))
        paths.append(row)
    return paths


def make_prompts(paths: list[list[str]]) -> list[list[dict]]:
    names = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
    return [
        [
            {
                "role": "user",
                "content": [
                    *(
                        {"type": "image", "image": path, "source": names[k] if len(row) == 6 else f"source{k}"}
                        for k, path in enumerate(row)
                    ),
                    {"type": "text", "text": "Here are images of the same scene. Detect all person in the images."},
                ],
            }
        ]
        for row in paths
    ]


def per_prompt(processor, prompts, mode):
    """The baseline: every prompt and every variant decoded and processed on its own."""
    outputs = []
    for prompt in prompts:
        for messages in [prompt] + [v.messages for v in build_mono_source_variants(prompt, mode=mode)]:
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            images = [decode_image(image) for image in image_values(messages)]
            outputs.append(processor(text=[text], images=images, return_tensors="pt"))
    return outputs


def cached(processor, prompts, mode, threads):
    batch = encode_with_variants(processor, prompts, mode=mode, decode_threads=threads)
    return [x for i, p in enumerate(batch.prompts) for x in [p, *batch.variants[i]]], batch.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--size", default="640x512", help="source image size WIDTHxHEIGHT (LLVIP is 1280x1024)")
    parser.add_argument("--modes", nargs="+", default=["duplicate", "drop", "blank"])
    parser.add_argument("--arch", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--threads", type=int, default=1, help="decode threads of the cached path")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(1)  # data loading runs in CPU workers; one thread keeps the comparison fair

    from transformers import AutoProcessor

    with tempfile.TemporaryDirectory() as tmp:
        processor = AutoProcessor.from_pretrained(build_tiny_model(Path(tmp) / "model", arch=args.arch))
        print(f"{args.arch} processor, {args.prompts} prompts, {size[0]}x{size[1]} JPEGs, best of {args.repeats}")
        print(f"{'K':>2} {'mode':>9} {'slots':>6} {'distinct':>8} {'per-prompt':>13} {'cached':>13} {'speed-up':>8}")
        for sources in (2, 6):
            folder = Path(tmp) / f"k{sources}"
            folder.mkdir()
            prompts = make_prompts(write_images(folder, args.prompts, sources, size))
            for mode in args.modes:
                reference = per_prompt(processor, prompts, mode)
                ours, stats = cached(processor, prompts, mode, args.threads)
                for ref, enc in zip(reference, ours, strict=True):
                    assert torch.equal(ref["input_ids"], enc.input_ids), "the two paths disagree on input_ids"
                    assert torch.allclose(ref["pixel_values"], enc.pixel_values, atol=1e-5), "pixel_values differ"
                slots = stats.requests
                t_ref = best_time(lambda: per_prompt(processor, prompts, mode), args.repeats)  # noqa: B023
                t_ours = best_time(lambda: cached(processor, prompts, mode, args.threads), args.repeats)  # noqa: B023
                print(
                    f"{sources:>2} {mode:>9} {slots:>6} {stats.processed:>8} {slots / t_ref:>9.0f} im/s "
                    f"{slots / t_ours:>9.0f} im/s {t_ref / t_ours:>7.2f}x"
                )


if __name__ == "__main__":
    main()
