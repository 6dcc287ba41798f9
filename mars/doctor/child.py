"""``python -m mars.doctor.child -m MODULE ARGS`` or ``... SCRIPT ARGS``: run a module or a script as ``python``
would, and write its peak GPU memory (``torch.cuda.max_memory_allocated``) to the file named by
``MARS_DOCTOR_GPU_PEAK`` when it exits. The doctor runs the smoke parts' Python through this, also inside the
repository's shell scripts (a ``python`` on their PATH that calls it), because only the process that allocated the
memory can read its peak.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys


def write_gpu_peak() -> None:
    """Only when the program itself used CUDA: importing torch here would cost every child seconds."""
    path = os.environ.get("MARS_DOCTOR_GPU_PEAK")
    torch = sys.modules.get("torch")
    if not path or torch is None or not torch.cuda.is_initialized():
        return
    peak = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
    with open(path, "w") as f:
        json.dump({"peak_mb": round(peak / 2**20, 1)}, f)


def main(argv: list[str]) -> None:
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        raise SystemExit("usage: python -m mars.doctor.child -m MODULE [ARGS] | SCRIPT [ARGS]")
    if argv[0].startswith("-") and argv[0] != "-m":  # another interpreter option: nothing to measure
        os.execv(sys.executable, [sys.executable, *argv])
    atexit.register(write_gpu_peak)
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))  # as python SCRIPT puts its folder first
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
