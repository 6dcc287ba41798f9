"""mars data: build, convert and check multi-source datasets.

examples (each one runs as written, in this order, from the repository root):
  mars data synth --task depth_vqa --out outputs/data/depth_vqa --num 200 --seed 0
  mars data check outputs/data/depth_vqa
  mars data convert to-json outputs/data/depth_vqa/test.parquet outputs/data/depth_vqa/test_questions.json
  mars data convert to-parquet outputs/data/depth_vqa/test_questions.json outputs/data/depth_vqa/test_again.parquet
  mars data convert to-sft outputs/data/depth_vqa/train.parquet outputs/data/depth_vqa/sft.json
  mars data convert to-parquet tests/data/reference-data/llvip_eval.json outputs/data/llvip/test.parquet

to-json keeps the question exactly as training showed it (with the answer-format instruction), so that inference
asks the model what it was trained on; --strip-instruction removes the instruction.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from mars.data import check, convert, schema
from mars.data.synth import TASKS, synthesize


def _image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 112x112, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mars data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a synthetic multi-source task (deterministic by seed)")
    synth.add_argument("--task", required=True, choices=sorted(TASKS))
    synth.add_argument("--out", required=True, help="output directory (images/ and train/val/test.parquet)")
    synth.add_argument("--num", type=int, required=True, help="number of samples over all splits")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--val-frac", type=float, default=0.1)
    synth.add_argument("--test-frac", type=float, default=0.1)
    synth.add_argument("--views", type=int, default=6, help="multiview_vqa: number of camera views (2..6)")
    synth.add_argument(
        "--hard-frac", type=float, default=0.8,
        help="share of samples where only the dominant source carries the answer (ir_grounding, depth_vqa)",
    )
    synth.add_argument("--image-size", type=_image_size, default=None, help="WIDTHxHEIGHT, multiples of 28")
    synth.add_argument("--quiet", action="store_true")

    conv = commands.add_parser("convert", help="convert between reference JSON, parquet and LLaMA-Factory SFT JSON")
    kinds = conv.add_subparsers(dest="kind", required=True)
    to_parquet = kinds.add_parser("to-parquet", help="reference question JSON -> parquet (MARS row schema)")
    to_parquet.add_argument("input")
    to_parquet.add_argument("output")
    to_parquet.add_argument("--sources", help="source names for every item, comma separated (default: inferred)")
    to_parquet.add_argument("--data-source", help="data_source column (default: from the file name)")
    to_parquet.add_argument("--split", choices=schema.SPLITS, help="extra_info.split (default: from the file name)")
    to_parquet.add_argument("--no-instruction", action="store_true", help="do not append the think/answer instruction")
    to_parquet.add_argument("--coord-format", default=schema.ABSOLUTE, choices=("absolute", "qwen2_5_vl", "qwen3_vl"))
    to_parquet.add_argument("--base-dir", default=".", help="directory the image paths are relative to (default: .)")
    to_json = kinds.add_parser("to-json", help="parquet -> reference question JSON (for evaluation)")
    to_json.add_argument("input")
    to_json.add_argument("output")
    to_json.add_argument("--include-sources", action="store_true", help="keep each image part's 'source' key")
    to_json.add_argument("--strip-instruction", action="store_true",
                         help="drop the think/answer instruction that training appended (kept by default)")
    to_json.add_argument("--keep-instruction", action="store_true", help=argparse.SUPPRESS)  # the default now
    to_sft = kinds.add_parser("to-sft", help="parquet -> LLaMA-Factory multimodal SFT JSON (cold start)")
    to_sft.add_argument("input")
    to_sft.add_argument("output")
    to_sft.add_argument("--label", default="person", help="grounding label in the target answers")

    chk = commands.add_parser("check", help="validate a dataset; exit code 1 when any row is bad")
    chk.add_argument("path", help="a .parquet file, a directory with train/val/test.parquet, or a reference .json")
    chk.add_argument("--reward", default="auto", choices=("auto", *schema.REWARDS))
    chk.add_argument("--min-pixels", type=int, default=check.DEFAULT_MIN_PIXELS)
    chk.add_argument("--max-pixels", type=int, default=check.DEFAULT_MAX_PIXELS)
    chk.add_argument("--limit-errors", type=int, default=20, help="how many problem rows to print")
    chk.add_argument("--base-dir", default=None, help="directory relative image paths start from (default: cwd)")
    chk.add_argument("--header-only", action="store_true", help="read image headers only (faster, misses corruption)")
    chk.add_argument("--max-prompt-length", type=int, default=None,
                     help="also check that every prompt and mono-source variant fits this many tokens (the rollout's "
                          "prompt_length = data.max_prompt_length); text is counted with --tokenizer")
    chk.add_argument("--variant-mode", default="duplicate", choices=("duplicate", "blank", "drop"),
                     help="mars.variant_mode of the run, for --max-prompt-length")
    chk.add_argument("--tokenizer", default=None, help="model or tokenizer path that counts the text tokens")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: return the code instead of leaving the process
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "convert":
            return _convert(args)
        return _check(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"mars data {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _synth(args) -> int:
    result = synthesize(
        args.task, args.out, args.num, seed=args.seed, val_frac=args.val_frac, test_frac=args.test_frac,
        image_size=args.image_size, hard_frac=args.hard_frac, views=args.views, progress=not args.quiet,
    )
    counts = ", ".join(f"{split} {n}" for split, n in result.counts.items())
    print(f"wrote {args.task} to {args.out}: {counts}; sources {result.sources}")
    return 0


def missing_images(rows, base_dir: str) -> tuple[int, int]:
    """(image paths of ``rows`` that name no file, all image paths)."""
    paths = [image.get("image") for row in rows for image in row.get("images") or [] if isinstance(image, dict)]
    paths = [p for p in paths if isinstance(p, str)]
    return sum(not os.path.isfile(check.resolve(p, base_dir)) for p in paths), len(paths)


def _convert(args) -> int:
    if args.kind == "to-parquet":
        rows = convert.reference_json_to_parquet(
            args.input, args.output, data_source=args.data_source, split=args.split,
            sources=convert.parse_sources_option(args.sources), instruction=not args.no_instruction,
            coord_format=args.coord_format, base_dir=args.base_dir,
        )
        names = sorted({tuple(image["source"] for image in row["images"]) for row in rows})
        print(f"wrote {len(rows)} rows to {args.output}; source names {[list(n) for n in names][:3]}")
        missing, total = missing_images(rows, args.base_dir)
        if missing:
            print(f"warning: {missing} of {total} image paths do not exist under {os.path.abspath(args.base_dir)}: "
                  f"{check.REFERENCE_IMAGES_HINT}", file=sys.stderr)
    elif args.kind == "to-json":
        items = convert.parquet_to_reference_json(
            args.input, args.output, include_sources=args.include_sources,
            keep_instruction=not args.strip_instruction,
        )
        print(f"wrote {len(items)} questions to {args.output}")
    else:
        examples = convert.parquet_to_llamafactory(args.input, args.output, label=args.label)
        print(f"wrote {len(examples)} SFT examples to {args.output}")
    return 0


def _check(args) -> int:
    limit = None
    if args.max_prompt_length is not None:
        tokenizer = None
        if args.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        limit = check.LengthLimit(args.max_prompt_length, args.variant_mode, tokenizer)
    report = check.check_dataset(
        args.path, reward=args.reward, base_dir=args.base_dir, min_pixels=args.min_pixels,
        max_pixels=args.max_pixels, limit_errors=args.limit_errors, decode=not args.header_only, progress=True,
        length_limit=limit,
    )
    print(report.summary())
    return report.exit_code
