"""The ``hf`` rollout server: verl's ``generate(request_id, prompt_ids, sampling_params, image_data, ...)`` with a
Hugging Face model, as a Ray actor.

verl's agent loop sends one request per sample, all at once, and awaits them together. Decoding them one by one
would waste the batch, so requests that arrive together are collected (until none has arrived for a few
milliseconds) and decoded in ONE ``Decoder.generate`` call, the local engine's decoding code: per-row greedy rows
(verl's ``__do_sample__=False`` gives temperature 0), temperature, top-p, per-row token limits, stop at EOS, vision
tokens banned.

Prompts arrive as token ids with one ``<|image_pad|>`` per visual token (verl's processor already expanded them) and
the images as PIL images; the images go through the processor's image processor here, as in the actor's forward.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from typing import Any

import torch

logger = logging.getLogger(__name__)

GATHER_SECONDS = 0.02  # a batch closes when no request has arrived for this long
MAX_GATHER_SECONDS = 0.5


def prompt_inputs(prompt_ids: list[int], images: list[Any] | None, processor: Any):
    """verl's prompt (token ids, images) -> the model inputs of one prompt, built as the local engine builds them
    (``MultimodalEncoder.assemble``). verl's agent loop sends each image's placeholder already expanded to its
    visual tokens; one placeholder per image is accepted too."""
    from mars.processing import ImageCache, MultimodalEncoder

    encoder = MultimodalEncoder(processor)
    cache = ImageCache(processor.image_processor)
    images = list(images or [])
    cache.prepare(images)
    pad = encoder.image_token_id
    collapsed, runs = [], []  # the ids with every run of image pads cut to one; the length of each run
    for t in (int(t) for t in prompt_ids):
        if t == pad and collapsed and collapsed[-1] == pad:
            runs[-1] += 1
            continue
        collapsed.append(t)
        if t == pad:
            runs.append(1)
    needed = [cache[image].num_tokens for image in images]
    if runs != needed and runs != [1] * len(images):
        raise ValueError(f"the prompt has {sum(runs)} image tokens but its {len(images)} images need "
                         f"{sum(needed)}: prompt ids and images do not belong together")
    return encoder.assemble(collapsed, images, cache)


def request_sampling(params: dict[str, Any]):
    """verl's sampling params -> the step's ``Sampling`` (temperature 0 is greedy, as verl's greedy rows ask)."""
    from mars.training.interface import Sampling

    temperature = float(params.get("temperature", 1.0) or 0.0)
    return Sampling(do_sample=temperature > 0, temperature=temperature, top_p=float(params.get("top_p", 1.0) or 1.0))


class HFRolloutServer:
    """One model, served to verl's agent loop; weights replaced by ``update_weights`` after every training step."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int = 0):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from mars.hf.decoding import Decoder, eos_token_ids, vision_token_ids

        self.config = config
        self.replica_rank = replica_rank
        path = getattr(model_config, "local_path", None) or model_config.path
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float32 if self.device.type == "cpu" else getattr(torch, str(config.dtype))
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(self.device).eval()
        tokenizer = self.processor.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.decoder = Decoder(self.model, pad_id, eos_token_ids(self.model, tokenizer), vision_token_ids(tokenizer),
                               self.device)
        self.prompt_length, self.response_length = int(config.prompt_length), int(config.response_length)
        self.global_steps: int | None = None
        self.weight_updates = 0
        self._pending: list[tuple[Any, Any, int, int | None, asyncio.Future]] = []
        self._batcher: asyncio.Task | None = None
        self.seed = int(getattr(config, "seed", 0) or 0)
        torch.manual_seed(self.seed + replica_rank)

    def ready(self) -> dict[str, Any]:
        return {"device": str(self.device), "pid": os.getpid(),
                "parameters": sum(p.numel() for p in self.model.parameters())}

    # ---------------------------------------------------------------------------------------------- generation

    async def generate(self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: list[Any] | None = None, video_data: list[Any] | None = None, **kwargs: Any):
        from verl.workers.rollout.replica import TokenOutput

        if video_data:
            raise NotImplementedError("the hf rollout serves images, not videos")
        params = dict(sampling_params)
        limit = int(params.pop("max_tokens", params.pop("max_new_tokens", self.response_length)))
        limit = max(1, min(limit, self.response_length))
        inputs = prompt_inputs(prompt_ids, image_data, self.processor)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((inputs, request_sampling(params), limit, self.request_seed(request_id), future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batches())
        token_ids = await future
        return TokenOutput(token_ids=token_ids, log_probs=None, stop_reason="completed",
                           extra_fields={"global_steps": self.global_steps})

    def request_seed(self, request_id: str) -> int | None:
        """The sampling seed of one request under verl's ``rollout.full_determinism`` (request ids ``det-<priority>``,
        the priority a function of the row: MARS's verl engine numbers them per step and call): a function of
        (rollout seed, step, request) only, so batches formed by arrival time do not change a row's draws. None for
        verl's random request ids: torch's global generator, as before."""
        if not str(request_id).startswith("det-"):
            return None
        return zlib.crc32(f"{self.seed}:{self.global_steps}:{request_id}".encode()) & 0x7FFFFFFF

    async def _run_batches(self) -> None:
        while self._pending:
            waited, seen = 0.0, -1
            while len(self._pending) != seen and waited < MAX_GATHER_SECONDS:  # until requests stop arriving
                seen = len(self._pending)
                await asyncio.sleep(GATHER_SECONDS)
                waited += GATHER_SECONDS
            batch, self._pending = self._pending, []
            seeds = [b[3] for b in batch]
            try:
                responses, _ = await asyncio.to_thread(
                    self.decoder.generate, [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch], 0,
                    None if None in seeds else seeds)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, none hangs
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), response in zip(batch, responses):
                if not future.done():
                    future.set_result([int(t) for t in response])

    # ---------------------------------------------------------------------------------------------- weights

    def update_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """The actor's full weights (HF names), loaded strictly: a missing or unknown tensor is an error."""
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight") and getattr(self.model.config, "tie_word_embeddings",
                                                                             False)}
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"hf rollout: the actor's weights do not fit the rollout model: missing "
                               f"{sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")
        self.weight_updates += 1
        if global_steps is not None:
            self.global_steps = global_steps
        print(f"hf rollout server {self.replica_rank}: actor weights of step {global_steps} loaded "
              f"({len(state)} tensors)", flush=True)
        return len(state)

    def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    def stats(self) -> dict[str, Any]:
        return {"weight_updates": self.weight_updates, "global_steps": self.global_steps}

    # ---------------------------------------------------------------------------------------------- lifecycle
    # What verl's replica and checkpoint manager call. On a GPU, sleeping moves the weights to the CPU so that
    # training has the memory (verl's hybrid engine); on the CPU there is nothing to free.

    def wake_up(self) -> None:
        if self.device.type != "cpu":
            self.model.to(self.device)

    def sleep(self) -> None:
        if self.device.type != "cpu":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}  # requests finish in one batch: nothing is ever partial

    def resume_generation(self) -> None:
        return None

    def clear_kv_cache(self) -> None:
        return None

    def release_kv_cache(self) -> None:
        return None

    def resume_kv_cache(self) -> None:
        return None

    def start_profile(self, **kwargs: Any) -> None:
        return None

    def stop_profile(self) -> None:
        return None

    def wait_for_requests_to_drain(self) -> None:
        return None
