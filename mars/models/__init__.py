"""Models built locally: the tiny random-init Qwen2.5-VL / Qwen3-VL and its trained-here tokenizer.

    from mars.models import build_tiny_model
    build_tiny_model("outputs/tiny-qwen2_5_vl", arch="qwen2_5_vl", seed=0)   # or: mars model tiny --out DIR
"""

from mars.models.tiny import ARCHS, TinySizes, build_tiny_model

__all__ = ["ARCHS", "TinySizes", "build_tiny_model"]
