"""verl plugin entry point (``[project.entry-points."verl.plugins"]`` in pyproject.toml).

``import verl`` loads every installed ``verl.plugins`` entry point, in the driver and in every Ray worker, so what
MARS adds to verl exists wherever verl runs, with no import order to remember:
  - the ``mars`` advantage estimator (verl's estimator registry);
  - the ``hf`` rollout backend (verl's rollout replica registry and rollout class table);
  - the ``cpu`` platform (verl's platform registry), and its shims in processes that run on it;
  - the workarounds for two verl 0.9.1 faults that hit every device (``mars.engines.verl.verl_fixes``);
  - silence for notices that say nothing to a MARS user, printed by every Ray process: optional
    training engines that are not installed (torchtitan, veomni, ...), the legacy trainer's deprecation (MARS's
    trainer extends it on purpose: its step replaces the loop verl deprecates), the critic verl disables for
    estimators other than GAE, and torch's is_fx_tracing notice.
verl swallows a failing plugin at debug level: a step that then finds no ``mars`` estimator says so, naming the
install. Ray workers on nodes without the entry point import this module through ``VERL_USE_EXTERNAL_MODULES``
(``mars.engines.verl.launch``), which raises on failure.
"""

import logging
import warnings

from mars.advantage.verl_estimator import register

QUIET = (
    (r"\w+ engine is not available", UserWarning),
    (r"Warning: Class 'verl\.trainer\.ppo\.ray_trainer\.RayPPOTrainer' is deprecated", FutureWarning),
    (r"Disabled critic as algorithm\.adv_estimator != gae", UserWarning),  # MARS's estimators need none
)
# torch's notice that is_fx_tracing changed meaning, logged once per process by the nested-tensor ops of verl's
# update: about torch's internals, not the run
QUIET_LOGGERS = ("torch.fx._symbolic_trace",)


def register_all() -> None:
    for message, category in QUIET:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from mars.engines.verl import cpu_platform, verl_fixes
    from mars.engines.verl.hf_rollout import register as register_hf_rollout

    register()
    register_hf_rollout()
    verl_fixes.apply()
    cpu_platform.activate_if_requested()


register_all()
