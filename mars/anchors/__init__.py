"""Where anchors are built: the mono-source variants of a multi-source prompt."""

from mars.anchors.variants import (
    VARIANT_MODES,
    MonoSourceVariant,
    build_mono_source_variants,
    check_variant_mode,
    image_slots,
    resolve_sources,
    select_anchor_sources,
    variant_image_tokens,
)

__all__ = [
    "VARIANT_MODES",
    "MonoSourceVariant",
    "build_mono_source_variants",
    "check_variant_mode",
    "image_slots",
    "resolve_sources",
    "select_anchor_sources",
    "variant_image_tokens",
]
