"""The two verl 0.9.1 faults worked around in ``mars.engines.verl.verl_fixes``: each reproduced with verl's own
function, then shown fixed (``import verl`` installs the fixes through MARS's plugin entry point)."""

from __future__ import annotations

import pickle

import pytest
import torch

pytest.importorskip("verl")

import verl  # noqa: E402,F401  (loads the plugin: the fixes are installed)
from tensordict import TensorDict  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402

from mars.engines.verl import verl_fixes  # noqa: E402


def test_the_fixes_are_installed_where_verl_looks_them_up():
    from verl.models.transformers import qwen2_vl
    from verl.workers.engine import base

    assert qwen2_vl._get_input_embeds is not verl_fixes.ORIGINALS["qwen2_vl._get_input_embeds"]
    assert tu.maybe_fix_3d_position_ids is verl_fixes.fixed_3d_position_ids
    assert base.maybe_fix_3d_position_ids is verl_fixes.fixed_3d_position_ids  # imported by name, patched on import


# ------------------------------------------------------------------------------------- 1. no images in a micro-batch


def test_a_micro_batch_without_images(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).model  # what verl's forward passes
    input_ids = torch.tensor([[5, 6, 7, 8]])
    with pytest.raises(AttributeError):  # verl 0.9.1 under transformers 5: the tower's output has no .mean()
        verl_fixes.ORIGINALS["qwen2_vl._get_input_embeds"](model, input_ids)

    from verl.models.transformers import qwen2_vl

    embeds, mask = qwen2_vl._get_input_embeds(model, input_ids, torch.ones_like(input_ids))
    torch.testing.assert_close(embeds, model.get_input_embeddings()(input_ids))  # the text embeddings, unchanged
    assert mask.shape == input_ids.shape
    embeds.sum().backward()  # the vision tower stays in the graph, as verl intends for FSDP
    assert all(p.grad is not None for p in model.visual.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------- 2. equal lengths, mRoPE ids


def mrope_batch(lengths, consolidate=True):
    """A micro-batch as verl's workers receive it: mRoPE position ids as (4, length) jagged rows, pickled."""
    rows = [torch.arange(n).expand(4, n).clone() + 100 * i for i, n in enumerate(lengths)]
    positions = torch.nested.as_nested_tensor(rows, layout=torch.jagged)  # what verl's left_right_2_no_padding makes
    ids = torch.nested.as_nested_tensor([torch.arange(n) for n in lengths], layout=torch.jagged)
    data = TensorDict({"position_ids": positions, "input_ids": ids}, batch_size=len(lengths))
    return pickle.loads(pickle.dumps(data.consolidate() if consolidate else data)), rows


def test_equal_lengths_break_verls_own_fix():
    data, _ = mrope_batch([6, 6, 6], consolidate=False)
    verl_fixes.ORIGINALS["maybe_fix_3d_position_ids"](data)
    with pytest.raises(RuntimeError):
        tu.index_select_tensor_dict(data, [2, 0])  # what update_actor does with every micro-batch


@pytest.mark.parametrize("lengths", [[5, 7, 6], [6, 6, 6], [6], [4], [4, 4], [3, 9]])
@pytest.mark.parametrize("consolidate", [True, False])
def test_position_ids_survive_selection_for_any_lengths(lengths, consolidate):
    data, rows = mrope_batch(lengths, consolidate)
    verl_fixes.fixed_3d_position_ids(data)
    order = list(reversed(range(len(lengths))))
    selected = tu.index_select_tensor_dict(data, order)["position_ids"].unbind()
    assert len(selected) == len(rows)
    for got, want in zip(selected, [rows[i] for i in order]):
        assert torch.equal(got, want)


def test_other_position_ids_go_to_verls_function():
    flat = torch.nested.as_nested_tensor([torch.arange(5), torch.arange(3)], layout=torch.jagged)
    data = TensorDict({"position_ids": flat}, batch_size=2)
    verl_fixes.fixed_3d_position_ids(data)
    assert data["position_ids"] is flat
