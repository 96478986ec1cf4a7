"""Rate–distortion evaluation: encode at bpp targets, measure metrics, plot curves, BD-rate vs an anchor.

``python -m learning rd`` is ``resolve_curves`` (codec names and checkpoints, checked before any work)
→ ``run_rd`` (the rows) → ``write_report`` (rd.csv, plots, BD-rate tables), or ``read_csv`` →
``write_report`` for ``--from-csv``; the site and benches call the same functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["read_csv", "resolve_curves", "run_rd", "write_report"]

_LAZY = {"resolve_curves": "learning.rd.evaluate", "run_rd": "learning.rd.evaluate",
         "read_csv": "learning.rd.report", "write_report": "learning.rd.report"}


def __getattr__(name: str) -> Any:
    # Lazy: the codecs and torch load only when used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
