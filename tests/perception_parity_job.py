"""Run by tests/test_perception_parity.py in a subprocess (verl's patches of the Qwen-VL classes must not leak into
the test process): the perception signals of the same rows through the local engine's call, then through the verl
engine's code path (its driver's conversion of a verl-layout DataProto, the rows split over two ranks, each rank's
job on a model carrying verl's monkey patches, the ranks' results gathered), printed as JSON differences."""

import json
import sys

import torch


def verl_layout(rows, model, pad_id, image_token_id, response_width=None):
    """The rows as verl's agent loop hands them over: left-padded prompts, right-padded responses, masks, mRoPE
    position ids in verl's (4, L) layout (text positions, then the model's own get_rope_index), multi_modal_inputs."""
    import numpy as np
    from verl import DataProto

    prompts = [p.input_ids[0] for p in rows.payload.prompts]
    responses = rows.payload.responses
    width_p, width_r = max(len(p) for p in prompts), response_width or max(len(r) for r in responses) + 2
    n = len(prompts)
    prompt_ids = torch.full((n, width_p), pad_id, dtype=torch.long)
    response_ids = torch.full((n, width_r), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_r), dtype=torch.long)
    response_mask = torch.zeros((n, width_r), dtype=torch.long)
    positions = torch.zeros((n, 4, width_p + width_r), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        prompt_ids[i, width_p - len(p):] = p
        response_ids[i, : len(r)] = r
        attention[i, width_p - len(p): width_p + len(r)] = 1
        response_mask[i, : len(r)] = 1
        ids = torch.cat([prompt_ids[i], response_ids[i]]).unsqueeze(0)
        mm = (ids == image_token_id).long()
        vision, _ = model.model.get_rope_index(ids, mm, image_grid_thw=rows.payload.prompts[i].image_grid_thw,
                                               attention_mask=attention[i:i + 1])
        positions[i, 1:] = vision[:, 0]
        valid = attention[i].bool()
        positions[i, 0, valid] = torch.arange(int(valid.sum()))
    data = DataProto.from_dict(tensors={
        "prompts": prompt_ids, "responses": response_ids, "input_ids": torch.cat([prompt_ids, response_ids], 1),
        "attention_mask": attention, "response_mask": response_mask, "position_ids": positions,
    })
    data.non_tensor_batch["multi_modal_inputs"] = np.array(
        [{"pixel_values": p.pixel_values, "image_grid_thw": p.image_grid_thw} for p in rows.payload.prompts],
        dtype=object)
    return data


def main(rows_file, model_dir, out_file):
    from contextlib import nullcontext

    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mars.engines.verl.perception import (gather_results, rows_as_prompt_inputs, run_causal_job, run_focus_job,
                                              run_job, split_job)
    from mars.hf.focus import answer_token_masks, focus_job
    from mars.hf.perception import image_geometry

    saved = torch.load(rows_file, weights_only=False)
    rows, request, local = saved["rows"], saved["request"], saved["signals"]
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    pad_id = processor.tokenizer.pad_token_id or 0
    data = verl_layout(rows, model, pad_id, int(processor.image_token_id))

    from verl.models.transformers.monkey_patch import apply_monkey_patch

    # as verl's FSDP engine does on a CPU (sdpa, no remove-padding: mars.engines.verl.device_settings)
    apply_monkey_patch(model=model, use_remove_padding=False, ulysses_sp_size=1)
    prompts, responses, positions = rows_as_prompt_inputs(data, int(processor.image_token_id))
    job = {
        "prompts": prompts, "responses": responses, "sources": rows.row_sources(),
        "group_ids": [str(g) for g in rows.group_ids], "width": int(data.batch["response_mask"].shape[1]),
        "micro_batch": 2, "pad_id": pad_id, "temperature": saved["temperature"], "views": tuple(request.views),
        "similarity": request.similarity, "geometry": image_geometry(processor.image_processor),
        "seed": request.seed, "step": request.step, "position_ids": positions,
    }
    focus = focus_job(processor.tokenizer, request.focus)
    job["focus"] = focus
    jobs, n = split_job(job, 2)
    verl = gather_results([run_job(model, j, nullcontext) for j in jobs], n)
    asked = list(request.focus.causal_rows)
    causal = {key: job[key] for key in ("width", "pad_id", "temperature", "geometry")}
    causal.update(cells=focus.cells, prompts=[prompts[i] for i in asked], responses=[responses[i] for i in asked],
                  position_ids=[positions[i] for i in asked],
                  answer_masks=list(answer_token_masks([responses[i] for i in asked], processor.tokenizer,
                                                       job["width"])))
    jobs, n_causal = split_job(causal, 2)
    verl.update(gather_results([run_causal_job(model, j, nullcontext) for j in jobs], n_causal))
    from mars.hf.focus import as_metrics, focus_probe
    from mars.processing import ImageCache, MultimodalEncoder

    probe_prompts, masks = focus_probe(saved["val"], MultimodalEncoder(processor), ImageCache(processor.image_processor),
                                       int(processor.image_processor.merge_size))
    measured = as_metrics(run_focus_job(model, {"prompts": probe_prompts, "masks": masks, "focus_id": focus.focus_id,
                                                "layer": -1, "pad_id": pad_id}))
    diffs = {}
    for key, value in local.items():
        width = value.shape[1]
        diffs[key] = float((verl[key][:, :width] - value).abs().max())
        diffs[key + "/beyond"] = float(verl[key][:, width:].abs().max()) if verl[key].shape[1] > width else 0.0
    json.dump({"diffs": diffs, "keys": sorted(verl), "rows": n, "focus": measured}, open(out_file, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:])
