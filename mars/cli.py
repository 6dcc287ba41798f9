"""The ``mars`` command: one entry point, one subcommand per job.

    mars eval RESULTS.json grounding|vqa THRESHOLD    score inference results (= evaluation/eval_qwen.sh)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"eval": _eval}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nmars: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    return commands[argv[0]](argv[1:])


def _eval(argv: list[str]) -> int:
    from mars.evaluation.cli import main as eval_main

    return eval_main(argv)


if __name__ == "__main__":
    sys.exit(main())
