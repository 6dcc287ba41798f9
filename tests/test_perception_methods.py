"""The perception-aware methods' engine-free parts: altered views, VPPO's gate and scale, PAPO's term, the switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mars.perception.methods import (
    PerceptionSettings,
    perception_problems,
    signal_views,
    source_dependency,
    token_weights,
)
from mars.perception.papo import k3_kl, papo_loss_terms
from mars.perception.views import AlteredView, alter_pixel_values, patch_rows, region_mask, view_seed
from mars.perception.vppo import vppo_weights, vppo_weights_reference

from tests.test_perception_vgpo import batch


# ------------------------------------------------------------------------------------------------ views


@pytest.fixture(scope="module")
def image_processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir).image_processor


def test_patch_rows_is_the_processors_layout(image_processor):
    """A white 14-pixel patch at (y, x) of a black picture lands on exactly the row patch_rows names."""
    patch, merge = image_processor.patch_size, image_processor.merge_size
    black = image_processor(images=[Image.new("RGB", (4 * patch, 4 * patch))], return_tensors="pt")["pixel_values"]
    for y, x in [(0, 0), (1, 2), (3, 1), (2, 3)]:
        picture = np.zeros((4 * patch, 4 * patch, 3), dtype=np.uint8)
        picture[y * patch:(y + 1) * patch, x * patch:(x + 1) * patch] = 255
        out = image_processor(images=[Image.fromarray(picture)], return_tensors="pt")
        grid = out["image_grid_thw"][0].tolist()
        assert grid == [1, 4, 4]
        differs = (out["pixel_values"] != black).any(dim=1).nonzero().flatten().tolist()
        assert differs == [int(patch_rows(grid, merge)[0, y, x])]


def test_masking_a_grid_region_blacks_exactly_its_tokens_patches():
    """Faithful-MR1's masked copies: the patch rows of the region's tokens, and only they, take the black row."""
    from mars.perception.focus import grid_regions
    from mars.perception.views import mask_tokens

    grids, merge = [(1, 4, 8), (1, 4, 8)], 2  # two aligned images, 2 x 4 tokens each
    pixels = torch.arange(64 * 3, dtype=torch.float32).view(64, 3)
    region = grid_regions(grids, merge, 2)[1]  # the top-right quarter: tokens (0, 2), (0, 3) of each image
    out = mask_tokens(pixels, region, torch.full((3,), -1.0), merge)
    rows = patch_rows(grids[0], merge)[0]  # (h, w) patch -> row, image 0; image 1 adds 32
    expected = torch.zeros(64, dtype=torch.bool)
    for offset in (0, 32):
        expected[(rows[:2, 4:] + offset).flatten()] = True  # patches of token row 0, token columns 2-3
    assert (out == -1.0).all(dim=1).equal(expected) and out[~expected].equal(pixels[~expected])
    with pytest.raises(ValueError, match="patch rows"):
        mask_tokens(pixels[:60], region, torch.full((3,), -1.0), merge)


def test_a_blank_view_equals_the_anchors_blank_variant(image_processor, tiny_model_dir, ir_data_dir):
    """Blanking a source on pixel values = processing the prompt whose other slot shows a black picture."""
    from transformers import AutoProcessor

    from mars.anchors import build_mono_source_variants
    from mars.data.samples import load_samples
    from mars.hf.perception import altered_prompts, image_geometry
    from mars.processing import ImageCache, MultimodalEncoder

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sample = load_samples(str(ir_data_dir / "val.parquet"), "error")[0]
    encoder = MultimodalEncoder(processor)
    prompt = encoder.encode([sample.messages], ImageCache(processor.image_processor))[0]
    for variant in build_mono_source_variants(sample.messages, sample.sources, "blank"):
        other = [s for s in sample.sources if s != variant.source][0]
        expected = encoder.encode([variant.messages], ImageCache(processor.image_processor))[0]
        view = AlteredView(f"drop_{other}", "blank", source=other)
        got = altered_prompts([prompt], [sample.sources], ["g"], view, image_geometry(processor.image_processor), 0, 0)[0]
        assert torch.equal(got.input_ids, expected.input_ids)
        assert torch.allclose(got.pixel_values, expected.pixel_values, atol=1e-6)


def test_region_masks_have_the_asked_share_and_size():
    generator = torch.Generator().manual_seed(0)
    mask = region_mask(8, 12, 0.5, 2, generator)
    assert mask.shape == (8, 12) and int(mask.sum()) == 2 * 2 * 12  # half of 4 x 6 regions of 2 x 2 patches
    blocks = mask.view(4, 2, 6, 2).permute(0, 2, 1, 3).reshape(24, 4)
    assert ((blocks.sum(1) == 0) | (blocks.sum(1) == 4)).all()  # whole regions, never half of one
    edge = region_mask(5, 5, 0.99, 2, generator)  # regions cut by the border, at least one region, at most all
    assert edge.all()


def test_masks_depend_on_seed_step_and_group_only():
    pixels = torch.randn(2 * 16, 8)
    grid = torch.tensor([[1, 4, 4], [1, 4, 4]])
    view = AlteredView("patches", "patches", ratio=0.5)
    black = torch.full((8,), -9.0)

    def masked(seed):
        return (alter_pixel_values(pixels, grid, ["a", "b"], view, black, 2, seed) == -9.0).all(dim=1)

    assert view_seed(0, 3, "g1") == view_seed(0, 3, "g1")
    assert len({view_seed(s, t, g) for s in (0, 1) for t in (1, 2) for g in ("g1", "g2")}) == 8
    same, other = masked(view_seed(0, 1, "g")), masked(view_seed(0, 1, "h"))
    assert torch.equal(same, masked(view_seed(0, 1, "g"))) and not torch.equal(same, other)
    assert int(same[:16].sum()) == 8 and int(same[16:].sum()) == 8  # each image: half of its patches


def test_blank_and_no_image_views():
    pixels = torch.randn(16 + 4, 3)
    grid = torch.tensor([[1, 4, 4], [1, 2, 2]])
    black = torch.zeros(3) - 5
    blank_b = alter_pixel_values(pixels, grid, ["a", "b"], AlteredView("d", "blank", source="b"), black, 2, 0)
    assert torch.equal(blank_b[:16], pixels[:16]) and (blank_b[16:] == -5).all()
    none = alter_pixel_values(pixels, grid, ["a", "b"], AlteredView("n", "no_image"), black, 2, 0)
    assert (none == -5).all()
    with pytest.raises(ValueError, match="covers"):
        alter_pixel_values(pixels[:-1], grid, ["a", "b"], AlteredView("n", "no_image"), black, 2, 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="patches", ratio=1.0), "outside"), (dict(kind="patches", ratio=0.0), "outside"),
    (dict(kind="blank"), "names its source"), (dict(kind="drop"), "valid"),
])
def test_bad_views_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlteredView("v", **kwargs)


def test_patch_sizes_must_be_multiples_of_the_model_patch():
    assert AlteredView("p", "patches", ratio=0.5, patch_pixels=28).region_side(14) == 2
    assert AlteredView("p", "patches", ratio=0.5).region_side(16) == 1
    with pytest.raises(ValueError, match="perception.patch_size=20 is not a multiple"):
        AlteredView("p", "patches", ratio=0.5, patch_pixels=20).region_side(14)


# ------------------------------------------------------------------------------------------------ VPPO


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("share, low, high", [(0.4, 0.9, 1.1), (1.0, 1.0, 1.0), (0.1, 0.5, 2.0)])
def test_vppo_equals_the_loop_oracle(seed, share, low, high):
    dependency, mask, groups = batch(seed)
    fast = vppo_weights(dependency, mask, groups, share, low, high)
    assert torch.allclose(fast, vppo_weights_reference(dependency, mask, groups, share, low, high), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_vppo_gates_the_top_share_and_scales_within_bounds(seed):
    dependency, mask, groups = batch(seed)
    weights = vppo_weights(dependency, mask, groups, 0.4, 0.9, 1.1)
    on = mask.bool()
    assert (weights[~on] == 1).all()
    kept = (weights > 0) & on
    assert torch.equal(kept.sum(1), torch.ceil(0.4 * mask.sum(1)).long())
    assert ((weights[kept] >= 0.9 - 1e-6) & (weights[kept] <= 1.1 + 1e-6)).all()
    for i in range(len(mask)):  # every kept token depends at least as much as every dropped one
        if (on[i] & ~kept[i]).any():
            assert dependency[i][kept[i]].min() >= dependency[i][on[i] & ~kept[i]].max()


def test_vppo_with_every_token_and_unit_scale_is_the_base_estimator():
    dependency, mask, groups = batch(3)
    assert torch.equal(vppo_weights(dependency, mask, groups, 1.0, 1.0, 1.0), torch.ones_like(mask))


def test_vppo_groups_and_row_order_are_independent():
    dependency, mask, groups = batch(4)
    weights = vppo_weights(dependency, mask, groups)
    changed = dependency.clone()
    changed[[i for i, g in enumerate(groups) if g == groups[0]]] *= 3.0
    after = vppo_weights(changed, mask, groups)
    others = [i for i, g in enumerate(groups) if g != groups[0]]
    assert torch.equal(after[others], weights[others])
    order = torch.randperm(len(mask), generator=torch.Generator().manual_seed(0))
    shuffled = vppo_weights(dependency[order], mask[order], [groups[i] for i in order])
    assert torch.allclose(shuffled, weights[order])


# ------------------------------------------------------------------------------------------------ PAPO


def test_k3_is_nonnegative_zero_at_equality_and_bounded():
    lp = torch.log(torch.rand(4, 9).clamp_min(1e-6))
    assert torch.allclose(k3_kl(lp, lp), torch.zeros_like(lp))
    other = torch.log(torch.rand(4, 9).clamp_min(1e-6))
    assert (k3_kl(lp, other) >= 0).all()
    assert torch.isfinite(k3_kl(torch.zeros(1, 1), torch.full((1, 1), -1e9))).all()


def test_papo_with_zero_coefficients_adds_nothing_and_its_gradient_raises_the_kl():
    lp = torch.log(torch.rand(3, 5)).requires_grad_()
    masked = torch.log(torch.rand(3, 5)).requires_grad_()
    entropy = torch.rand(3, 5, requires_grad=True)
    aggregate = torch.mean
    loss, _ = papo_loss_terms(lp, masked, entropy, entropy, aggregate, 0.0, 0.0)
    assert float(loss.detach()) == 0.0
    loss, metrics = papo_loss_terms(lp, masked, entropy, entropy, aggregate, 0.02, 0.0)
    loss.backward()
    with torch.no_grad():  # a small step against the loss's gradient raises the perception KL
        before = k3_kl(lp, masked).mean()
        after = k3_kl(lp - 10 * lp.grad, masked - 10 * masked.grad).mean()
    assert after > before and metrics["perception/kl"] == pytest.approx(float(before))


# ------------------------------------------------------------------------------------------------ the switch


def test_signal_views_per_method():
    sources = ["infrared", "visible"]
    assert signal_views(PerceptionSettings(), sources) == []
    assert signal_views(PerceptionSettings(name="vgpo"), sources) == []
    assert [v.name for v in signal_views(PerceptionSettings(name="vgpo", log_sources=True), sources)] == [
        "drop_infrared", "drop_visible"]
    vppo = signal_views(PerceptionSettings(name="vppo", mask_ratio=0.5), sources)
    assert [v.name for v in vppo] == ["patches"] and vppo[0].ratio == 0.5
    drop = PerceptionSettings(name="vppo", view="drop_source", source="visible", log_sources=True)
    assert [v.name for v in signal_views(drop, sources)] == ["drop_visible", "drop_infrared"]
    assert signal_views(PerceptionSettings(name="papo", log_sources=False), sources) == []  # its view: in the update


def test_token_weights_and_metrics():
    similarity, mask, groups = batch(1)
    weights, metrics = token_weights(PerceptionSettings(name="vgpo"), {"similarity": similarity}, mask, groups)
    assert weights.shape == mask.shape and 0 <= metrics["perception/token_weight/clipped_share"] <= 1
    flat, _ = token_weights(PerceptionSettings(name="vgpo", beta=0.0), {"similarity": torch.full_like(mask, 0.7)},
                            mask, groups)
    assert torch.equal(flat, torch.ones_like(mask))
    weights, metrics = token_weights(PerceptionSettings(name="vppo"), {"kl/patches": similarity}, mask, groups)
    assert 0 < metrics["perception/token_weight/gated_share"] < 1
    assert token_weights(PerceptionSettings(name="papo"), {}, mask, groups)[0] is None


def test_source_dependency_averages_over_the_rows_showing_the_source():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    signals = {"kl/drop_a": torch.tensor([[1.0, 3.0, 100.0], [5.0, 100.0, 100.0]])}
    out = source_dependency(signals, mask, [["a", "b"], ["b"]], ["a", "b"])
    assert out == {"perception/dependency/a": 2.0}


@pytest.mark.parametrize("values, key", [
    (dict(name="pgpo"), "perception.name=pgpo"), (dict(view="drop"), "perception.view=drop"),
    (dict(view="drop_source"), "perception.source"), (dict(mask_ratio=1.0), "perception.mask_ratio=1.0"),
    (dict(token_share=0.0), "perception.token_share"), (dict(scale_min=1.2), "scale_min"),
    (dict(gamma=1.5), "perception.gamma"), (dict(patch_size=-14), "perception.patch_size"),
    (dict(cells=0), "perception.cells=0"), (dict(cells=5), "perception.cells=5"), (dict(cells=2.5), "perception.cells"),
    (dict(cells=True), "perception.cells=True"),
    (dict(focus_reward=-0.1), "perception.focus_reward"), (dict(attention="answer"), "perception.attention=answer"),
])
def test_bad_settings_name_the_key(values, key):
    problems = perception_problems(PerceptionSettings(**values))
    assert len(problems) == 1 and key in problems[0] and "valid" in problems[0]
