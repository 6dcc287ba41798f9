"""Engines implementing ``mars.trainer.engine.Engine``: ``local`` (transformers) and ``verl`` (Ray worker groups)."""
