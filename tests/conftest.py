import os
from typing import Any

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


#: The modules whose tests start processes, open sockets or wait on the real clock. The
#: README's test command runs the suite on two pytest-xdist workers (``-n 2``); these
#: tests all go to one of them, one at a time, as they ran before: their timing margins
#: assume no other test of theirs runs beside them, and the ports they draw stay
#: distinct. The other worker runs the rest, a test at a time (virtual time, which load
#: cannot disturb). Without ``-n``, everything runs in one process as before.
REAL_TIME = {
    "bench/test_bench.py", "bench/test_bench_hostile.py", "bench/test_bench_tcp.py",
    "cli/test_cli.py", "cli/test_cli_messages.py", "cli/test_metrics.py",
    "network/test_clients_anywhere.py", "network/test_hostile.py", "network/test_tcp.py",
    "network/test_under_attack.py", "runtime/test_edges.py", "runtime/test_errors.py",
    "storage/test_disk.py", "test_build.py", "test_examples.py", "test_tutorial.py",
    "testing/test_determinism.py", "testing/test_trace.py",
}  # fmt: skip


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests marked anyio run under AnyIO's plugin, once per backend (asyncio and Trio),
    # not under pytest-trio's trio mode, which marks every async test as Trio's.
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers = [m for m in item.own_markers if m.name != "trio"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduler for ``-n N`` (``--dist load``, its default): the tests of
    :data:`REAL_TIME` as one unit of work, every other test a unit of its own. (Not
    ``--dist loadgroup`` with ``xdist_group`` marks: pytest-xdist 3.8 renames the marked
    tests through an attribute pytest 9.2 no longer reads, so the marks go unheeded.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RealTimeTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0].removeprefix("tests/")
            return "real time" if module in REAL_TIME else nodeid

    return RealTimeTogether(config, log)
