"""Running the repository's shell scripts from the tests: they call `python`, which must be this interpreter, also
when the tests run without the virtual environment activated."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def script_env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH, plus ``extra``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **extra}
