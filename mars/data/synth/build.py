"""Write a synthetic task as a dataset: PNG images plus train/val/test parquet files in the MARS row schema.

Determinism: sample ``i`` draws everything from ``numpy.random.default_rng([seed, task salt, i])``, so the
same arguments give byte-identical images and parquet files, and sample ``i`` does not depend on ``--num``.
Samples are split in index order: the first ones train, then val, then test.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np

from mars.data import schema
from mars.data.synth import depth_vqa, ir_grounding, ir_presence, multiview_vqa
from mars.data.synth.common import SynthOptions, SynthSample, SynthTask, check_size
from mars.data.synth.drawing import save_png

TASKS: dict[str, SynthTask] = {task.name: task for task in (ir_grounding.TASK, depth_vqa.TASK, multiview_vqa.TASK, ir_presence.TASK)}
CONFIG_FILE = "synth_config.json"


@dataclass
class SynthResult:
    out_dir: str
    parquet_files: dict[str, str]  # split -> path
    counts: dict[str, int]  # split -> rows
    sources: list[str]


def get_task(name: str) -> SynthTask:
    if name not in TASKS:
        raise ValueError(f"unknown synthetic task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def make_options(
    task: SynthTask, image_size: Optional[tuple[int, int]] = None, hard_frac: float = 0.8, views: int = 6
) -> SynthOptions:
    width, height = image_size or task.default_size
    check_size(width, height)
    if not 0.0 <= hard_frac <= 1.0:
        raise ValueError(f"--hard-frac must be in [0, 1], got {hard_frac}")
    options = SynthOptions(width=width, height=height, hard_frac=hard_frac, views=views)
    task.sources(options)  # validates task-specific options (e.g. --views) before any work
    return options


def generate_sample(task: SynthTask | str, seed: int, index: int, options: SynthOptions) -> SynthSample:
    """Sample ``index`` of a task, in memory (what ``synthesize`` writes; tests use it for the facts in meta)."""
    task = get_task(task) if isinstance(task, str) else task
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    rng = np.random.default_rng([seed, task.salt, index])
    sample = task.make_sample(rng, options)
    if list(sample.images) != task.sources(options):  # a task bug would silently mislabel the anchors
        raise AssertionError(f"{task.name}: images {list(sample.images)} != sources {task.sources(options)}")
    return sample


def split_counts(num: int, val_frac: float, test_frac: float) -> dict[str, int]:
    """Rows per split: val and test get round(num * frac) each, train the rest."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if not (0 <= val_frac and 0 <= test_frac and val_frac + test_frac < 1):
        raise ValueError(f"--val-frac and --test-frac must be >= 0 and sum below 1, got {val_frac}, {test_frac}")
    val, test = round(num * val_frac), round(num * test_frac)
    return {"train": num - val - test, "val": val, "test": test}


def synthesize(
    task: str,
    out_dir: str,
    num: int,
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    image_size: Optional[tuple[int, int]] = None,
    hard_frac: float = 0.8,
    views: int = 6,
    progress: bool = False,
) -> SynthResult:
    """Generate ``num`` samples of ``task`` under ``out_dir`` (images/ and {train,val,test}.parquet).

    Image paths in the rows are ``os.path.join(out_dir, "images", NAME)`` with ``out_dir`` exactly as given:
    a relative ``out_dir`` gives paths relative to the working directory, which is where training must run.
    """
    spec = get_task(task)
    options = make_options(spec, image_size, hard_frac, views)
    counts = split_counts(num, val_frac, test_frac)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    splits = [split for split in schema.SPLITS for _ in range(counts[split])]
    rows: dict[str, list] = {split: [] for split in schema.SPLITS}
    step = max(1, num // 10)
    for index, split in enumerate(splits):
        sample = generate_sample(spec, seed, index, options)
        images = []
        for source, array in sample.images.items():
            path = os.path.join(image_dir, f"{index:06d}_{source}.png")
            save_png(path, array)
            images.append((path, source))
        rows[split].append(
            schema.make_row(
                data_source=f"mars_synth/{spec.name}",
                question=sample.question,
                images=images,
                reward=sample.reward,
                ground_truth=sample.answer,
                index=index,
                split=split,
                task=spec.name,
                answer_sources=sample.answer_sources,
                image_size=(options.width, options.height),
                scenario=sample.scenario,
                regions=sample.regions,
            )
        )
        if progress and ((index + 1) % step == 0 or index + 1 == num):
            print(f"[mars data synth] {spec.name}: {index + 1}/{num} samples", file=sys.stderr, flush=True)
    files = {}
    for split in schema.SPLITS:
        files[split] = os.path.join(out_dir, f"{split}.parquet")
        schema.write_parquet(rows[split], files[split])
    config = {
        "task": spec.name,
        "num": num,
        "seed": seed,
        "val_frac": val_frac,
        "test_frac": test_frac,
        "image_size": [options.width, options.height],
        "hard_frac": hard_frac,
        "views": views if spec.name == "multiview_vqa" else None,
        "sources": spec.sources(options),
        "counts": counts,
    }
    with open(os.path.join(out_dir, CONFIG_FILE), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return SynthResult(out_dir=out_dir, parquet_files=files, counts=counts, sources=spec.sources(options))
