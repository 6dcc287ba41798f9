"""MARS: mono-anchored multi-source reasoning for RL on vision-language models.

The engine-free core is importable without verl, Ray or a GPU:

    from mars import compute_mars_advantage, fusion_diagnostics, filter_groups, build_mono_source_variants

The ``mars`` advantage estimator is registered in verl's registry whenever verl is imported: the package is a
``verl.plugins`` entry point (``mars.verl_plugin``), and ``import mars`` also names ``mars.advantage.register_with_verl``
in ``VERL_USE_EXTERNAL_MODULES``, which verl reads when it is imported (in this process and those it starts), so a
source checkout that was never ``pip install``-ed registers it too. If verl came first, it is registered right away.
"""

import os
import sys

from mars.advantage import GroupFilterResult, compute_mars_advantage, filter_groups, fusion_diagnostics
from mars.anchors import MonoSourceVariant, build_mono_source_variants

__version__ = "0.1.0"

__all__ = [
    "GroupFilterResult",
    "MonoSourceVariant",
    "build_mono_source_variants",
    "compute_mars_advantage",
    "filter_groups",
    "fusion_diagnostics",
    "register_verl_estimator",
]


def register_verl_estimator() -> None:
    """Register the ``mars`` estimator in verl's advantage-estimator registry (idempotent; imports verl)."""
    from mars.advantage.verl_estimator import register

    register()


_REGISTRATION = "mars.advantage.register_with_verl"
_external = [m for m in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
if _REGISTRATION not in _external:
    os.environ["VERL_USE_EXTERNAL_MODULES"] = ",".join([*_external, _REGISTRATION])

if "verl.trainer.ppo.core_algos" in sys.modules:  # verl came first (e.g. plugins disabled): register now
    register_verl_estimator()
