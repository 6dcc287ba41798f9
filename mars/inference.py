"""Batched inference on a question file: ``sh evaluation/qwen_inference.sh MODEL QUESTIONS.json RESULTS.json``.

QUESTIONS.json is the reference question format (a list of user messages with image and text parts, plus
``ground_truth``); RESULTS.json is what ``evaluation/eval_qwen.sh`` scores: ``{"content": [text], "ground_truth": GT}``
per question, in order (plus ``image_size`` of the first image, for ``eval_qwen.sh --coords``).

Backends: vLLM when it is installed and a GPU is present (``--backend auto``, the default), else transformers on
the CPU or one GPU. Decoding is greedy. The vLLM path has never run in this repository's CI (no GPU there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch


def load_questions(path: Path) -> list[dict[str, Any]]:
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"inference: cannot read {path}: {exc}")
    if not isinstance(items, list):
        raise SystemExit(f"inference: {path} must hold a JSON list of questions")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("content"), list) or "ground_truth" not in item:
            raise SystemExit(f"inference: {path} item {i} needs a 'content' list and a 'ground_truth'")
    return items


def image_search_dirs(questions: Path) -> list[Path]:
    """Where a relative image path of a question file may be relative to, in order: the directory the command was
    run from (``qwen_inference.sh`` passes it in ``MARS_CALLER_CWD``, as it runs from the repository root), the
    repository root (the reference data's ``data/images/...``), and the question file's own directory."""
    caller = Path(os.environ.get("MARS_CALLER_CWD") or Path.cwd())
    dirs = [caller, Path(__file__).resolve().parents[1], questions.resolve().parent]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def resolve_images(items: list[dict[str, Any]], questions: Path, search: list[Path], prog: str = "inference") -> None:
    """Make every relative image path absolute (in place), or stop before the model loads, naming the question and
    the places looked in: a missing image found hours into inference would waste the run."""
    for i, item in enumerate(items):
        for part in item["content"]:
            if not isinstance(part, dict) or part.get("type") != "image" or not isinstance(part.get("image"), str):
                continue
            image = part["image"]
            if image.startswith(("http://", "https://", "data:")):
                continue
            candidates = [Path(image)] if Path(image).is_absolute() else [d / image for d in search]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                tried = ", ".join(str(d) for d in search)
                raise SystemExit(f"{prog}: {questions} item {i}: image {image!r} not found "
                                 f"(relative paths are looked up in: {tried}); run from the directory the paths "
                                 f"are relative to, or make them absolute")
            part["image"] = str(found)


def to_messages(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": item.get("role", "user"), "content": item["content"]}]


def first_image_size(item: dict[str, Any]) -> list[int] | None:
    from PIL import Image

    for part in item["content"]:
        if part.get("type") == "image":
            try:
                with Image.open(part["image"]) as im:
                    return list(im.size)
            except (OSError, KeyError, TypeError):
                return None
    return None


class HFGenerator:
    """A Hugging Face model loaded once; ``generate`` answers many prompts in ONE batched greedy ``generate`` call
    (left-padded; each distinct image of the call decoded and processed once)."""

    def __init__(self, model_path: str):
        from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessorList

        from mars.hf.decoding import BanTokens, eos_token_ids, vision_token_ids
        from mars.processing import MultimodalEncoder

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.encoder = MultimodalEncoder(self.processor)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.ban = LogitsProcessorList([BanTokens(vision_token_ids(self.tokenizer))])

    def generate(self, prompts: list[list[dict[str, Any]]], max_new_tokens: int) -> list[str]:
        from mars.hf.decoding import cut_at_eos
        from mars.processing import ImageCache, collate

        inputs = self.encoder.encode(prompts, ImageCache(self.processor.image_processor))
        batch = {k: v.to(self.device) for k, v in collate(inputs, self.pad_id, "left").items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        with torch.no_grad():
            out = self.model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=self.pad_id,
                                      eos_token_id=sorted(self.eos_ids), logits_processor=self.ban)
        responses, _ = cut_at_eos(out[:, batch["input_ids"].shape[1] :].cpu(), self.eos_ids)
        return self.tokenizer.batch_decode(responses, skip_special_tokens=True)


def generate_hf(model_path: str, items: list[dict], batch_size: int, max_new_tokens: int) -> list[str]:
    from mars.training.progress import Progress, quiet_library_bars

    quiet_library_bars()
    generator = HFGenerator(model_path)
    texts: list[str] = []
    starts = range(0, len(items), batch_size)
    bar = Progress(len(starts), "inference (batches)")  # plain lines when the output is a log file
    for start in starts:
        texts += generator.generate([to_messages(i) for i in items[start : start + batch_size]], max_new_tokens)
        bar.update()
    bar.close()
    return texts


def generate_vllm(model_path: str, items: list[dict], max_new_tokens: int) -> list[str]:
    from PIL import Image
    from vllm import LLM, SamplingParams

    max_images = max(sum(p.get("type") == "image" for p in i["content"]) for i in items)
    llm = LLM(model=model_path, limit_mm_per_prompt={"image": max(max_images, 1)})
    conversations = []
    for item in items:
        content = [{"type": "image_pil", "image_pil": Image.open(p["image"]).convert("RGB")} if p.get("type") == "image"
                   else {"type": "text", "text": p.get("text", "")} for p in item["content"]]
        conversations.append([{"role": "user", "content": content}])
    outputs = llm.chat(conversations, SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    return [o.outputs[0].text for o in outputs]


def use_vllm(backend: str) -> bool:
    if backend == "hf":
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        if backend == "vllm":
            raise SystemExit("inference: --backend vllm but vllm is not installed (pip install -e '.[vllm]')")
        return False
    return torch.cuda.is_available() or backend == "vllm"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qwen_inference.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("questions", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--backend", choices=("auto", "vllm", "hf"), default="auto")
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch threads on the CPU (default 1, as the trainer's: tiny models on shared machines; "
                             "0 = torch's default)")
    args = parser.parse_args(argv)
    if args.cpu_threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(args.cpu_threads)

    items = load_questions(args.questions)
    resolve_images(items, args.questions, image_search_dirs(args.questions))
    if use_vllm(args.backend):
        texts = generate_vllm(args.model, items, args.max_new_tokens)
    else:
        texts = generate_hf(args.model, items, args.batch_size, args.max_new_tokens)
    results = []
    for item, text in zip(items, texts):
        result = {"content": [text], "ground_truth": item["ground_truth"]}
        size = first_image_size(item)
        if size is not None:
            result["image_size"] = size
        results.append(result)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_name(args.results.name + ".tmp")
    tmp.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    tmp.replace(args.results)
    print(f"wrote {len(results)} answers to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
