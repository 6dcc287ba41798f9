import os

from hypothesis import HealthCheck, settings

# Shared CI machines are noisy: no per-example deadline, a bounded number of examples.
settings.register_profile(
    "mars", deadline=None, max_examples=int(os.environ.get("MARS_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("mars")
