"""Benchmark: worst-case time of one reward call on hostile answers just under the 2 MB text cap.

    python benchmarks/bench_rewards.py [--repeats 3]

The documented bound is 0.3 s per call on any input under the cap (docs/rewards_and_evaluation.md); the unit
tests keep a loose bound so that a busy machine cannot fail them, this script shows the margin.
"""

from __future__ import annotations

import argparse

from timing import best_time  # benchmarks/timing.py (the script's folder is on sys.path)

from mars.rewards import grounding_score, vqa_score
from mars.rewards.parsing import MAX_TEXT_CHARS

TRUE = [[100, 100, 200, 300], [400, 100, 500, 300]]
# Just under the cap, so that the whole answer is read.
BUDGET = MAX_TEXT_CHARS - 100


def wrap(answer: str) -> str:
    return f"<think>t</think><answer>{answer}</answer>"


def repeated(unit: str, head: str = "", tail: str = "") -> str:
    return head + unit * ((BUDGET - len(head) - len(tail) - 40) // len(unit)) + tail


def hostile_answers() -> dict[str, str]:
    return {
        "bare [1,2,3,4] boxes": wrap(repeated("[1,2,3,4]")),
        "bare boxes, comma separated (valid JSON)": wrap(repeated("[1,2,3,4],", "[", "[1,2,3,4]]")),
        "fenced bbox_2d dicts": wrap(repeated('{"bbox_2d": [1, 2, 3, 4]}, ', "```json\n[", '{"bbox_2d": [1,2,3,4]}]\n```')),
        "broken bbox_2d dicts": wrap(repeated('{"bbox_2d": [1, 2, 3, 4]} ')),
        "quoted-list boxes": wrap(repeated("{'bbox_2d': '[1, 2, 3, 4]'}, ", "```json\n[", "]\n```")),
        "point pairs": wrap(repeated("(1,2),(3,4) ")),
        "<box> tags": wrap(repeated("<box>1 2 3 4</box>")),
        "parentheses": wrap(repeated("(1.0, 2.0, 3.0, 4.0) ")),
        "digits": wrap(repeated("1")),
        "open brackets": wrap(repeated("[")),
        "words": wrap(repeated("not white or yes ")),
        "confusables": wrap(repeated("Yеs nоt ")),
        "option letters": wrap(repeated("'A' (B) ")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'answer (about 2 MB)':<44} {'grounding s':>11} {'vqa s':>8}")
    worst = 0.0
    for name, text in hostile_answers().items():
        assert len(text) <= MAX_TEXT_CHARS, name
        t_grounding = best_time(lambda: grounding_score(text, TRUE), args.repeats)  # noqa: B023
        t_vqa = best_time(lambda: vqa_score(text, "two or 2"), args.repeats)  # noqa: B023
        worst = max(worst, t_grounding, t_vqa)
        print(f"{name:<44} {t_grounding:>11.3f} {t_vqa:>8.3f}")
    print(f"worst case: {worst:.3f} s per call (bound 0.3 s)")


if __name__ == "__main__":
    main()
