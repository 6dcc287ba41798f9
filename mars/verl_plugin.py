"""verl plugin entry point (``[project.entry-points."verl.plugins"]`` in pyproject.toml).

``import verl`` loads every installed ``verl.plugins`` entry point, in the driver and in every Ray worker, so the
``mars`` estimator is registered wherever verl runs, with no import order to remember. verl swallows a failing
plugin at debug level; the trainer therefore calls ``register()`` again itself, which is idempotent and raises.
"""

from mars.advantage.verl_estimator import register

register()
