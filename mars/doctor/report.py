"""The doctor's report: one ``Check`` row per check, a table on the terminal and the same rows as JSON."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("pass", "warn", "fail", "skip")


@dataclass
class Check:
    """One row: ``fix`` is the command or setting that repairs a failure (or a warning), ``extra`` goes to the
    JSON only (peak memory, log file)."""

    name: str
    status: str
    detail: str
    seconds: float = 0.0
    fix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    def text(self) -> str:
        """The detail with its fix, as the terminal shows it (and the JSON's ``detail``)."""
        return f"{self.detail} -- fix: {self.fix}" if self.fix else self.detail

    def as_json(self) -> dict[str, Any]:
        row = {"name": self.name, "status": self.status, "detail": self.text(), "seconds": round(self.seconds, 2)}
        if self.fix:
            row["fix"] = self.fix
        return {**row, **self.extra}


def timed(fn: Callable[..., Check | list[Check]], *args: Any, **kwargs: Any) -> list[Check]:
    """Run a check function and give its rows the time it took (split evenly when it returns several)."""
    start = time.monotonic()
    result = fn(*args, **kwargs)
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        if not row.seconds:
            row.seconds = (time.monotonic() - start) / max(len(rows), 1)
    return rows


def exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing failed: warnings and skips say something, they do not stop a run."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def table(checks: list[Check], width: int | None = None) -> str:
    """The rows as a plain-text table; long details wrap inside their column."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    name_w = max([len("check")] + [len(c.name) for c in checks])
    head = f"{'check':<{name_w}}  status  {'time':>7}  detail"
    detail_w = max(width - len(head) + len("detail"), 30)
    lines = [head, "-" * min(width, name_w + 19 + detail_w)]
    for c in checks:
        wrapped = textwrap.wrap(c.text(), detail_w) or [""]
        lines.append(f"{c.name:<{name_w}}  {c.status:<6}  {c.seconds:>6.1f}s  {wrapped[0]}")
        lines += [" " * (name_w + 19) + more for more in wrapped[1:]]
    return "\n".join(lines)


def summary(checks: list[Check], seconds: float) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    failed = [c.name for c in checks if c.status == "fail"]
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {seconds:.0f} s"
    return text + (f"; failed: {', '.join(failed)}" if failed else "; nothing failed")


def write_json(path: Path, checks: list[Check], seconds: float, info: dict[str, Any]) -> None:
    report = {"checks": [c.as_json() for c in checks], "passed": exit_code(checks) == 0,
              "failed": [c.name for c in checks if c.status == "fail"], "seconds": round(seconds, 1), **info}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
