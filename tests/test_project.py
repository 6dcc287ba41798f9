"""Promises about the project itself: CI runs the README's test command, the layout users expect exists."""

import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.split("#")[0].strip()]


def test_ci_runs_exactly_the_readme_test_command():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    commands = readme_commands()
    test_command = next(c for c in commands if "pytest" in c)
    install_command = next(c for c in commands if c.startswith("pip install"))
    assert ci[-1] == test_command
    assert install_command in ci


def test_layout_users_expect():
    for folder in ["mars", "examples", "recipe", "utils", "scripts", "evaluation", "data", "tests", "benchmarks"]:
        assert (ROOT / folder).is_dir(), folder


def test_runtime_stack_is_pinned():
    deps = [d for d in importlib.metadata.requires("mars-rl") if "extra ==" not in d]  # the installed metadata
    for pin in ["verl==0.9.1", "torch==2.11.0", "torchvision==0.26.0", "transformers==5.9.0"]:
        assert pin in deps
    for imported_by_verl in ["cachetools", "uvicorn", "fastapi", "pyzmq", "msgspec"]:
        assert any(d.split("=")[0].split(">")[0] == imported_by_verl for d in deps), imported_by_verl
