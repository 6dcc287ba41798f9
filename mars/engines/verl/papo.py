"""PAPO's loss term on verl: a second forward with gradient, on masked images, inside verl's own actor update.

verl's FSDP engine calls the actor's loss function once per micro-batch, inside that micro-batch's forward with
gradient, and hands it the micro-batch itself (every field of its rows). MARS's worker installs ``papo_loss`` in
place of verl's ``ppo_loss`` through verl's public ``set_loss_fn``: it calls verl's loss unchanged, runs the same
micro-batch again through the engine's own input and output preparation with each row's images masked, and adds

    - kl_coef * agg(k3(log pi(.|I), log pi(.|I_masked))) + entropy_coef * (agg(H) + agg(H_masked))

(``mars.perception.papo.papo_loss_terms``), aggregated with verl's global batch sizes, as its policy loss is.

Why here and not on the driver: a row and its masked copy must meet in one backward. The masked pixel values are
made on the worker from the row's own pixel values, with the row's mask seed (``view_seed(seed, step, group)``, as
on the local engine, carried as the tensor field ``mars_view_seed``) and its image sources (``mars_sources``), so
they stay paired whatever verl's shuffling, sequence balancing and dynamic micro-batching do to the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mars.perception.papo import papo_loss_terms
from mars.perception.views import AlteredView, alter_pixel_values, view_seed

SEED_KEY = "mars_view_seed"
SOURCES_KEY = "mars_sources"


@dataclass(frozen=True)
class PapoSetup:
    """What the worker's loss needs beside the micro-batch: the view, the processor's geometry (black patch row,
    merge size, patch size: ``mars.hf.perception.image_geometry``), the coefficients and verl's aggregation."""

    view: AlteredView
    geometry: tuple
    kl_coef: float
    entropy_coef: float
    loss_agg_mode: str
    loss_scale_factor: float | None = None


def add_mask_fields(data: Any, group_ids: Sequence[str], sources: Sequence[Sequence[str]], seed: int, step: int) -> None:
    """Put each row's mask seed and image sources in verl's update batch (a ``DataProto``), in place."""
    data.batch[SEED_KEY] = torch.tensor([view_seed(seed, step, str(g)) for g in group_ids], dtype=torch.long)
    names = np.empty(len(group_ids), dtype=object)  # one tuple per row (np.array would make a 2-D array of str)
    for i, row in enumerate(sources):
        names[i] = tuple(row)
    data.non_tensor_batch[SOURCES_KEY] = names


def masked_pixel_values(micro_batch: Any, setup: PapoSetup) -> torch.Tensor:
    """The micro-batch's pixel values, row after row as verl concatenates them, each row's images masked."""
    from verl.utils.tensordict_utils import unwrap_non_tensor_data

    black_row, merge, patch = setup.geometry
    side = setup.view.region_side(patch)
    inputs, sources, seeds = micro_batch["multi_modal_inputs"], micro_batch[SOURCES_KEY], micro_batch[SEED_KEY]
    parts = []
    for i in range(len(seeds)):
        row = unwrap_non_tensor_data(inputs[i])
        if not isinstance(row, dict) or row.get("pixel_values") is None:
            continue
        parts.append(alter_pixel_values(row["pixel_values"], torch.as_tensor(row["image_grid_thw"]),
                                        list(unwrap_non_tensor_data(sources[i]) or ()), setup.view, black_row, merge,
                                        int(seeds[i]), side))
    return torch.cat(parts)


def papo_loss(verl_loss: Callable, engine: Any, setup: PapoSetup, model_output: dict, data: Any, dp_group=None):
    """verl's loss on the micro-batch plus PAPO's term (module docstring); its metrics under ``perception/``."""
    from verl.trainer.ppo.core_algos import agg_loss
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    loss, metrics = verl_loss(model_output=model_output, data=data, dp_group=dp_group)
    inputs, output_args = engine.prepare_model_inputs(micro_batch=data)
    masked = model_output  # a micro-batch without images has nothing to mask: its masked copy is itself
    if "pixel_values" in inputs:
        inputs["pixel_values"] = masked_pixel_values(data, setup).to(inputs["pixel_values"])
        raw = engine.module(**inputs, use_cache=False)
        masked = engine.prepare_model_outputs(output=raw, output_args=output_args, micro_batch=data,
                                              logits_processor_func=None)

    def padded(values):
        return no_padding_2_padding(values, data)

    entropy = masked_entropy = None
    if setup.entropy_coef != 0:
        if "entropy" not in model_output or "entropy" not in masked:
            raise RuntimeError("PAPO's entropy term needs verl's entropies: actor_rollout_ref.actor.calculate_entropy "
                               "must be true (MARS sets it for perception=papo)")
        entropy, masked_entropy = padded(model_output["entropy"]), padded(masked["entropy"])
    mask = data.select("response_mask").to_padded_tensor()["response_mask"].to(bool)
    info = {"dp_size": data["dp_size"], "batch_num_tokens": data["batch_num_tokens"],
            "global_batch_size": data["global_batch_size"], "loss_scale_factor": setup.loss_scale_factor}
    term, values = papo_loss_terms(
        padded(model_output["log_probs"]), padded(masked["log_probs"]), entropy, masked_entropy,
        lambda x: agg_loss(loss_mat=x, loss_mask=mask, loss_agg_mode=setup.loss_agg_mode, **info),
        setup.kl_coef, setup.entropy_coef)
    # as verl's ppo_loss: micro-batch terms already divided by the global batch add up to the mini-batch's value
    summed = (info["dp_size"] > 1 or info["batch_num_tokens"] is not None or info["global_batch_size"] is not None
              or setup.loss_scale_factor is not None)
    aggregation = AggregationType.SUM if summed else AggregationType.MEAN
    metrics.update({key: Metric(value=value, aggregation=aggregation) for key, value in values.items()})
    return loss + term, metrics


__all__ = ["PapoSetup", "SEED_KEY", "SOURCES_KEY", "add_mask_fields", "masked_pixel_values", "papo_loss"]
