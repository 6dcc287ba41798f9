import copy

import pytest
from hypothesis import given, strategies as st
from PIL import Image

from mars.anchors import build_mono_source_variants, image_slots, resolve_sources, select_anchor_sources

SOURCES = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]


def prompt(images, text="Which view shows the red car?", system=True):
    messages = [{"role": "system", "content": "You are a careful driver."}] if system else []
    parts = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": text}]
    messages.append({"role": "user", "content": parts})
    return messages


def shown_images(messages):
    return [messages[m]["content"][p]["image"] for m, p in image_slots(messages)]


def texts(messages):
    return [(m.get("role"), p.get("text")) for m in messages if isinstance(m["content"], list)
            for p in m["content"] if p.get("type") == "text"]


def test_duplicate_shows_source_k_in_every_slot_and_keeps_text():
    msgs = prompt(["vis.jpg", "ir.jpg"])
    before = copy.deepcopy(msgs)
    variants = build_mono_source_variants(msgs, ["visible", "infrared"])
    assert [v.source for v in variants] == ["visible", "infrared"]
    assert shown_images(variants[0].messages) == ["vis.jpg", "vis.jpg"]
    assert shown_images(variants[1].messages) == ["ir.jpg", "ir.jpg"]
    assert all(texts(v.messages) == texts(msgs) for v in variants)
    assert variants[1].messages[0] == msgs[0]  # the system message is untouched
    assert msgs == before  # the original prompt is not mutated


def test_drop_keeps_only_source_k():
    variants = build_mono_source_variants(prompt(["a.png", "b.png", "c.png"]), ["rgb", "depth", "ir"], mode="drop")
    assert [shown_images(v.messages) for v in variants] == [["a.png"], ["b.png"], ["c.png"]]
    assert [v.source_index for v in variants] == [0, 1, 2]


def test_blank_replaces_other_slots_with_black_images_of_their_own_size(tmp_path):
    path = tmp_path / "depth.png"
    Image.new("L", (40, 30), 200).save(path)
    rgb = Image.new("RGB", (64, 48), (10, 200, 30))
    variants = build_mono_source_variants(prompt([rgb, str(path)]), ["rgb", "depth"], mode="blank")
    shown_rgb = shown_images(variants[0].messages)
    assert shown_rgb[0] is rgb  # images are shared, never copied
    assert shown_rgb[1].size == (40, 30) and shown_rgb[1].getextrema() == ((0, 0), (0, 0), (0, 0))
    shown_depth = shown_images(variants[1].messages)
    assert shown_depth[0].size == (64, 48) and shown_depth[1] == str(path)


def test_blank_with_an_unreadable_image_names_it():
    with pytest.raises(ValueError, match="also.png"):  # variant 0 blanks slot 1 first
        build_mono_source_variants(prompt(["missing.png", "also.png"]), ["a", "b"], mode="blank")


def test_one_source_yields_no_anchors():
    assert build_mono_source_variants(prompt(["only.jpg"]), ["visible"]) == []
    assert build_mono_source_variants(prompt([]), []) == []


def test_source_names_from_image_parts_and_errors():
    msgs = prompt(["v.jpg", "i.jpg"])
    for part, name in zip(msgs[1]["content"], ["visible", "infrared"]):
        part["source"] = name
    assert resolve_sources(msgs) == ["visible", "infrared"]
    variants = build_mono_source_variants(msgs)
    assert variants[1].messages[1]["content"][0]["source"] == "infrared"  # the slot shows the infrared part
    with pytest.raises(ValueError, match="source name"):
        resolve_sources(prompt(["v.jpg", "i.jpg"]))
    with pytest.raises(ValueError, match="2 images but 3"):
        resolve_sources(prompt(["v.jpg", "i.jpg"]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="distinct"):
        resolve_sources(prompt(["v.jpg", "i.jpg"]), ["a", "a"])
    with pytest.raises(ValueError, match="variant mode"):
        build_mono_source_variants(prompt(["v.jpg", "i.jpg"]), ["a", "b"], mode="mix")


def test_anchor_subset_by_name():
    names = ["visible", "infrared", "depth"]
    assert select_anchor_sources(names, "all") == [0, 1, 2]
    assert select_anchor_sources(names, ["depth", "visible"]) == [0, 2]
    assert select_anchor_sources(names, "infrared") == [1]
    assert select_anchor_sources(names, ["thermal"]) == []
    variants = build_mono_source_variants(prompt(["v", "i", "d"]), names, anchor_sources=["infrared"])
    assert [v.source for v in variants] == ["infrared"]


@given(
    st.integers(1, 6),
    st.sampled_from(["duplicate", "drop", "blank"]),
    st.sets(st.sampled_from(SOURCES)) | st.just("all"),
)
def test_variants_properties_for_1_to_n_sources(k, mode, subset):
    images = [Image.new("RGB", (8 + i, 8), (i, i, i)) for i in range(k)]
    names = SOURCES[:k]
    msgs = prompt(images)
    variants = build_mono_source_variants(msgs, names, mode=mode, anchor_sources=subset)
    wanted = names if subset == "all" else [n for n in names if n in subset]
    assert [v.source for v in variants] == (wanted if k >= 2 else [])
    for v in variants:
        shown = shown_images(v.messages)
        assert len(shown) == (1 if mode == "drop" else k)
        assert shown[0 if mode == "drop" else v.source_index] is images[v.source_index]
        if mode == "duplicate":
            assert all(im is images[v.source_index] for im in shown)
        if mode == "blank":
            others = [im for i, im in enumerate(shown) if i != v.source_index]
            assert all(im.getbbox() is None and im.size == images[i].size
                       for im, i in zip(others, [i for i in range(k) if i != v.source_index]))
        assert texts(v.messages) == texts(msgs)
