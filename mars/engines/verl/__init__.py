"""The verl engine: MARS on verl 0.9.1's Ray worker groups (FSDP actor and reference, vLLM or SGLang rollouts).

    launch.py        run(config): the engine's run (``trainer.engine=verl``), MarsTaskRunner onto Ray (verl's run_ppo)
    ray_trainer.py   MarsRayPPOTrainer: verl's RayPPOTrainer with MARS's train_step as its step
    verl_engine.py   VerlEngine: the step's engine interface on a verl trainer
    generation.py    rollout requests <-> verl's agent-loop DataProto (anchors greedy via __do_sample__)
    samples.py       verl's dataset rows -> the step's prompts; the expected-image-count check
    payload.py       VerlPayload: a DataProto with the step's row operations
    checks.py        settings the engine refuses, with the fix
    device_settings.py  the rollout backend check; on a CPU, the settings verl needs there
    cpu_platform.py  verl's ``cpu`` platform (registered through verl's platform plugin hook) and its shims
    hf_rollout/      ``rollout.name=hf``: transformers generation behind verl's agent loop (``mars.hf.decoding``)
    verl_fixes.py    workarounds for verl 0.9.1 faults that hit every device

Everything here imports on a CPU machine without vLLM or SGLang; GPUs and the rollout engine are needed only when
workers start. Entry points: ``python -m mars.main_ppo`` (GRPO+MARS), ``python -m recipe.dapo.main_dapo``.
"""

# Names resolve on first use: verl imports this package from its plugin entry point while verl itself is still
# importing, so nothing heavy (the trainer, Ray, verl's worker code) may load here.
_EXPORTS = {
    "MarsRayPPOTrainer": "mars.engines.verl.ray_trainer",
    "verl_prompt_stream": "mars.engines.verl.ray_trainer",
    "VerlConfigError": "mars.engines.verl.checks",
    "check_verl_config": "mars.engines.verl.checks",
    "VerlEngine": "mars.engines.verl.verl_engine",
    "VerlPayload": "mars.engines.verl.payload",
    "VerlPromptSample": "mars.engines.verl.samples",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
