"""``HFServerAdapter``: the trainer rank's side of the ``hf`` rollout (verl's rollout class table).

verl's ``naive`` checkpoint engine calls it on every trainer rank after each update: ``resume(["weights"])``,
``update_weights(per-tensor params)``, ``resume(["kv_cache"])``; ``release()`` before training. It passes the full
tensors (FSDP has gathered them) to the rank's server as one state dict.
"""

from __future__ import annotations

import os
from typing import Any, Generator

import ray
import torch
from verl.workers.rollout.base import BaseRollout

from mars.engines.verl.hf_rollout.replica import server_name


class HFServerAdapter(BaseRollout):
    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1, **kwargs: Any):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        self.replica_rank = rank if replica_rank == -1 else replica_rank  # one server per rank (world size 1)
        self.is_leader_rank = True
        self.sleep_level = 2
        self._server = None

    @property
    def server(self):
        if self._server is None:  # the servers start after the trainer's workers: look up lazily
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        if "weights" in tags:
            await self.server.wake_up.remote()

    async def release(self) -> None:
        await self.server.sleep.remote()

    async def update_weights(self, weights: Generator[tuple[str, torch.Tensor], None, None],
                             wire_format: str = "named_tensors", **kwargs: Any) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf rollout takes full named tensors, not {wire_format!r} "
                                      "(actor_rollout_ref.rollout.checkpoint_engine.backend=naive)")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("the hf rollout takes merged weights: set actor_rollout_ref.model.lora.merge=true")
        state = {}
        for name, tensor in weights:
            tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = tensor.detach().to("cpu", copy=True)
        await self.server.update_weights.remote(state, kwargs.get("global_steps"))
