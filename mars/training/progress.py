"""Progress: a tqdm bar on a terminal, plain lines elsewhere.

Redirected to a file (a log, CI, ``nohup``), a bar is a stream of carriage returns (32 KB for one default run);
there a line every tenth of the way says the same thing and stays readable.
"""

from __future__ import annotations

import sys
import time
import warnings


def interactive() -> bool:
    """A bar only when both streams are a terminal (tqdm draws on stderr; the lines above it go to stdout)."""
    return sys.stderr.isatty() and sys.stdout.isatty()


def quiet_library_bars() -> None:
    """Off a terminal, the libraries' own bars (transformers' "Loading weights", ...) go too."""
    if not interactive():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def quiet_third_party_warnings() -> None:
    """verl announces at import time every optional engine it cannot find (torchtitan, megatron, ...) and, on a
    machine without a GPU, the accelerator it does not see: nothing a user can act on. (Filters, not levels: verl
    sets its loggers' levels when it is imported.)"""
    import logging

    warnings.filterwarnings("ignore", message=r".* engine is not available", category=UserWarning)
    no_gpu = ("No supported accelerator detected", "is registered but not available")
    logging.getLogger("verl.plugin.platform.platform_manager").addFilter(
        lambda record: not any(text in str(record.msg) for text in no_gpu))


class Progress:
    """``update(**postfix)`` once per item: a bar on a terminal, else ``lines`` lines ``desc: i/total (postfix, elapsed)``
    (``lines=0``: none, where the caller prints its own line per item)."""

    def __init__(self, total: int, desc: str, initial: int = 0, write=print, lines: int = 10):
        self.total, self.desc, self.done, self.write = total, desc, initial, write
        self.every = max((total - initial) // lines, 1) if lines > 0 else 0
        self.start = time.perf_counter()
        self.bar = None
        if interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False)

    def update(self, **postfix) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(postfix)
        elif self.every and (self.done % self.every == 0 or self.done == self.total):
            extra = ", ".join(f"{k} {v}" for k, v in postfix.items())
            elapsed = time.perf_counter() - self.start
            self.write(f"{self.desc}: {self.done}/{self.total}" + (f" ({extra})" if extra else "") + f", {elapsed:.0f} s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
