"""Fixtures for the recruiting tests: ``prolific_server``, a local fake of Prolific's API over HTTP."""

from __future__ import annotations

import pytest
from prolific_server import FakeProlific


@pytest.fixture
def prolific_server():
    """A started ``FakeProlific`` (its ``url`` is the API root, its ``token`` the one it accepts)."""
    fake = FakeProlific().start()
    yield fake
    fake.stop()
