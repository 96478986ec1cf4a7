"""The 24 Kodak images of ``../shared/data/kodak`` for the tests that read them, and a skip that names the
folder where a checkout has no shared data beside it (CI has it; a clone elsewhere may not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from learning.data.shared import KODAK_DIR

HAVE_KODAK = len(list(KODAK_DIR.glob("kodim*.png"))) >= 24
REASON = f"needs the 24 Kodak images in {KODAK_DIR} (../shared/data/kodak, or set SHARED_DATA)"
needs_kodak = pytest.mark.skipif(not HAVE_KODAK, reason=REASON)


def require_kodak() -> Path:
    """The Kodak folder; skips the calling test or fixture when the images are not there."""
    if not HAVE_KODAK:
        pytest.skip(REASON)
    return KODAK_DIR
