"""Where each engine is called: ``trainer.engine`` names one, and ``run_training`` runs the whole training with it.

    local   one process, Hugging Face transformers (``mars.engines.local.run``)
    verl    verl's Ray worker groups: FSDP2, vLLM / SGLang / ``hf`` rollouts (``mars.engines.verl.launch``)

Each engine owns its run (data, run folder, warm start, steps, checkpoints) and implements the step's engine
interface (``mars.training.interface.Engine``); the step itself (``mars.training.step``) is written once. A new
engine is one entry below: a module whose ``run(cfg, write) -> RunResult`` trains and sums up.

Nothing heavy is imported here: verl imports ``mars.engines.verl`` from its plugin entry point while it is itself
still importing.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from mars.config.compose import ConfigError

# trainer.engine -> the module whose run(cfg, write) trains with that engine
ENGINES = {
    "local": "mars.engines.local.run",
    "verl": "mars.engines.verl.launch",
}


class UnknownEngine(ConfigError):
    """``trainer.engine`` names no engine."""


def engine_runner(name: str) -> Callable[..., Any]:
    """The ``run(cfg, write)`` of the engine ``name``; ``UnknownEngine`` naming the valid ones otherwise."""
    if name not in ENGINES:
        raise UnknownEngine(f"trainer.engine={name}: not an engine; valid: {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[name]).run


def run_training(cfg: Any, write=print):
    """Train with the engine ``trainer.engine`` names; returns its ``mars.training.summary.RunResult``."""
    return engine_runner(str(cfg.trainer.engine))(cfg, write)
