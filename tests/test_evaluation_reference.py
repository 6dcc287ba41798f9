"""``accuracy_reference``: the reference evaluation's number, checked against an independent oracle of its rules.

The oracle below is written from the rules as docs/rewards_and_evaluation.md states them, in another way than
``mars.evaluation.reference``: box notations are matched by a template walker instead of regexes, the
matching is brute force over permutations instead of scipy, and the VQA cleaning uses regex substitutions
instead of the production scanner.
"""

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars.evaluation import cli, reference
from mars.evaluation.evaluate import vqa_sample

FAST = settings(max_examples=80, deadline=None, database=None)

# ---------------------------------------------------------------- the oracle

# Templates: I = digits, D = digits.digits, ~ = optional whitespace, _ = some whitespace, anything else literal.
TEMPLATES = ["(I,~I),~(I,~I)", "[D,~D,~D,~D]", "(D,D),(D,D)", "(D,~D,~D,~D)", "[I,~I,~I,~I]", "<box>I_I_I_I</box>"]


def walk(template: str, text: str, at: int):
    """(numbers, end) when the template matches text at ``at``, else None (greedy; no backtracking needed
    because a number or a space run is always followed by a character of another kind)."""
    numbers = []
    for symbol in template:
        if symbol in "ID":
            start = at
            while at < len(text) and text[at].isdecimal():
                at += 1
            if at == start:
                return None
            if symbol == "D":
                if at >= len(text) or text[at] != ".":
                    return None
                at += 1
                fraction = at
                while at < len(text) and text[at].isdecimal():
                    at += 1
                if at == fraction:
                    return None
            numbers.append(float(text[start:at]))
        elif symbol in "~_":
            start = at
            while at < len(text) and text[at].isspace():
                at += 1
            if symbol == "_" and at == start:
                return None
        elif text.startswith(symbol, at):
            at += 1
        else:
            return None
    return numbers, at


def oracle_boxes(fence: str) -> list:
    for template in TEMPLATES:
        found, at = [], 0
        while at < len(fence):
            hit = walk(template, fence, at)
            if hit:
                found.append(hit[0])
                at = hit[1]
            else:
                at += 1
        if found:
            return found
    return []


def oracle_iou(a, b) -> float:
    width, height = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if width < 0 or height < 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union else 0.0


def oracle_sample_iou(truth, predicted) -> float:
    if not truth and not predicted:
        return 1.0
    if not truth or not predicted:
        return 0.0
    slots = list(range(len(predicted))) + [None] * len(truth)
    best = max(
        sum(oracle_iou(t, predicted[p]) for t, p in zip(truth, choice) if p is not None)
        for choice in itertools.permutations(slots, len(truth))
    )
    return best / len(truth)


def oracle_grounding(items, threshold):
    counted = []
    for item in items:
        text = item["content"][0]
        answer = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        fence = answer and re.search(r"```json(.*?)```", answer.group(1), re.DOTALL)
        if fence:
            counted.append(oracle_sample_iou(item["ground_truth"], oracle_boxes(fence.group(1))))
    return 100.0 * sum(iou > threshold for iou in counted) / len(counted) if counted else 0.0


def oracle_clean(text: str) -> str:
    text = text.replace("-", " ")
    text = re.sub(r"(?<!\w):(?=\w)", " ", text)
    text = re.sub(r"(?<=\w):(?!\w)", " ", text)
    text = re.sub(r"(?<!\w)[^\w\s:]+(?=\w)", "", text)
    text = re.sub(r"(?<=\w)[^\w\s:]+(?!\w)", "", text)
    return re.sub(r"\s+", " ", text).strip()


def oracle_vqa(text: str, truth: str) -> bool:
    prediction, truth = oracle_clean(text.strip().lower()), oracle_clean(truth.strip().lower())
    forward = re.search(r"\b" + re.escape(truth) + r"\b", prediction, re.IGNORECASE)
    backward = re.search(r"\b" + re.escape(prediction) + r"\b", truth, re.IGNORECASE)
    return bool(forward or backward)


# ---------------------------------------------------------------- generated results

coordinate = st.integers(0, 60)


@st.composite
def box(draw):
    x, y = draw(coordinate), draw(coordinate)
    return [x, y, x + draw(st.integers(1, 40)), y + draw(st.integers(1, 40))]


def write_box(values, notation: str) -> str:
    a, b, c, d = values
    return {
        "json": json.dumps({"bbox_2d": values, "label": "person"}),
        "list": f"[{a}, {b}, {c}, {d}]",
        "decimals": f"[{a}.0, {b}.5, {c}.0, {d}.25]",
        "pairs": f"({a},{b}),({c},{d})",
        "tuple": f"({a}.0, {b}.0, {c}.0, {d}.0)",
        "tag": f"<box>{a} {b} {c} {d}</box>",
        "three": f"[{a}, {b}, {c}]",
        "negative": f"[-{a}, {b}, {c}, {d}]",
    }[notation]


