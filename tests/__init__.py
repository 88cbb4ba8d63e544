"""
mdmd's test suite (run with trial: C{make test}).

Property-based tests use a deterministic, bounded Hypothesis profile so that
CI runs are repeatable and short; set HYPOTHESIS_PROFILE=thorough locally for
a randomized, longer search.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=5000,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
