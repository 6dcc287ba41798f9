"""usage: mars COMMAND [ARGS ...]

commands:
  mars train [KEY=VALUE ...]                       train (no arguments: the embedded default, on the CPU)
  mars compare [OPTIONS] [KEY=VALUE ...]           GRPO vs GRPO+MARS vs GRPO n+K (and DAPO), over seeds
  mars data synth|convert|check ...                build, convert and validate multi-source datasets
  mars model tiny --out DIR                        build the tiny random-init model (no download)
  mars eval RESULTS.json grounding|vqa THRESHOLD   score inference results (same as evaluation/eval_qwen.sh)
  mars eval sources MODEL QUESTIONS [OPTIONS]      accuracy fused and per source (evaluation/eval_sources.sh)
  mars doctor [--quick] [--json REPORT.json]       self-test of a new node: stack, machine, a smoke run of the loop

mars COMMAND --help describes each.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> module with a `main(argv) -> int`; imported lazily so `mars eval` never pays for torch or verl
COMMANDS = {
    "train": "mars.train_cli",
    "compare": "mars.compare.cli",
    "data": "mars.data.cli",
    "model": "mars.models.cli",
    "eval": "mars.evaluation.cli",
    "doctor": "mars.doctor.cli",
}
# two-word commands, looked up before the one-word ones
SUBCOMMANDS = {
    ("eval", "sources"): "mars.per_source",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if tuple(argv[:2]) in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[tuple(argv[:2])]).main(argv[2:])
    if argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        print(f"\nmars: unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
