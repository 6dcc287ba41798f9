"""smart_resize and conversion of predicted boxes to original-image pixels."""

import pytest

from mars.rewards import coords
from mars.rewards.coords import CoordSettings, smart_resize, to_original_pixels

SIZES_HW = [(1024, 1280), (900, 1600), (28, 28), (10, 10), (5000, 4000), (224, 3000), (480, 640), (1, 150)]
PIXEL_BOUNDS = [(3136, 12845056), (3136, 1003520), (200704, 401408)]


@pytest.mark.parametrize("min_pixels,max_pixels", PIXEL_BOUNDS)
@pytest.mark.parametrize("height,width", SIZES_HW)
def test_smart_resize_agrees_with_transformers(height, width, min_pixels, max_pixels):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    expected = hf_smart_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    assert smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels) == tuple(expected)


def test_smart_resize_llvip_default():
    # 1024 / 28 = 36.6 -> 37 * 28; 1280 / 28 = 45.7 -> 46 * 28; well under the pixel cap.
    assert smart_resize(1024, 1280) == (1036, 1288)


def test_absolute_is_identity():
    boxes = [(1.0, 2.0, 3.0, 4.0)]
    assert to_original_pixels(boxes, CoordSettings()) == (boxes, False)


def test_qwen3_vl_relative_coordinates():
    settings = CoordSettings.from_extra_info({"coord_format": "qwen3_vl", "image_size": [1280, 1024]})
    converted, error = to_original_pixels([(500.0, 500.0, 1000.0, 1000.0)], settings)
    assert not error
    assert converted[0] == pytest.approx((640.0, 512.0, 1280.0, 1024.0))


def test_qwen2_5_vl_resized_pixels():
    settings = CoordSettings.from_extra_info(
        {"coord_format": "qwen2_5_vl", "image_size": [1280, 1024], "max_pixels": 401408}
    )
    resized_h, resized_w = smart_resize(1024, 1280, max_pixels=401408)
    converted, error = to_original_pixels([(0.0, 0.0, float(resized_w), float(resized_h))], settings)
    assert not error
    assert converted[0] == pytest.approx((0.0, 0.0, 1280.0, 1024.0))


def test_explicit_resized_size_overrides_smart_resize():
    settings = CoordSettings.from_extra_info(
        {"coord_format": "qwen2_5_vl", "image_size": [1000, 500], "resized_size": [500, 250]}
    )
    assert settings.scale() == (2.0, 2.0)


def test_numpy_image_size_from_parquet_is_accepted():
    import numpy as np

    settings = CoordSettings.from_extra_info({"coord_format": "qwen3_vl", "image_size": np.array([2000, 1000])})
    assert settings.scale() == (2.0, 1.0)


@pytest.mark.parametrize(
    "extra_info",
    [
        {"coord_format": "qwen3_vl"},
        {"coord_format": "qwen2_5_vl", "image_size": [0, 10]},
        {"coord_format": "qwen2_5_vl", "image_size": "1280x1024"},
        {"coord_format": "pixels_of_mars", "image_size": [10, 10]},
    ],
)
def test_impossible_conversion_is_reported_not_raised(extra_info):
    boxes = [(1.0, 2.0, 3.0, 4.0)]
    assert to_original_pixels(boxes, CoordSettings.from_extra_info(extra_info)) == (boxes, True)


def test_unreadable_pixel_bounds_fall_back_to_defaults():
    settings = CoordSettings.from_extra_info({"min_pixels": "many", "max_pixels": 10**400})
    assert (settings.min_pixels, settings.max_pixels) == (coords.DEFAULT_MIN_PIXELS, coords.DEFAULT_MAX_PIXELS)
    assert CoordSettings.from_extra_info(None) == CoordSettings()
