"""``actor_rollout_ref.rollout.name=hf``: a rollout backend for verl's agent loop that generates with transformers.

For debugging a verl run on a laptop, a CPU machine or one GPU without vLLM or SGLang. It plugs into verl 0.9.1
through its public registries (``register()``, called by MARS's ``verl.plugins`` entry point in every process):

    server.py    HFRolloutServer: a Ray actor serving verl's token-in/token-out ``generate`` with images, batching
                 concurrent requests into one ``Decoder.generate`` call (the local engine's decoding code)
    replica.py   HFReplica: the replica verl's AgentLoopManager launches (``RolloutReplicaRegistry``), one server per
                 trainer rank (hybrid mode: rollout and FSDP training share the device)
    adapter.py   HFServerAdapter: the trainer-side rollout (verl's rollout class table); receives the actor's weights
                 through verl's ``naive`` checkpoint engine every step and hands them to its server
"""

from __future__ import annotations

NAME = "hf"


def register() -> None:
    """Make ``rollout.name=hf`` known to verl's replica registry and rollout class table (idempotent)."""
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    def load_replica():
        from mars.engines.verl.hf_rollout.replica import HFReplica

        return HFReplica

    RolloutReplicaRegistry.register(NAME, load_replica)
    rollout_base._ROLLOUT_REGISTRY[(NAME, "async")] = "mars.engines.verl.hf_rollout.adapter.HFServerAdapter"
