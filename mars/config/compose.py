"""Composing the trainer's Hydra config (verl's ``ppo_trainer`` + MARS) without starting anything.

A mistake in an override is one short ``ConfigError`` naming the closest valid keys, not Hydra's chained tracebacks;
a bad value of a key the step reads (``mars.training.settings``) is one naming the key and the values it takes.
A ``+key=value`` addition that nothing reads is refused where that can be known: a key in the ``mars`` section that
MARS does not read, or a near-miss of an existing key (``+trainer.total_training_step=5`` next to
``trainer.total_training_steps``). ``++key=value`` still adds anything, for readers this check cannot see.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from typing import Any, Sequence

# what `mars train` and `mars compare` start from without --config-name: the embedded default
DEFAULT_CONFIG = "embedded_interference"
# keys of the mars section that code reads with a default, so that they are absent from the config files
MARS_KEYS_READ_WITH_DEFAULT = ("mars.expected_num_images",)


class ConfigError(ValueError):
    """An override the configuration cannot take, explained in a few lines."""


def verl_searchpath() -> str:
    """verl's own config folder, where ``ppo_trainer`` and its groups live, as a Hydra search path.

    Hydra only honours a search path set in the primary config, and our configs are also used as non-primary
    parents, so it is set for every composition. A ``file://`` path found with ``find_spec``, not
    ``pkg://verl.trainer.config``: that one imports verl (Ray, its protocol: 8-11 s on 2 cores), which a typo's
    message, ``--cfg job`` or a complete run's report do not need."""
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("verl is not installed: pip install -e . installs the pinned verl")
    folder = Path(next(iter(spec.submodule_search_locations))) / "trainer" / "config"
    return f"hydra.searchpath=[file://{folder}]"


def _compose(config_name: str, overrides: Sequence[str]) -> Any:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="mars.config", version_base=None):
        return compose(config_name=config_name, overrides=[verl_searchpath(), *overrides])


def compose_config(config_name: str = "embedded", overrides: Sequence[str] = ()) -> Any:
    """The composed, resolved-on-access DictConfig of ``mars/config/<config_name>.yaml`` with Hydra overrides.

    Raises ``ConfigError`` for an override that names no key (with the closest keys), a bad group option, a parse
    error, or a ``+`` addition that nothing reads."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = _compose(config_name, overrides)
    except (HydraException, OmegaConfBaseException, OSError) as exc:
        raise ConfigError(explain(exc, config_name)) from None
    check_additions(cfg, overrides)
    return finalize_config(cfg)


def finalize_config(cfg: Any) -> Any:
    """What every composed config goes through, whoever composed it (``compose_config``, the ``@hydra.main`` entry
    points): the step's settings checked (``ConfigError`` listing each bad key with its valid values), and the reward
    rules both engines follow written in (``mars.training.scoring.resolve_reward_config``), so that the run's
    ``config.yaml`` records the reward it uses."""
    from omegaconf import open_dict

    from mars.training.scoring import resolve_reward_config
    from mars.training.settings import check_settings

    problems = check_settings(cfg)
    if problems:
        raise ConfigError("bad value" + ("s" if len(problems) > 1 else "") + ":\n  - " + "\n  - ".join(problems))
    with open_dict(cfg):
        resolve_reward_config(cfg)
    return cfg


def config_keys(cfg: Any) -> list[str]:
    """Every dotted key of a config, inner nodes included."""
    from omegaconf import OmegaConf

    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.append(name)
            if isinstance(value, dict):
                walk(value, name)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


def closest_keys(key: str, keys: Sequence[str], n: int = 3) -> list[str]:
    """The valid keys nearest to a mistyped one: by the whole dotted key, else by its last part anywhere."""
    close = difflib.get_close_matches(key, keys, n=n, cutoff=0.75)
    if close:
        return close
    leaf = key.rsplit(".", 1)[-1]
    by_leaf: dict[str, list[str]] = {}
    for k in keys:
        by_leaf.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    return [k for name in difflib.get_close_matches(leaf, list(by_leaf), n=n, cutoff=0.75) for k in by_leaf[name]][:n]


def _did_you_mean(key: str, config_name: str) -> str:
    close = closest_keys(key, config_keys(_compose(config_name, [])))
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def explain(exc: Exception, config_name: str) -> str:
    text = str(exc)
    missing = re.search(r"Could not override '([^']+)'", text)
    if missing:
        key = missing.group(1)
        return f"unknown key {key}{_did_you_mean(key, config_name)}"
    group = re.search(r"Could not find '([^']+)'.*?Available options in '[^']+':\s*(.*?)(?:Config search path|$)", text,
                      re.S)
    if group:
        options = ", ".join(group.group(2).split())
        return f"no option {group.group(1)} (available: {options})"
    exists = re.search(r"An item is already at '([^']+)'", text)
    if exists:
        key = exists.group(1)
        return f"{key} already exists: override it without the +, as {key}=VALUE"
    first = [line for line in text.splitlines() if line.strip() and not line.startswith(("See http", "\t"))]
    return " ".join(first[:2]) or type(exc).__name__


def check_additions(cfg: Any, overrides: Sequence[str]) -> None:
    """Refuse ``+key=value`` additions that nothing reads, where that can be known (see the module docstring)."""
    from omegaconf import OmegaConf

    for override in overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key = override[1:].split("=", 1)[0]
        if key.startswith("hydra.") or "/" in key or "@" in key:  # config groups and Hydra's own settings
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        siblings = [k for k in (parent.keys() if hasattr(parent, "keys") else []) if k != leaf]
        near = difflib.get_close_matches(leaf, [str(s) for s in siblings], n=2, cutoff=0.8)
        if near:
            options = " or ".join(f"{parent_key}.{n}" if parent_key else n for n in near)
            raise ConfigError(f"{override}: adds a new key {key}, which nothing reads (did you mean {options}?); "
                              f"write ++{override[1:]} if something does read it")
        if key.split(".", 1)[0] == "mars" and key not in MARS_KEYS_READ_WITH_DEFAULT:
            raise ConfigError(f"{override}: MARS reads no key {key}; its keys are listed by: "
                              "mars train --cfg job --package mars")
