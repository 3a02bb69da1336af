"""Shared pytest setup: hypothesis profiles.

CI (CI=true) runs a derandomized profile so a landing never flaps on a new random
draw; local runs explore fresh examples each time (the default profile) and keep
failures in .hypothesis/ for replay.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
