"""Hydra configs: ``mars_trainer`` (verl's ``ppo_trainer`` + the ``mars`` section), presets, the embedded default.

``${mars.engine_suffix:${trainer.engine}}`` is "" for the local engine and "_<engine>" for another: the embedded
default's run folder names the engine, so `mars train` then `mars train trainer.engine=verl` run side by side.
"""

from omegaconf import OmegaConf

OmegaConf.register_new_resolver(
    "mars.engine_suffix", lambda engine: "" if str(engine) == "local" else f"_{engine}", replace=True
)
