"""The ``hf`` rollout server for verl's agent loop, driven as the agent loop drives it (concurrent ``generate``
calls with verl's token ids, PIL images and sampling params), in-process: batching, per-row sampling, token limits,
the shared decoder, weight updates. The same server under Ray is in ``test_verl_cpu_e2e.py``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("verl")

from mars.engines.verl.hf_rollout.server import HFRolloutServer, prompt_inputs  # noqa: E402
from mars.processing import MultimodalEncoder  # noqa: E402
from mars.processing.images import decode_image  # noqa: E402
from mars.data.samples import load_samples  # noqa: E402

GREEDY = {"temperature": 0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}
SAMPLED = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": False}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    config = SimpleNamespace(prompt_length=512, response_length=12, dtype="bfloat16", seed=0)
    return HFRolloutServer(config, SimpleNamespace(local_path=str(tiny_model_dir), path=str(tiny_model_dir)))


@pytest.fixture(scope="module")
def requests(server, ir_data_dir):
    """verl's view of three prompts: token ids with the image pads expanded, and the images."""
    samples = load_samples(str(ir_data_dir / "val.parquet"), "error")[:3]
    encoder = MultimodalEncoder(server.processor)
    out = []
    for sample, inputs in zip(samples, encoder.encode([s.messages for s in samples])):
        images = [decode_image(p["image"]) for m in sample.messages if isinstance(m["content"], list)
                  for p in m["content"] if p.get("type") == "image"]
        out.append((inputs.input_ids[0].tolist(), images, inputs))
    return out


def serve(server, calls):
    async def run():
        return await asyncio.gather(*[server.generate(request_id=f"r{i}", prompt_ids=ids, sampling_params=dict(params),
                                                      image_data=images) for i, (ids, images, params) in
                                      enumerate(calls)])
    return asyncio.run(run())


def test_prompt_inputs_equal_the_local_engines(server, requests):
    for ids, images, expected in requests:
        got = prompt_inputs(ids, images, server.processor)
        for key in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
            torch.testing.assert_close(getattr(got, key), getattr(expected, key))


def test_one_placeholder_per_image_is_expanded_and_a_mismatch_is_refused(server, requests):
    ids, images, expected = requests[0]
    pad = int(server.processor.image_token_id)
    collapsed = [t for i, t in enumerate(ids) if t != pad or (i > 0 and ids[i - 1] != pad)]
    assert collapsed.count(pad) == len(images)
    torch.testing.assert_close(prompt_inputs(collapsed, images, server.processor).input_ids, expected.input_ids)
    with pytest.raises(ValueError, match="image tokens"):
        prompt_inputs(ids + [pad], images, server.processor)


def test_concurrent_requests_are_decoded_in_one_batch_with_per_row_sampling(server, requests):
    calls = []
    original = server.decoder.generate

    def counting(prompts, samplings, limits, *args, **kwargs):
        calls.append((len(prompts), [s.do_sample for s in samplings], list(limits)))
        return original(prompts, samplings, limits, *args, **kwargs)

    server.decoder.generate = counting
    try:
        torch.manual_seed(0)
        work = [(ids, images, SAMPLED) for ids, images, _ in requests] * 2
        work += [(ids, images, {**GREEDY, "max_tokens": 5}) for ids, images, _ in requests]
        outputs = serve(server, work)
    finally:
        server.decoder.generate = original
    assert calls == [(9, [True] * 6 + [False] * 3, [12] * 6 + [5] * 3)]  # ONE decode for the whole request
    assert all(len(o.token_ids) <= 5 for o in outputs[6:])
    assert all(o.stop_reason == "completed" for o in outputs)
    banned = set(server.decoder.banned)
    assert not any(banned & set(o.token_ids) for o in outputs)  # vision tokens are never generated


def test_greedy_rows_do_not_depend_on_their_batch(server, requests):
    ids, images, _ = requests[1]
    alone = serve(server, [(ids, images, GREEDY)])[0].token_ids
    torch.manual_seed(1)
    crowded = serve(server, [(i, im, SAMPLED) for i, im, _ in requests] + [(ids, images, GREEDY)])[-1].token_ids
    assert alone == crowded


def test_the_server_decodes_as_the_local_engine(server, requests):
    """One decoding code path: the local engine's Decoder on the same model and prompt gives the same tokens."""
    from mars.hf.decoding import Decoder
    from mars.training.interface import Sampling

    ids, images, inputs = requests[2]
    served = serve(server, [(ids, images, GREEDY)])[0].token_ids
    decoder = Decoder(server.model, server.decoder.pad_id, server.decoder.eos_ids, server.decoder.banned,
                      torch.device("cpu"))
    local, _ = decoder.generate([inputs], [Sampling(do_sample=False)], 12)
    assert served == local[0].tolist()


def test_weights_arrive_and_change_what_is_generated(server, requests):
    ids, images, _ = requests[0]
    before = serve(server, [(ids, images, GREEDY)])[0].token_ids
    updates = server.stats()["weight_updates"]
    state = {k: v.clone() for k, v in server.model.state_dict().items()}
    try:
        new = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
        assert server.update_weights(new, global_steps=7) == len(new)
        after = serve(server, [(ids, images, GREEDY)])
        assert after[0].extra_fields["global_steps"] == 7
        assert after[0].token_ids != before
        with pytest.raises(RuntimeError, match="do not fit"):
            server.update_weights({**new, "not.a.weight": torch.zeros(1)})
    finally:
        server.update_weights(state)
    assert serve(server, [(ids, images, GREEDY)])[0].token_ids == before
    assert server.stats()["weight_updates"] == updates + 2  # the refused update counts for nothing
