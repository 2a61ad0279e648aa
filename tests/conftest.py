"""Test-wide settings."""

import os

from hypothesis import settings

# In CI, property tests draw the same examples every run, so a landing never depends on
# luck; locally they explore new examples each run.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
