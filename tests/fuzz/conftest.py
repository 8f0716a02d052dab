"""Hypothesis profiles for the fuzz lane.

`ci` (the default, part of the normal suite): derandomized, so every run tries the same inputs and the lane
stays within a minute or two; `long` (`make fuzz`, or HYPOTHESIS_PROFILE=long): random and much larger, with
an example database under .cache/ so a failure found there replays locally. Every input that ever failed is
kept in the test as an `@example` -- a regression case that runs in every profile.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parents[2]

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(str(ROOT / ".cache" / "hypothesis")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
