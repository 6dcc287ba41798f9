"""Evaluate generated answers: ``python evaluation/eval_qwen.py RESULTS.json grounding|vqa [THRESHOLD]``.

A thin wrapper over ``mars.evaluation.cli`` (``--help`` lists the options); see docs/rewards_and_evaluation.md.
"""

import sys
from pathlib import Path

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mars.evaluation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
