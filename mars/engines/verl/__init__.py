"""The verl engine: MARS on verl 0.9.1's Ray worker groups (FSDP actor and reference, vLLM or SGLang rollouts).

    engine.py      VerlEngine: the step's engine interface on a verl trainer
    trainer.py     MarsRayPPOTrainer: verl's RayPPOTrainer with MARS's train_step as its step
    launch.py      MarsTaskRunner and run(config): the entry points' way onto Ray (verl's run_ppo)
    generation.py  rollout requests <-> verl's agent-loop DataProto (anchors greedy via __do_sample__)
    samples.py     verl's dataset rows -> the step's prompts; the expected-image-count check
    payload.py     VerlPayload: a DataProto with the step's row operations
    checks.py      settings the engine refuses, with the fix

Everything here imports on a CPU machine without vLLM or SGLang; GPUs and the rollout engine are needed only when
workers start. Entry points: ``python -m mars.main_ppo`` (GRPO+MARS), ``python -m recipe.dapo.main_dapo``.
"""

from mars.engines.verl.checks import VerlConfigError, check_verl_config
from mars.engines.verl.engine import VerlEngine
from mars.engines.verl.payload import VerlPayload
from mars.engines.verl.samples import VerlPromptSample
from mars.engines.verl.trainer import MarsRayPPOTrainer, PromptStream

__all__ = [
    "MarsRayPPOTrainer",
    "PromptStream",
    "VerlConfigError",
    "VerlEngine",
    "VerlPayload",
    "VerlPromptSample",
    "check_verl_config",
]
