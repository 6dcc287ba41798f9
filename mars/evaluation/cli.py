"""Command line: ``python evaluation/eval_qwen.py RESULTS.json grounding|vqa [THRESHOLD] [options]``.

Prints a table and writes the report as JSON beside the results (``RESULTS.json`` -> ``RESULTS.report.json``).
Exit status 0 on success, 2 on unusable input (with a message naming the file and item).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from mars.evaluation import evaluate, reference
from mars.evaluation.results import ResultsError, grounding_truth, load_results, vqa_truth
from mars.rewards import coords

EXIT_INPUT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval_qwen.py", description="Score a RESULTS.json of generated answers (grounding IoU or VQA accuracy)."
    )
    parser.add_argument("results", type=Path, help="JSON list of {content: [generated text], ground_truth: GT}")
    parser.add_argument("task", choices=(evaluate.GROUNDING, evaluate.VQA))
    parser.add_argument(
        "threshold", type=float, nargs="?", default=0.5, help="grounding: IoU a sample must exceed (default 0.5)"
    )
    parser.add_argument(
        "--coords",
        choices=coords.COORD_FORMATS,
        default=coords.ABSOLUTE,
        help="coordinate convention of the predictions (default: absolute, compared as written)",
    )
    parser.add_argument(
        "--image-size", type=float, nargs=2, metavar=("W", "H"), help="original image size for --coords conversion"
    )
    parser.add_argument("--min-pixels", type=int, default=coords.DEFAULT_MIN_PIXELS, help="qwen2_5_vl processor")
    parser.add_argument("--max-pixels", type=int, default=coords.DEFAULT_MAX_PIXELS, help="qwen2_5_vl processor")
    parser.add_argument("--report", type=Path, help="where to write the JSON report (default: beside the results)")
    return parser


def default_report_path(results: Path) -> Path:
    """``RESULTS.json`` -> ``RESULTS.report.json`` (any other name gets ``.report.json`` appended)."""
    if results.suffix == ".json":
        return results.with_suffix(".report.json")
    return results.with_name(results.name + ".report.json")


def item_settings(args: argparse.Namespace, path: Path, index: int, item: dict[str, Any]) -> coords.CoordSettings:
    """Coordinate settings for one item; a per-item ``image_size`` overrides ``--image-size``."""
    settings = coords.CoordSettings.from_extra_info(
        {
            "coord_format": args.coords,
            "image_size": item.get("image_size", args.image_size),
            "min_pixels": args.min_pixels,
            "max_pixels": args.max_pixels,
        }
    )
    if settings.scale() is None:
        raise ResultsError(
            f"{path}: item {index}: --coords {args.coords} needs the original image size; pass --image-size W H "
            "or give the item an \"image_size\": [W, H]"
        )
    return settings


def evaluate_items(args: argparse.Namespace, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The report for all items of the results file."""
    path = args.results
    if args.task == evaluate.GROUNDING:
        samples = [
            evaluate.grounding_sample(
                evaluate.generated_text(item["content"]),
                grounding_truth(path, index, item["ground_truth"]),
                item_settings(args, path, index, item),
                reference_text=reference.generation(item["content"]),
            )
            for index, item in enumerate(items)
        ]
        return evaluate.grounding_report(samples, args.threshold)
    samples = [
        evaluate.vqa_sample(
            evaluate.generated_text(item["content"]),
            vqa_truth(path, index, item["ground_truth"]),
            reference_text=reference.generation(item["content"]),
            # The reference reads the ground truth as written (an <answer> wrapper included).
            reference_truth=item["ground_truth"] if isinstance(item["ground_truth"], str) else None,
        )
        for index, item in enumerate(items)
    ]
    return evaluate.vqa_report(samples, args.threshold)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the evaluation; returns the exit status (0 ok, 2 unusable input)."""
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        print(f"error: threshold must be between 0 and 1, got {args.threshold}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    try:
        items = load_results(args.results)
        report = evaluate_items(args, items)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    report["results_file"] = str(args.results)
    report_path = args.report or default_report_path(args.results)
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(evaluate.format_report(report, str(args.results)))
    print(f"report written to {report_path}")
    return 0
