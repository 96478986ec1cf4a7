"""Fixtures for the recruiting tests: ``prolific_server``, a local fake of Prolific's API over HTTP, and
``fake``, the same wired into the site's settings."""

from __future__ import annotations

import pytest
from prolific_server import FakeProlific

SITE = "https://lab.example.org"


@pytest.fixture
def prolific_server():
    """A started ``FakeProlific`` (its ``url`` is the API root, its ``token`` the one it accepts)."""
    fake = FakeProlific().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(prolific_server, settings, monkeypatch):
    """The fake Prolific as the site's Prolific (its URL, its token in PROLIFIC_TOKEN), SITE_URL set."""
    settings.SITE_URL = SITE
    settings.PROLIFIC_API_URL = prolific_server.url
    monkeypatch.setenv("PROLIFIC_TOKEN", prolific_server.token)
    return prolific_server
