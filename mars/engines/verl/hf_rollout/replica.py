"""``HFReplica``: the ``hf`` rollout's replica for verl's AgentLoopManager (hybrid mode: one server per trainer rank).

A replica is one rollout server per trainer rank (tensor, data and pipeline parallel sizes of 1): the server runs
on the rank's node, on the rank's GPU when there is one, and is named ``hf_server_<replica>`` so that the rank's
``HFServerAdapter`` finds it to hand over the weights.
"""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from verl.workers.rollout.replica import RolloutMode, RolloutReplica

from mars.engines.verl.hf_rollout.server import HFRolloutServer


def server_name(replica_rank: int, suffix: str = "") -> str:
    return f"hf_server_{replica_rank}{suffix}"


class HFReplica(RolloutReplica):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.world_size != 1:
            raise ValueError(
                f"the hf rollout runs one model per trainer rank: set actor_rollout_ref.rollout."
                f"tensor_model_parallel_size, data_parallel_size and pipeline_model_parallel_size to 1 (their product "
                f"is {self.world_size})"
            )

    async def launch_servers(self) -> None:
        if self.rollout_mode != RolloutMode.HYBRID:
            raise NotImplementedError("the hf rollout runs in verl's hybrid mode only (rollout beside the actor)")
        from verl.utils.device import get_resource_name

        worker = self.workers[0]
        node_id, accelerators = await worker.__ray_call__.remote(
            lambda self: (ray.get_runtime_context().get_node_id(),
                          ray.get_runtime_context().get_accelerator_ids().get(get_resource_name(), []))
        )
        import torch

        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, accelerators))} if torch.cuda.is_available() else {}
        name = server_name(self.replica_rank, self.name_suffix)
        server = ray.remote(HFRolloutServer).options(
            name=name,
            num_cpus=0,  # it shares the trainer rank's placement; Ray counts no resource twice
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            runtime_env={"env_vars": env},
            max_concurrency=self.max_concurrency,
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        await server.ready.remote()  # the model is loaded before the first request
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"ray://{name}"  # token-in/token-out through the handle; there is no HTTP server
