"""The perception pass on verl: MARS's actor worker adds methods beside verl's ``compute_log_prob``.

verl's own actor forward (no-padding layout, fused kernels, its attention patches) stays as it is and gives the old
log-probs. The perception signals (``mars.hf.perception``: VGPO's similarity, log-probs and per-token KL under
altered images) are computed by ``compute_perception_signals``, a method of ``MarsActorRolloutRefWorker`` (a
subclass of verl's ``ActorRolloutRefWorker``, put in its place in the task runner's role mapping): each
data-parallel rank runs the same code as the local engine on the FSDP module, on an equal share of the rows
(every rank must run the same number of forwards: FSDP gathers parameters collectively). On verl this is one real
forward more than on the local engine, where the similarity comes from the old-log-prob pass itself.

PAPO's loss term runs inside verl's actor update: ``set_papo_loss`` installs it (``mars.engines.verl.papo``).
Faithful-MR1's focus measurement at validation: ``compute_focus_metrics``; its reinforcing stage's focus attention
comes with the perception pass, its causal maps from ``compute_causal_maps`` (``mars.hf.focus``).

The driver turns the rows' ``DataProto`` back into per-row prompt inputs (prompt ids without padding, the
processor's pixel values from ``multi_modal_inputs``), the form the local engine keeps.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Any

import torch
from verl.single_controller.base.decorator import Dispatch, register
from verl.workers.engine_workers import ActorRolloutRefWorker

from mars.engines.verl.papo import PapoSetup, papo_loss
from mars.hf.perception import perception_signals
from mars.processing import PromptInputs


def rows_as_prompt_inputs(data: Any, image_token_id: int):
    """verl rows (left-padded ``prompts``, right-padded ``responses``, ``multi_modal_inputs``) -> the local
    engine's per-row prompt inputs and response ids, and each row's own position ids (verl's (4, L) mRoPE layout,
    which verl's patched Qwen-VL forward requires), without padding."""
    prompts_ids = data.batch["prompts"]
    width_p = prompts_ids.shape[1]
    attention = data.batch["attention_mask"]
    response_mask = data.batch["response_mask"]
    inputs = data.non_tensor_batch.get("multi_modal_inputs", [None] * len(data))
    positions = data.batch["position_ids"]
    prompts, responses, row_positions = [], [], []
    for i in range(len(data)):
        length = int(attention[i, :width_p].sum()) + int(response_mask[i].sum())
        pos = positions[i] if positions.dim() == 3 else positions[i].unsqueeze(0)
        row_positions.append(pos[:, attention[i].bool()][:, :length].clone())
        ids = prompts_ids[i][attention[i, :width_p].bool()].unsqueeze(0)
        mm = inputs[i] if isinstance(inputs[i], dict) else {}
        prompts.append(PromptInputs(
            input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=(ids == image_token_id).long(),
            pixel_values=mm.get("pixel_values"), image_grid_thw=mm.get("image_grid_thw"),
        ))
        responses.append(data.batch["responses"][i][: int(response_mask[i].sum())].clone())
    return prompts, responses, row_positions


def rope_positions(model: torch.nn.Module, ids: torch.Tensor, prompt: PromptInputs) -> torch.Tensor:
    """(4, L) positions of one sequence (``ids``: the prompt's tokens and what follows them) in verl's layout for
    Qwen-VL: the text positions, then the model's own multimodal rotary positions (``get_rope_index``)."""
    ids = ids.unsqueeze(0)
    mm = torch.zeros_like(ids)
    mm[0, : prompt.mm_token_type_ids.shape[1]] = prompt.mm_token_type_ids[0]
    vision, _ = model.model.get_rope_index(ids, mm, image_grid_thw=prompt.image_grid_thw,
                                           attention_mask=torch.ones_like(ids))
    return torch.cat([torch.arange(ids.shape[1]).unsqueeze(0), vision[:, 0].cpu()])


ROW_KEYS = ("prompts", "responses", "sources", "group_ids", "position_ids", "answer_masks")


def split_job(job: dict[str, Any], ranks: int) -> tuple[list[dict[str, Any]], int]:
    """One job per rank, of equal row counts (the last rows repeated to fill), and the number of real rows. The
    job's per-row lists are its ``ROW_KEYS``."""
    n = len(job["prompts"])
    per_rank = -(-n // ranks)
    order = [min(k, n - 1) for k in range(per_rank * ranks)]
    row_keys = [key for key in ROW_KEYS if key in job]
    jobs = []
    for r in range(ranks):
        part = order[r * per_rank:(r + 1) * per_rank]
        jobs.append({**job, **{key: [job[key][k] for k in part] for key in row_keys}})
    return jobs, n


def run_job(module: torch.nn.Module, job: dict[str, Any], autocast) -> dict[str, torch.Tensor]:
    """``mars.hf.perception.perception_signals`` on one rank's rows."""
    device = next(module.parameters()).device
    return perception_signals(
        module, job["prompts"], job["responses"], job["sources"], job["group_ids"], job["width"], job["micro_batch"],
        device, job["pad_id"], job["temperature"], autocast, job["views"], job["similarity"], job["geometry"],
        job["seed"], job["step"], job["position_ids"], focus=job.get("focus"),
    )


def run_causal_job(module: torch.nn.Module, job: dict[str, Any], autocast) -> dict[str, torch.Tensor]:
    """``mars.hf.focus.causal_maps`` on one rank's rows: ``focus/causal``."""
    from mars.hf.focus import causal_maps

    device = next(module.parameters()).device
    masks = torch.stack(job["answer_masks"]) if job["answer_masks"] else torch.zeros(0, job["width"], dtype=torch.bool)
    return {"focus/causal": causal_maps(module, job["prompts"], job["responses"], masks, job["cells"],
                                        job["geometry"], device, job["pad_id"], job["temperature"], autocast,
                                        position_ids=job["position_ids"])}


def run_focus_job(module: torch.nn.Module, job: dict[str, Any]) -> dict[str, float]:
    """``mars.hf.focus.measure_focus`` on the module, the focus token after each prompt at verl's positions."""
    from mars.hf.focus import measure_focus

    focus = torch.tensor([job["focus_id"]])
    positions = [rope_positions(module, torch.cat([p.input_ids[0], focus]), p) for p in job["prompts"]]
    return measure_focus(module, job["prompts"], job["masks"], job["focus_id"], job["layer"],
                         next(module.parameters()).device, job["pad_id"], nullcontext, position_ids=positions)


class MarsActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's actor/rollout/ref worker with the perception pass (module docstring)."""

    @register(dispatch_mode=Dispatch.DP_COMPUTE)
    def compute_perception_signals(self, job: dict[str, Any]) -> dict[str, torch.Tensor]:
        engine = self.actor.engine
        with engine.eval_mode():
            return run_job(engine.module, job, self._perception_autocast)

    @register(dispatch_mode=Dispatch.DP_COMPUTE)
    def compute_causal_maps(self, job: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Faithful-MR1's causal maps of this rank's rows (``mars.hf.focus.causal_maps``)."""
        engine = self.actor.engine
        with engine.eval_mode():
            return run_causal_job(engine.module, job, self._perception_autocast)

    def _perception_autocast(self):
        """The FSDP engine's autocast on a GPU (its mixed-precision dtype), none on a CPU."""
        engine = self.actor.engine
        dtype = getattr(engine, "_autocast_dtype", None)
        device = next(engine.module.parameters()).device
        return torch.autocast(device.type, dtype=dtype) if dtype is not None and device.type == "cuda" else nullcontext()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def compute_focus_metrics(self, job: dict[str, Any]) -> dict[str, float]:
        """Faithful-MR1's ``focus_in_box`` on the FSDP module (``mars.hf.focus.measure_focus``); every rank runs the
        same prompts (FSDP gathers parameters collectively) and returns the same numbers."""
        engine = self.actor.engine
        with engine.eval_mode():
            return run_focus_job(engine.module, job)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_papo_loss(self, setup: PapoSetup) -> None:
        """The actor's loss becomes verl's loss plus PAPO's term (``mars.engines.verl.papo``); verl's own loss
        function stays in ``self.loss_fn``, so setting it again replaces the term instead of stacking it."""
        self.actor.set_loss_fn(partial(papo_loss, self.loss_fn, self.actor.engine, setup))


def gather_results(results: list[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
    """The ranks' signals in row order, padding rows dropped."""
    return {key: torch.cat([r[key] for r in results])[:n] for key in results[0]}


__all__ = ["MarsActorRolloutRefWorker", "gather_results", "rope_positions", "rows_as_prompt_inputs", "run_causal_job",
           "run_focus_job", "run_job", "split_job"]
