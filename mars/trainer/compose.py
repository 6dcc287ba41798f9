"""Composing the trainer's Hydra config (verl's ``ppo_trainer`` + MARS) without starting anything."""

from __future__ import annotations

from typing import Any, Sequence

# verl's own config folder, where `ppo_trainer` and its groups live. Hydra only honours a search path set in the
# primary config, and our configs are also used as non-primary parents, so it is set here for every composition.
VERL_SEARCHPATH = "hydra.searchpath=[pkg://verl.trainer.config]"


def compose_config(config_name: str = "embedded", overrides: Sequence[str] = ()) -> Any:
    """The composed, resolved-on-access DictConfig of ``mars/config/<config_name>.yaml`` with Hydra overrides."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="mars.config", version_base=None):
        return compose(config_name=config_name, overrides=[VERL_SEARCHPATH, *overrides])
