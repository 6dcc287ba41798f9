"""MARS: mono-anchored multi-source reasoning for RL on vision-language models.

The engine-free core is importable without verl, Ray or a GPU:

    from mars import compute_mars_advantage, fusion_diagnostics, filter_groups, build_mono_source_variants

The ``mars`` advantage estimator is registered in verl's registry whenever verl is imported: the package is a
``verl.plugins`` entry point (``mars.verl_plugin``), and ``import mars`` registers it too, right away if verl came
first, else as soon as verl's estimator registry is imported in this process (so a source checkout that was never
``pip install``-ed, or verl with its plugins switched off, trains with it as well).
"""

import importlib.abc
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


_VERL_REGISTRY = "verl.trainer.ppo.core_algos"


class _RegisterWhenVerlLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when verl's estimator registry is first imported, it lets the other finders load it and
    registers ``mars`` right after. It removes itself then, so it acts once and costs nothing afterwards."""

    def find_spec(self, name, path, target=None):
        if name != _VERL_REGISTRY:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                load = spec.loader.exec_module

                def load_and_register(module):
                    load(module)
                    register_verl_estimator()

                spec.loader.exec_module = load_and_register
                return spec
        return None


if _VERL_REGISTRY in sys.modules:  # verl came first (e.g. plugins disabled): register now
    register_verl_estimator()
elif not any(isinstance(f, _RegisterWhenVerlLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenVerlLoads())