notation = st.sampled_from(["json", "list", "decimals", "pairs", "tuple", "tag", "three", "negative"])
wrapper = st.sampled_from(["fenced", "no fence", "no answer", "two answers", "plain fence"])


@st.composite
def grounding_item(draw):
    truth = draw(st.lists(box(), max_size=3))
    boxes = draw(st.lists(st.tuples(box(), notation), max_size=3))
    body = "[" + ", ".join(write_box(values, kind) for values, kind in boxes) + "]"
    shape = draw(wrapper)
    text = {
        "fenced": f"<think>t</think><answer>```json\n{body}\n```</answer>",
        "no fence": f"<answer>{body}</answer>",
        "no answer": f"```json\n{body}\n```",
        "two answers": f"<answer>```json\n{body}\n```</answer><answer>```json\n[]\n```</answer>",
        "plain fence": f"<answer>```\n{body}\n```</answer>",
    }[shape]
    return {"content": [text], "ground_truth": truth}


def run_cli(tmp_path, items, task, threshold="0.5") -> dict:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(items))
    assert cli.main([str(path), task, threshold]) == 0
    return json.loads(path.with_suffix(".report.json").read_text())


# ---------------------------------------------------------------- tests


@FAST
@given(st.lists(grounding_item(), min_size=1, max_size=6), st.sampled_from([0.0, 0.3, 0.5, 0.75]))
def test_grounding_accuracy_reference_matches_the_oracle(tmp_path_factory, items, threshold):
    report = run_cli(tmp_path_factory.mktemp("g"), items, "grounding", str(threshold))
    assert report["accuracy_reference"] == pytest.approx(oracle_grounding(items, threshold), abs=1e-9)


def test_reference_keeps_a_fence_without_a_usable_box_and_skips_only_missing_fences(tmp_path):
    truth = [[0, 0, 10, 10]]
    items = [
        {"content": ["<answer>```json\n[[0, 0, 10, 10]]\n```</answer>"], "ground_truth": truth},  # IoU 1
        {"content": ["<answer>```json\n[[0, 0, 10]]\n```</answer>"], "ground_truth": truth},  # counted, IoU 0
        {"content": ["<answer>[[0, 0, 10, 10]]</answer>"], "ground_truth": truth},  # skipped: no fence
        {"content": ["[[0, 0, 10, 10]]"], "ground_truth": truth},  # skipped: no answer block
    ]
    report = run_cli(tmp_path, items, "grounding")
    assert (report["accuracy_reference"], report["reference_skipped"]) == (50.0, 2)
    assert report["mean_iou_reference"] == 0.5
    assert report["accuracy"] == 75.0  # ours reads the unfenced answer and the bare text too
    assert "accuracy_parsed_only" not in report


def test_reference_reads_only_its_first_notation():
    fence = "(1,2),(3,4) and [5, 6, 7, 8]"
    assert reference.boxes_in(fence) == [[1.0, 2.0, 3.0, 4.0]]
    assert reference.boxes_in("[1.5, 2.5, 3.5, 4.5] [1, 2, 3, 4]") == [[1.5, 2.5, 3.5, 4.5]]
    assert reference.boxes_in("[-1, 2, 3, 4]") == []


vqa_alphabet = st.text(alphabet=list("ab Yesno-:.,!?'\"()_<>/é1 \n"), max_size=30)


@settings(max_examples=250, deadline=None, database=None)
@given(vqa_alphabet, vqa_alphabet)
def test_reference_cleaning_and_vqa_verdict_match_the_oracle(text, truth):
    assert reference.clean(text.lower()) == oracle_clean(text.lower())
    assert reference.vqa_correct(text, truth) == oracle_vqa(text, truth)


def test_vqa_accuracy_reference_scores_the_whole_generation(tmp_path):
    items = [
        # The reference reads the reasoning too: "yes" in <think> makes this right for it, wrong for us.
        {"content": ["<think>yes or no? I say no</think><answer>No</answer>"], "ground_truth": "Yes"},
        {"content": ["<think>hmm</think><answer>Yes</answer>"], "ground_truth": "Yes"},
        {"content": ["<answer></answer>"], "ground_truth": "No"},  # the tags' words are not "no"
    ]
    report = run_cli(tmp_path, items, "vqa")
    assert report["accuracy"] == pytest.approx(100 / 3)
    assert report["accuracy_reference"] == pytest.approx(200 / 3)
    assert [vqa_sample(i["content"][0], i["ground_truth"]).reference_correct for i in items] == [True, True, False]
