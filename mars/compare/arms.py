"""The arms of a comparison: named lists of Hydra overrides, and the default six that make it honest.

    grpo        GRPO, n rollouts per prompt
    grpo_mars   GRPO+MARS, n rollouts + K anchors (one greedy answer per mono-source variant)
    grpo_nk     GRPO, n+K rollouts: as many generated sequences per prompt as MARS, so a MARS gain that is only
                "more samples" shows up here too (the fair control for the anchors' extra generations)
    dapo, dapo_mars, dapo_nk    the same three with ``preset=dapo``

Known beside the six, run when named: the perception-aware methods (docs/methods.md), each with GRPO and with
GRPO+MARS: ``grpo_vgpo``, ``grpo_papo``, ``grpo_vppo``, ``grpo_srpo``, ``grpo_faithful_mr1``, and ``grpo_mars_`` + each.

n is the config's ``actor_rollout_ref.rollout.n`` (after the overrides for every arm); K is the number of anchors
a training prompt gets (sources selected by ``mars.anchor_sources`` x ``mars.anchor.n``), read from the data.
An arm's overrides may say ``{n}``, ``{k}`` or ``{n_plus_k}``; they are filled in per arm.
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

ROLLOUT_N = "actor_rollout_ref.rollout.n"
ESTIMATOR = "algorithm.adv_estimator"

DEFAULT_ARMS: dict[str, list[str]] = {
    "grpo": [f"{ESTIMATOR}=grpo"],
    "grpo_mars": [f"{ESTIMATOR}=mars"],
    "grpo_nk": [f"{ESTIMATOR}=grpo", f"{ROLLOUT_N}={{n_plus_k}}"],
    "dapo": ["preset=dapo", f"{ESTIMATOR}=grpo"],
    "dapo_mars": ["preset=dapo", f"{ESTIMATOR}=mars"],
    "dapo_nk": ["preset=dapo", f"{ESTIMATOR}=grpo", f"{ROLLOUT_N}={{n_plus_k}}"],
}
PERCEPTION_LABELS = {"vgpo": "VGPO", "papo": "PAPO", "vppo": "VPPO", "srpo": "SRPO", "faithful_mr1": "Faithful-MR1"}
PERCEPTION_ARMS: dict[str, list[str]] = {
    f"grpo{mars}_{method}": [f"{ESTIMATOR}={'mars' if mars else 'grpo'}", f"perception={method}"]
    for mars in ("", "_mars") for method in PERCEPTION_LABELS
}
KNOWN_ARMS = {**DEFAULT_ARMS, **PERCEPTION_ARMS}
LABELS = {"grpo": "GRPO n={n}", "grpo_mars": "GRPO+MARS n={n} K={k}", "grpo_nk": "GRPO n+K={n_plus_k}",
          "dapo": "DAPO n={n}", "dapo_mars": "DAPO+MARS n={n} K={k}", "dapo_nk": "DAPO n+K={n_plus_k}",
          **{f"grpo{mars}_{method}": ("GRPO+MARS+" if mars else "GRPO+") + label
             + (" n={n} K={k}" if mars else " n={n}") for mars in ("", "_mars")
             for method, label in PERCEPTION_LABELS.items()}}


@dataclass
class Arm:
    name: str
    overrides: list[str] = field(default_factory=list)
    label: str = ""

    def family(self) -> str:
        """The preset it runs (the last ``preset=`` override; grpo when none): arms are paired within a family."""
        presets = [o.split("=", 1)[1] for o in self.overrides if o.startswith("preset=")]
        return presets[-1] if presets else "grpo"

    def perception(self) -> str:
        """The perception-aware method it runs (the last ``perception=`` override; none when none)."""
        values = [o.split("=", 1)[1] for o in self.overrides if o.startswith("perception=")]
        return values[-1] if values else "none"

    def estimator(self) -> str:
        values = [o.split("=", 1)[1] for o in self.overrides if o.startswith(ESTIMATOR + "=")]
        return values[-1] if values else "mars"  # the trainer's default (mars/config/mars_trainer.yaml)


def parse_arm_spec(spec: str) -> tuple[str, list[str]]:
    """``'NAME: KEY=VALUE KEY=VALUE'`` -> (NAME, [overrides]); the overrides are split like a shell would."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"--arm {spec!r}: expected 'NAME: KEY=VALUE ...' with a NAME of letters, digits, _ or -")
    return name, shlex.split(rest)


def select_arms(names: Sequence[str] | None, specs: Sequence[str] = ()) -> list[Arm]:
    """The arms to run: ``names`` among the known arms and the arms ``specs`` define (the default six when None),
    then every ``--arm`` spec, which adds its overrides to a known arm of that name or defines a new arm."""
    parsed = [parse_arm_spec(spec) for spec in specs]
    defined = {name for name, _ in parsed}
    arms: dict[str, Arm] = {}
    for name in names if names is not None else list(DEFAULT_ARMS):
        if name in KNOWN_ARMS:
            arms[name] = Arm(name, list(KNOWN_ARMS[name]), LABELS[name])
        elif name in defined:
            arms[name] = Arm(name, [], name)
        else:
            raise ValueError(f"unknown arm {name!r}: known arms are {', '.join(KNOWN_ARMS)}; define a new one "
                             f"with --arm '{name}: KEY=VALUE ...'")
    for name, overrides in parsed:
        if name in arms:
            arms[name].overrides += overrides
        elif name in KNOWN_ARMS:
            arms[name] = Arm(name, list(KNOWN_ARMS[name]) + overrides, LABELS[name])
        else:
            arms[name] = Arm(name, overrides, name)
    if not arms:
        raise ValueError("no arms to run")
    return list(arms.values())


def anchors_per_prompt(samples: Sequence[Any], mars_cfg: Any) -> int:
    """K: anchors of a training prompt (the most common count, when samples have different numbers of sources)."""
    from mars.anchors import build_mono_source_variants
    from mars.training.settings import AnchorSettings

    anchors = AnchorSettings.from_config(mars_cfg)
    counts = Counter(len(build_mono_source_variants(s.messages, s.sources, anchors.variant_mode, anchors.sources))
                     for s in samples)
    return counts.most_common(1)[0][0] * anchors.n if counts else 0


def fill_placeholders(arm: Arm, n: int, k: int) -> Arm:
    """The arm with ``{n}``, ``{k}``, ``{n_plus_k}`` replaced in its overrides and label."""
    values = {"n": n, "k": k, "n_plus_k": n + k}
    return Arm(arm.name, [o.format(**values) if "{" in o else o for o in arm.overrides],
               arm.label.format(**values) if "{" in arm.label else arm.label)


def resolved_overrides(arm: Arm) -> list[str]:
    """The overrides without placeholders (to compose the config that n and K are read from)."""
    return [o for o in arm.overrides if "{" not in o]
