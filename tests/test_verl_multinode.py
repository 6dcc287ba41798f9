"""Several nodes, as far as one machine allows: a Ray cluster started with ``ray start`` (as on a head node), joined
by a driver through ``RAY_ADDRESS`` with the runtime environment ``mars.engines.verl.launch`` builds for a cluster it
joins. The job's workers get MARS's code from Ray (``py_modules``) and load its verl plugin through
``VERL_USE_EXTERNAL_MODULES`` even with entry-point discovery switched off, as on a node where the package is not
installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]

DRIVER = r"""
import json, os, sys
import ray
from mars.engines.verl.launch import ray_init_kwargs
from mars.trainer.compose import compose_config

config = compose_config("embedded", ["trainer.engine=verl"])
kwargs = ray_init_kwargs(config, on_cpu=False, joining=True)
kwargs["runtime_env"]["env_vars"]["VERL_USE_EXTERNAL_PLUGINS"] = "none"  # as if the entry points were not installed
ray.init(**kwargs)

@ray.remote
def on_a_node():
    import sys
    import verl
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn
    from verl.workers.rollout.base import get_rollout_class
    from verl.workers.rollout.replica import RolloutReplicaRegistry
    import mars
    return {"estimator": get_adv_estimator_fn("mars").__name__, "replica": RolloutReplicaRegistry.get("hf").__name__,
            "adapter": get_rollout_class("hf", "async").__name__,
            "shipped": [p for p in sys.path if "py_modules" in p], "plugins": os.environ.get("VERL_USE_EXTERNAL_PLUGINS")}

print("RESULT", json.dumps({"kwargs": kwargs, "task": ray.get(on_a_node.remote())}))
ray.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_job_joining_a_cluster_ships_mars_and_loads_its_plugin(tmp_path):
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = str(Path(sys.executable).parent / "ray")
    start = subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                            "--include-dashboard=false", f"--temp-dir={tmp_path / 'ray'}"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        driver = subprocess.run([sys.executable, "-c", DRIVER], cwd=tmp_path, capture_output=True, text=True,
                                env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=300)
        assert driver.returncode == 0, driver.stderr[-4000:]
        line = next(line for line in driver.stdout.splitlines() if line.startswith("RESULT "))
        result = json.loads(line[len("RESULT "):])
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, text=True, env=env, timeout=120)

    runtime_env = result["kwargs"]["runtime_env"]
    assert {str(REPO / "mars"), str(REPO / "utils")} <= set(runtime_env["py_modules"])
    assert "mars.verl_plugin" in runtime_env["env_vars"]["VERL_USE_EXTERNAL_MODULES"]
    assert "num_cpus" not in result["kwargs"]  # a joined cluster keeps its own resources
    task = result["task"]
    assert task["plugins"] == "none"  # entry points off: the plugin came through VERL_USE_EXTERNAL_MODULES
    assert task["estimator"] == "compute_mars_outcome_advantage"
    assert (task["replica"], task["adapter"]) == ("HFReplica", "HFServerAdapter")
    assert task["shipped"], "Ray did not put the shipped packages on the worker's path"
