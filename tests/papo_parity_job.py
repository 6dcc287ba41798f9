"""Run by tests/test_perception_parity.py in a subprocess (verl's platform, process group and patches of the Qwen-VL
classes must not leak into the test process): one PAPO update of the verl engine on the rows the local engine
updated, printed as JSON metrics.

Everything of verl's update runs for real but Ray: ``VerlEngine.update_policy`` -> verl's ``RayPPOTrainer.
_update_actor`` (its padding conversion and batch settings) -> MARS's worker (``MarsActorRolloutRefWorker``, built
in this process as Ray would build it, world size 1) -> verl's ``update_actor`` / ``train_mini_batch`` -> the FSDP2
engine's forward and backward per micro-batch -> ``mars.engines.verl.papo.papo_loss``."""

import json
import os
import socket
import sys
from types import SimpleNamespace

import torch


class DirectGroup:
    """A worker group of one worker called in this process: what ``RayWorkerGroup`` returns for world size 1."""

    world_size = 1

    def __init__(self, worker):
        self.worker = worker

    def update_actor(self, data):
        return self.worker.update_actor(data)

    def set_papo_loss(self, setup):
        return [self.worker.set_papo_loss(setup)]


def main(saved_file, out_file):
    from omegaconf import open_dict
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mars.config.compose import compose_config
    from mars.engines.verl.launch import prepare_config
    from mars.engines.verl.payload import VerlPayload
    from mars.engines.verl.perception import MarsActorRolloutRefWorker
    from mars.engines.verl.verl_engine import VerlEngine
    from mars.training.interface import PolicyBatch

    from perception_parity_job import verl_layout  # beside this file

    saved = torch.load(saved_file, weights_only=False)
    config = compose_config("embedded", [*saved["overrides"], "trainer.engine=verl"])
    prepare_config(config, write=lambda line: None)  # the CPU settings, float32 among them (device_settings)
    with open_dict(config):
        config.trainer.balance_batch = False  # one rank: nothing to balance
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    worker = MarsActorRolloutRefWorker(config=config.actor_rollout_ref, role="actor")
    worker.init_model()

    model_dir = str(config.actor_rollout_ref.model.path)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)  # for mRoPE positions only
    rows = saved["rows"]
    data = verl_layout(rows, model, processor.tokenizer.pad_token_id or 0, int(processor.image_token_id),
                       response_width=saved["old_log_probs"].shape[1])
    trainer = SimpleNamespace(config=config, processor=processor, tokenizer=processor.tokenizer,
                              actor_rollout_wg=DirectGroup(worker), distillation_config=None)
    trainer._update_actor = lambda batch: RayPPOTrainer._update_actor(trainer, batch)
    engine = VerlEngine(trainer)
    rows.payload = VerlPayload(data)
    metrics = engine.update_policy(PolicyBatch(rows, saved["advantages"], saved["old_log_probs"], None,
                                               perception_loss=saved["papo"]))
    json.dump({key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))},
              open(out_file, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:])
