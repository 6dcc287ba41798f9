"""Running one child command of the doctor: output to a log file, wall time, peak memory, a timeout, and the
processes it left behind.

Every child gets a marker in its environment (``MARS_DOCTOR_PART``), which every process it starts inherits: Ray's
GCS, raylet and workers included, even after they leave the child's process group. The processes still carrying
the marker once the child has exited are what it left behind; they are found in /proc and stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MARKER = "MARS_DOCTOR_PART"
GPU_PEAK = "MARS_DOCTOR_GPU_PEAK"  # where mars.doctor.child writes torch.cuda.max_memory_allocated()


@dataclass
class Outcome:
    code: int | None          # None: stopped at the timeout
    seconds: float
    peak_rss_mb: float | None  # the largest resident set among the child and the children it waited for
    peak_gpu_mb: float | None  # torch.cuda.max_memory_allocated() of a child run through mars.doctor.child
    log: Path
    leftovers: list[str]       # "pid name" of the processes it left behind (stopped since)


def _maxrss_mb(usage) -> float:
    """ru_maxrss is in KiB on Linux, in bytes on macOS."""
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, float | None]:
    """Wait for the child with wait4, which gives its own resource usage; stop its process group at the timeout,
    and on Ctrl-C (the child runs in a session of its own, so the terminal's Ctrl-C reaches only the doctor)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, _maxrss_mb(usage)
            if time.monotonic() > deadline:
                _stop_group(proc, signal.SIGINT)  # as Ctrl-C: a training shuts its Ray down
                return None, None
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop_group(proc, signal.SIGINT)
        raise


def _stop_group(proc: subprocess.Popen, first: int, grace: float = 30.0) -> None:
    for sig in (first, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def ctrl_c_for_children() -> Iterator[None]:
    """Children start with Ctrl-C's default action, also when the doctor itself runs with SIGINT ignored (started
    in the background): an exec resets a handled signal to its default, but keeps an ignored one ignored, and the
    doctor stops a part with SIGINT so that a training shuts its Ray down."""
    try:
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        previous = signal.signal(signal.SIGINT, signal.default_int_handler) if ignored else None
    except ValueError:  # not the main thread: signals cannot be set there
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def run_logged(argv: list[str], log: Path, env: dict[str, str], cwd: Path, timeout: float, token: str,
               settle: float = 2.0) -> Outcome:
    """Run ``argv`` with its output in ``log``; afterwards stop what it left behind (after ``settle`` seconds for
    it to end by itself: Ray's processes stop shortly after their driver)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    gpu_file = log.with_suffix(".gpu.json")
    gpu_file.unlink(missing_ok=True)
    env = {**env, MARKER: token, GPU_PEAK: str(gpu_file)}
    start = time.monotonic()
    try:
        with open(log, "wb") as out, ctrl_c_for_children():
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=cwd, start_new_session=True)
        code, rss = _wait(proc, timeout)
    except KeyboardInterrupt:  # Ctrl-C stops the doctor, and nothing it started stays behind
        stop_leftovers(token, settle)
        raise
    seconds = time.monotonic() - start
    leftovers = stop_leftovers(token, settle)
    return Outcome(code, seconds, rss, _gpu_peak(gpu_file), log, leftovers)


def _gpu_peak(path: Path) -> float | None:
    try:
        return json.loads(path.read_text())["peak_mb"]
    except (OSError, ValueError, KeyError):
        return None


def marked_processes(token: str) -> dict[int, str]:
    """pid -> name of the processes whose environment carries ``MARKER=token`` (Linux /proc; empty elsewhere)."""
    wanted = f"{MARKER}={token}".encode()
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "comm").read_text().strip()
        except OSError:  # gone, or another user's
            continue
    found.pop(os.getpid(), None)
    return found


def stop_leftovers(token: str, settle: float) -> list[str]:
    """Wait up to ``settle`` seconds for the marked processes to end, then SIGTERM, then SIGKILL what remains."""
    deadline = time.monotonic() + settle
    while (left := marked_processes(token)) and time.monotonic() < deadline:
        time.sleep(0.25)
    named = [f"{pid} {name}" for pid, name in sorted(left.items())]
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while (left := marked_processes(token)) and time.monotonic() < deadline:
            time.sleep(0.25)
        if not left:
            break
    return named


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_lines(log: Path, n: int = 6) -> list[str]:
    """The last ``n`` non-empty lines of a log, without colour codes or progress-bar redraws."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    lines = [ANSI.sub("", line.split("\r")[-1]).strip() for line in text.splitlines()]
    return [line for line in lines if line][-n:]
