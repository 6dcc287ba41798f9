"""Several nodes, as far as one machine allows: a Ray cluster started with ``ray start`` (as on a head node), joined
by a driver through ``RAY_ADDRESS`` with the runtime environment ``mars.engines.verl.launch`` builds for a cluster it
joins. The job's workers get MARS's code from Ray (``py_modules``) and load its verl plugin through
``VERL_USE_EXTERNAL_MODULES`` even with entry-point discovery switched off, as on a node where the package is not
installed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]

DRIVER = r"""
import json, os, sys
import ray
from mars.engines.verl.launch import ray_init_kwargs
from mars.config.compose import compose_config

config = compose_config("embedded", ["trainer.engine=verl"])
kwargs = ray_init_kwargs(config, on_cpu=False, joining=True)
kwargs["runtime_env"]["env_vars"]["VERL_USE_EXTERNAL_PLUGINS"] = "none"  # as if the entry points were not installed
planned = json.loads(json.dumps(kwargs))
ray.init(**kwargs)  # uploads the py_modules to the cluster (the runtime env then names them by gcs:// URI)

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

print("RESULT", json.dumps({"kwargs": planned, "uploaded": kwargs["runtime_env"].get("py_modules"),
                            "task": ray.get(on_a_node.remote())}))
ray.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited: {proc.communicate()[0][-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError("the head node did not come up")


def test_a_job_joining_a_cluster_ships_mars_and_loads_its_plugin(tmp_path):
    port = free_port()
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    # no token authentication on this throw-away loopback cluster (a real one shares its token with every node)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    ray_bin = str(Path(sys.executable).parent / "ray")
    # --block: the head node lives as long as this process, and stopping it stops only this cluster's processes
    # (`ray stop` would stop every Ray on the machine, a user's training included)
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={ray_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for_port(port, head)
        driver = subprocess.run([sys.executable, "-c", DRIVER], cwd=tmp_path, capture_output=True, text=True,
                                env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=300)
        assert driver.returncode == 0, driver.stderr[-4000:]
        line = next(line for line in driver.stdout.splitlines() if line.startswith("RESULT "))
        result = json.loads(line[len("RESULT "):])
    finally:
        head.terminate()
        head.communicate(timeout=120)
        shutil.rmtree(ray_dir, ignore_errors=True)

    runtime_env = result["kwargs"]["runtime_env"]
    assert {str(REPO / "mars"), str(REPO / "utils")} <= set(runtime_env["py_modules"])
    assert "mars.verl_plugin" in runtime_env["env_vars"]["VERL_USE_EXTERNAL_MODULES"]
    assert "num_cpus" not in result["kwargs"]  # a joined cluster keeps its own resources
    assert len(result["uploaded"]) == 2 and all(u.startswith("gcs://") for u in result["uploaded"])
    task = result["task"]
    assert task["plugins"] == "none"  # entry points off: the plugin came through VERL_USE_EXTERNAL_MODULES
    assert task["estimator"] == "compute_mars_outcome_advantage"
    assert (task["replica"], task["adapter"]) == ("HFReplica", "HFServerAdapter")
    assert task["shipped"], "Ray did not put the shipped packages on the worker's path"
