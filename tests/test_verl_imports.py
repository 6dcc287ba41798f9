"""Every module of the verl engine and both entry points import on a CPU machine, with the GPU-only packages
(vLLM, SGLang, flash-attn, TransferQueue) made unimportable and no GPU visible: nothing may need them at import."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("verl")

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("vllm", "sglang", "flash_attn", "transfer_queue")


def verl_engine_modules() -> list[str]:
    import mars.engines.verl as package

    return [package.__name__] + [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def test_every_module_imports_without_gpu_packages():
    modules = [*verl_engine_modules(), "mars.main_ppo", "recipe", "recipe.dapo", "recipe.dapo.main_dapo"]
    assert {"mars.engines.verl.verl_engine", "mars.engines.verl.ray_trainer", "mars.engines.verl.launch"} <= set(modules)
    # None in sys.modules makes `import X` fail and find_spec(X) answer "not installed", wherever X is imported
    program = f"""
import importlib, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None
for module in {modules!r}:
    importlib.import_module(module)
import torch
assert not torch.cuda.is_available()
print("imported", len({modules!r}))
"""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(modules)}" in result.stdout


def test_entry_points_are_hydra_mains_on_our_configs():
    import mars.main_ppo
    import recipe.dapo.main_dapo

    assert mars.main_ppo.CONFIG_NAME == "verl_grpo" and recipe.dapo.main_dapo.CONFIG_NAME == "verl_dapo"
    for name in ("verl_grpo", "verl_dapo", "verl_engine"):
        assert (REPO / "mars" / "config" / f"{name}.yaml").is_file()


def test_import_mars_registers_the_estimator_without_entry_points():
    """A source checkout that was never `pip install`-ed has no `verl.plugins` entry point (here: entry points
    switched off): `import mars` before verl registers the estimator when verl's registry loads, without touching
    the environment that child processes inherit."""
    program = """
import os
import mars
from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY
assert "mars" in ADV_ESTIMATOR_REGISTRY, sorted(ADV_ESTIMATOR_REGISTRY)
print(os.environ.get("VERL_USE_EXTERNAL_MODULES", ""))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "VERL_USE_EXTERNAL_PLUGINS": "none"}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ""
