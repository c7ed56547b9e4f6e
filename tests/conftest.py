import os

import pytest
from hypothesis import HealthCheck, settings

# CI sets CI=true, which makes Hypothesis load its derandomized "ci" profile. Keep the
# example counts bounded there so the suite stays within its time budget.
settings.register_profile(
    "trioraft-ci",
    parent=settings.get_profile("ci"),
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "trioraft-dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "trioraft-slow",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
if os.environ.get("TRIORAFT_SLOW"):
    settings.load_profile("trioraft-slow")
elif os.environ.get("CI"):
    settings.load_profile("trioraft-ci")
else:
    settings.load_profile("trioraft-dev")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests marked anyio run under AnyIO's plugin, once per backend (asyncio and Trio),
    # not under pytest-trio's trio mode, which marks every async test as Trio's.
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers = [m for m in item.own_markers if m.name != "trio"]
