"""``mars eval sources MODEL QUESTIONS``: the model's accuracy fused and per source, on any question file.

    mars eval sources MODEL QUESTIONS [--out REPORT.json] [--task vqa|grounding] [--threshold 0.5]
                      [--variant-mode duplicate|drop|blank] [--max-new-tokens N] [--batch-size N]
    sh evaluation/eval_sources.sh MODEL QUESTIONS.json REPORT.json [vqa|grounding] [THRESHOLD]

QUESTIONS is a reference question JSON (the reference release's format) or a parquet file of ours. Every question
with K >= 2 sources is answered fused and through each mono-source variant (``--variant-mode``, built as the
anchors are), greedy, with the same scoring as ``eval_qwen.sh``: the IoU threshold for grounding, the reference's
VQA rule; an unparsed answer is wrong. The views of ``--batch-size`` questions go through ONE batched generate
call, each image processed once per call. REPORT.json (default: QUESTIONS.sources.json) holds the report of
``mars.evaluation.sources``; REPORT.png beside it shows the accuracy per view, the interference and the synergy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from mars.anchors import VARIANT_MODES, build_mono_source_variants
from mars.evaluation import evaluate
from mars.evaluation.results import ResultsError, grounding_truth, vqa_truth
from mars.evaluation.sources import FUSED, ItemViews, Verdict, format_source_report, source_report

EXIT_INPUT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mars eval sources", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a Hugging Face model directory (Qwen2.5-VL / Qwen3-VL, or a merged MARS run)")
    parser.add_argument("questions", type=Path, help="a reference question JSON or a parquet file")
    parser.add_argument("--out", type=Path, help="the report (default: QUESTIONS.sources.json beside the questions)")
    parser.add_argument("--task", choices=(evaluate.VQA, evaluate.GROUNDING),
                        help="default: grounding when the ground truths are boxes, else vqa")
    parser.add_argument("--threshold", type=float, default=0.5, help="grounding: IoU a right answer must exceed")
    parser.add_argument("--variant-mode", choices=VARIANT_MODES, default="duplicate",
                        help="how a mono-source variant shows its source (default: duplicate, the reference)")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8, help="questions per generate call (all their views)")
    parser.add_argument("--backend", choices=("auto", "vllm", "hf"), default="auto")
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads on the CPU (0 = torch's default)")
    return parser


def load_items(path: Path) -> list[dict[str, Any]]:
    """Question items in the reference format, each with a ``data_source``; a parquet file is converted as
    ``mars data convert to-json`` does (the training prompt's text, source names kept)."""
    from mars.inference import load_questions

    if path.suffix == ".parquet":
        from mars.data.convert import read_rows, row_to_reference_item

        items = []
        for row in read_rows(str(path)):
            item = row_to_reference_item(row, include_sources=True)
            item["data_source"] = row.get("data_source") or path.stem
            items.append(item)
        return items
    items = load_questions(path)
    for item in items:
        extra = item.get("extra_info") if isinstance(item.get("extra_info"), dict) else {}
        item["data_source"] = str(item.get("data_source") or extra.get("data_source") or path.stem)
    return items


def source_names(content: Sequence[dict[str, Any]]) -> list[str]:
    """Each image part's ``source``, else names read from the paths (``visible``/``infrared``, ``CAM_FRONT``, ...),
    else ``image_0``..``image_{K-1}``."""
    from mars.data.convert import infer_source_names

    images = [p for p in content if isinstance(p, dict) and p.get("type") == "image"]
    given = [p.get("source") for p in images]
    if all(isinstance(n, str) and n for n in given) and len(set(given)) == len(given):
        return list(given)
    return infer_source_names([str(p.get("image", "")) for p in images])


def views_of(item: dict[str, Any], mode: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(view name, messages) of a question: ``fused``, then one per source when it has two or more."""
    messages = [{"role": item.get("role", "user"), "content": item["content"]}]
    names = source_names(item["content"])
    variants = build_mono_source_variants(messages, names, mode) if len(names) >= 2 else []
    return [(FUSED, messages)] + [(v.source, v.messages) for v in variants]


def guess_task(items: Sequence[dict[str, Any]]) -> str:
    return evaluate.GROUNDING if isinstance(items[0]["ground_truth"], list) else evaluate.VQA


def verdict(task: str, text: str, truth: Any, threshold: float) -> Verdict:
    """One answer scored as ``eval_qwen.sh`` scores it (boxes compared as written)."""
    if task == evaluate.GROUNDING:
        sample = evaluate.grounding_sample(text, truth)
        return Verdict(sample.mean_iou > threshold, sample.parsed, sample.mean_iou)
    sample = evaluate.vqa_sample(text, truth)
    return Verdict(sample.correct, sample.parsed)


def answer_views(model: str, items: list[dict[str, Any]], mode: str, args: argparse.Namespace) -> list[dict[str, str]]:
    """For each item, view name -> generated text. HF: the views of ``batch_size`` items per generate call."""
    from mars.inference import HFGenerator, generate_vllm, use_vllm
    from mars.training.progress import Progress, quiet_library_bars

    views = [views_of(item, mode) for item in items]
    flat = [(i, name, messages) for i, item_views in enumerate(views) for name, messages in item_views]
    answers: list[dict[str, str]] = [{} for _ in items]
    if use_vllm(args.backend):
        texts = generate_vllm(model, [{"content": m[0]["content"]} for _, _, m in flat], args.max_new_tokens)
        for (i, name, _), text in zip(flat, texts):
            answers[i][name] = text
        return answers
    quiet_library_bars()
    generator = HFGenerator(model)
    starts = range(0, len(items), args.batch_size)
    bar = Progress(len(starts), f"answering {len(items)} questions, every view")
    for start in starts:
        chunk = [(i, name, m) for i, name, m in flat if start <= i < start + args.batch_size]
        for (i, name, _), text in zip(chunk, generator.generate([m for _, _, m in chunk], args.max_new_tokens)):
            answers[i][name] = text
        bar.update()
    bar.close()
    return answers


def score(items: list[dict[str, Any]], answers: list[dict[str, str]], task: str, threshold: float,
          path: Path) -> list[ItemViews]:
    out = []
    for index, (item, texts) in enumerate(zip(items, answers)):
        truth = (grounding_truth(path, index, item["ground_truth"]) if task == evaluate.GROUNDING
                 else vqa_truth(path, index, item["ground_truth"]))
        verdicts = {name: verdict(task, text, truth, threshold) for name, text in texts.items()}
        fused = verdicts.pop(FUSED)
        out.append(ItemViews(fused, verdicts, item["data_source"]))
    return out


def plot_report(report: dict[str, Any], path: Path, title: str) -> Path:
    """Accuracy per view (the fused bar first, the best source's line across), then interference and synergy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["views"])
    accuracy = [report["views"][n]["accuracy"] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(names) + 4), 3.8),
                                      gridspec_kw={"width_ratios": [max(len(names), 2), 2]})
    colours = ["tab:blue" if n == FUSED else "tab:gray" for n in names]
    left.bar(names, accuracy, color=colours)
    for x, value in enumerate(accuracy):
        left.text(x, value + 1, f"{value:.1f}", ha="center", fontsize=8)
    left.set_ylim(0, 105)
    left.set_ylabel("accuracy (%)")
    left.set_title("accuracy per view (fused vs each source alone)", fontsize=10)
    left.tick_params(axis="x", labelrotation=30 if len(names) > 4 else 0, labelsize=8)
    rates = {"interference": report["interference_rate"], "synergy": report["synergy_rate"]}
    right.bar(list(rates), list(rates.values()), color=["tab:red", "tab:green"])
    for x, value in enumerate(rates.values()):
        right.text(x, value + 1, f"{value:.1f}", ha="center", fontsize=8)
    right.set_ylim(0, max(max(rates.values()) * 1.3, 10))
    right.set_ylabel("% of multi-source questions")
    right.set_title("fusion hurt / helped", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from mars.inference import image_search_dirs, resolve_images

    args = build_parser().parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0 or args.batch_size < 1 or args.max_new_tokens < 1:
        print("mars eval sources: --threshold must be in [0, 1], --batch-size and --max-new-tokens >= 1",
              file=sys.stderr)
        return EXIT_INPUT_ERROR
    if args.cpu_threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(args.cpu_threads)
    items = load_items(args.questions)
    if not items:
        print(f"mars eval sources: {args.questions} holds no questions", file=sys.stderr)
        return EXIT_INPUT_ERROR
    resolve_images(items, args.questions, image_search_dirs(args.questions), "mars eval sources")  # before loading
    task = args.task or guess_task(items)
    try:
        for index, item in enumerate(items):  # bad ground truths stop here, before the model loads, naming the item
            (grounding_truth if task == evaluate.GROUNDING else vqa_truth)(args.questions, index, item["ground_truth"])
        answers = answer_views(args.model, items, args.variant_mode, args)
        report = source_report(score(items, answers, task, args.threshold, args.questions))
    except ResultsError as error:
        print(f"mars eval sources: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    report.update(task=task, threshold=args.threshold if task == evaluate.GROUNDING else None,
                  variant_mode=args.variant_mode, model=str(args.model), questions=str(args.questions),
                  note="accuracy and rates in percent of the multi-source questions; unparsed answers count as wrong")
    out = args.out or args.questions.with_name(args.questions.stem + ".sources.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    plot = plot_report(report, out.with_suffix(".png"), f"{Path(args.model).name} on {args.questions.name} "
                                                         f"({args.variant_mode} variants)")
    print(format_source_report(report, f"per-source evaluation of {args.model} on {args.questions} ({task})"))
    for name, sub in report.get("by_data_source", {}).items():
        print()
        print(format_source_report(sub, f"data source {name}"))
    print(f"report written to {out}; plot {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
