"""Rollout requests -> the DataProto verl's agent loop takes, and its output -> the step's ``RolloutBatch``.

One request is one row. A row carries what verl's own trainer hands the agent loop for a dataset row (the
dataset fields, ``uid``) with ``raw_prompt`` replaced by the request's messages: the multi-source prompt, or a
mono-source variant for an anchor. verl 0.9.1's agent loop reads a per-row ``__do_sample__`` flag (the ReMax
baseline uses it) and switches a row to greedy decoding (temperature 0, top_p 1, top_k -1) when it is false, so
anchors are decoded greedily inside the SAME request as the sampled rollouts.

The ``mars_*`` fields are ours: verl passes unknown row fields on to the agent loop's and the reward function's
keyword arguments, where they are ignored.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from verl import DataProto

from mars.engines.verl.samples import REPLACED_FIELDS, VerlPromptSample
from mars.training.interface import RolloutBatch, RolloutRequest

DO_SAMPLE_KEY = "__do_sample__"  # verl's per-row greedy switch (experimental/agent_loop/agent_loop.py)
ANCHOR_KEY = "mars_is_anchor"
SOURCE_KEY = "mars_source"
REQUEST_KEYS = ("uid", ANCHOR_KEY, SOURCE_KEY)  # joined back onto the output (the agent loop does not echo them)


def object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array, one element per value (np.array would turn equal-length lists into a 2-D array)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def request_fields(request: RolloutRequest) -> dict[str, Any]:
    """The dataset fields of a request's sample, as verl's dataset row would give them."""
    sample = request.sample
    if isinstance(sample, VerlPromptSample):
        fields = {k: v for k, v in sample.row.items() if k not in REPLACED_FIELDS}
    else:  # a plain PromptSample (tests, other datasets): the fields verl's reward managers read
        fields = {
            "data_source": sample.data_source,
            "reward_model": {"style": "rule", "ground_truth": sample.ground_truth},
            "extra_info": sample.extra_info,
            "index": sample.index,
        }
    fields.setdefault("tools_kwargs", {})
    fields.setdefault("interaction_kwargs", {})
    return fields


def generation_batch(requests: Sequence[RolloutRequest]) -> DataProto:
    """The agent loop's input: no tensors, one row of non-tensor fields per request, in request order."""
    if not requests:
        raise ValueError("no rollout requests")
    rows = [request_fields(r) for r in requests]
    keys = list(rows[0])
    for r, row in zip(requests, rows):
        if set(row) != set(keys):
            raise ValueError(
                f"request {r.group_id} has dataset fields {sorted(row)} but the first has {sorted(keys)}: verl needs "
                f"the same columns in every row (concatenate files of one schema)"
            )
    columns = {key: object_array([row[key] for row in rows]) for key in keys}
    columns["raw_prompt"] = object_array([r.messages for r in requests])
    columns["uid"] = object_array([r.group_id for r in requests])
    columns[ANCHOR_KEY] = np.array([r.is_anchor for r in requests], dtype=bool)
    columns[SOURCE_KEY] = object_array([r.source for r in requests])
    columns[DO_SAMPLE_KEY] = np.array([r.sampling.do_sample for r in requests], dtype=bool)
    return DataProto.from_dict(non_tensors=columns)


def join_request_fields(output: DataProto, generation: DataProto) -> DataProto:
    """The agent loop's output rows (same order as its input) with the request's fields added back.

    verl's agent loop returns the input fields only when no streaming reward worker is attached, so the fields
    the step and the reward path need are joined here, as verl's trainer joins its batch with the output."""
    if len(output) != len(generation):
        raise RuntimeError(f"the rollout returned {len(output)} rows for {len(generation)} requests")
    joined = dict(output.non_tensor_batch)
    for key, values in generation.non_tensor_batch.items():
        if key != DO_SAMPLE_KEY and key not in joined:
            joined[key] = values
    return DataProto(batch=output.batch, non_tensor_batch=joined, meta_info=dict(output.meta_info))


def check_prompts_follow_requests(requests: Sequence[RolloutRequest], data: DataProto) -> None:
    """Rows that were sent the same messages (the n rollouts of a prompt) must come back with the same prompt tokens.

    The request's own fields (``uid``...) are joined from the request side, so comparing them proves nothing; the
    prompt tokens are the agent loop's own output, so a row returned in another group's place is caught here."""
    prompts = data.batch["prompts"]
    rows_of: dict[int, list[int]] = {}
    for i, request in enumerate(requests):
        rows_of.setdefault(id(request.messages), []).append(i)
    for rows in rows_of.values():
        same = (prompts[rows] == prompts[rows[0]]).all(dim=-1)
        if not bool(same.all()):
            bad = rows[int(torch.nonzero(~same)[0])]
            raise RuntimeError(
                f"verl's rollout returned rows out of request order: row {bad} ({requests[bad].group_id}) has other "
                f"prompt tokens than row {rows[0]}, which was sent the same messages"
            )


def response_lengths(data: DataProto) -> torch.Tensor:
    """Generated tokens per row: the response part of the attention mask (verl's own definition)."""
    width = data.batch["responses"].shape[1]
    return data.batch["attention_mask"][:, -width:].sum(dim=-1)


def rollout_batch(requests: Sequence[RolloutRequest], data: DataProto, tokenizer: Any, max_length: int) -> RolloutBatch:
    """The step's view of the rows: group ids, anchor flags, decoded texts; ``data`` becomes the payload."""
    from mars.engines.verl.payload import VerlPayload

    lengths = response_lengths(data)
    responses = data.batch["responses"]
    texts = [tokenizer.decode(responses[i, : int(n)].tolist(), skip_special_tokens=True) for i, n in enumerate(lengths)]
    lengths_np = lengths.cpu().numpy().astype(np.int64)
    return RolloutBatch(
        group_ids=np.array([r.group_id for r in requests], dtype=object),
        is_anchor=np.array([r.is_anchor for r in requests], dtype=bool),
        sources=np.array([r.source for r in requests], dtype=object),
        texts=texts,
        response_lengths=lengths_np,
        truncated=lengths_np >= max_length,  # verl's clip ratio: the response filled the length limit
        samples=[r.sample for r in requests],
        payload=VerlPayload(data),
    )
