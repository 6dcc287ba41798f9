"""Hydra configs: ``mars_trainer`` (verl's ``ppo_trainer`` + the ``mars`` section), presets, the embedded default."""
