"""Debian's Chromium for the browser tests (never a downloaded build), headless with the flags these
machines need; ``needs_chromium`` skips a module without it (``make browser`` installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
NO_THIRD_PARTY_COOKIES = "--test-third-party-cookie-phaseout"  # as Safari, and Chrome's tracking protection

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="needs Debian chromium (make browser)")


@contextmanager
def chromium(*extra_args: str) -> Iterator:
    """A headless Chromium (Playwright's sync API), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
