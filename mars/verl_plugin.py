"""verl plugin entry point (``[project.entry-points."verl.plugins"]`` in pyproject.toml).

``import verl`` loads every installed ``verl.plugins`` entry point, in the driver and in every Ray worker, so what
MARS adds to verl exists wherever verl runs, with no import order to remember:
  - the ``mars`` advantage estimator (verl's estimator registry);
  - the ``hf`` rollout backend (verl's rollout replica registry and rollout class table);
  - the ``cpu`` platform (verl's platform registry), and its shims in processes that run on it;
  - the workarounds for two verl 0.9.1 faults that hit every device (``mars.engines.verl.verl_fixes``).
verl swallows a failing plugin at debug level: a step that then finds no ``mars`` estimator says so, naming the
install. Ray workers on nodes without the entry point import this module through ``VERL_USE_EXTERNAL_MODULES``
(``mars.engines.verl.launch``), which raises on failure.
"""

from mars.advantage.verl_estimator import register


def register_all() -> None:
    from mars.engines.verl import cpu_platform, verl_fixes
    from mars.engines.verl.hf_rollout import register as register_hf_rollout

    register()
    register_hf_rollout()
    verl_fixes.apply()
    cpu_platform.activate_if_requested()


register_all()
