"""The multimodal data path: model inputs for prompts and their mono-source variants, each image processed once.

    from mars.processing import encode_with_variants
    batch = encode_with_variants(processor, prompts, mode="duplicate")   # batch.prompts[i], batch.variants[i][k]
"""

from mars.processing.images import CacheStats, ImageCache, ProcessedImage, decode_image, image_key
from mars.processing.multimodal import (
    EncodedBatch,
    MultimodalEncoder,
    PromptInputs,
    collate,
    encode_with_variants,
    image_values,
)

__all__ = [
    "CacheStats",
    "EncodedBatch",
    "ImageCache",
    "MultimodalEncoder",
    "ProcessedImage",
    "PromptInputs",
    "collate",
    "decode_image",
    "encode_with_variants",
    "image_key",
    "image_values",
]
