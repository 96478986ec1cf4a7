"""Fixtures for the security tests; prints the hostile-input totals at the end of the run."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from tests.web.security.hostile import TALLY, mark_test_start


@pytest.fixture(autouse=True)
def _no_rate_limit_state(settings):
    """Each test starts with an empty rate-limit cache; fuzzers switch the limit off explicitly."""
    cache.clear()
    mark_test_start()
    yield
    cache.clear()


@pytest.fixture
def raw_client() -> Client:
    """A test client that turns view exceptions into the 500 a real server would send."""
    return Client(raise_request_exception=False)


def pytest_terminal_summary(terminalreporter):
    if not TALLY.tried:
        return
    tr = terminalreporter
    tr.section("hostile inputs")
    for kind in sorted(TALLY.tried):
        tr.write_line(
            f"{kind:<28} tried {TALLY.tried[kind]:>4}  500s {TALLY.server_errors[kind]}  "
            f"state changes {TALLY.state_changes[kind]}  non-4xx {TALLY.unexpected_status[kind]}"
        )
    tr.write_line(TALLY.summary())
