"""Importing the library and its commands changes no process-wide setting the site relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_every_command_keeps_pillows_bomb_guard():
    code = ("from PIL import Image; limit = Image.MAX_IMAGE_PIXELS; import learning.__main__ as m; "
            "[__import__(f'learning.cli.{c}') for c in m.COMMANDS]; "
            "assert Image.MAX_IMAGE_PIXELS == limit and limit, Image.MAX_IMAGE_PIXELS")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
