"""The local engine: one process, Hugging Face transformers, CPU or one GPU."""

from mars.engines.local.local_engine import LocalEngine, LocalPayload

__all__ = ["LocalEngine", "LocalPayload"]
