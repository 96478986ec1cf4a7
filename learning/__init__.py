"""The learning side: DPL, datasets, fitting, scoring, codecs, saliency. Never imports Django."""

from __future__ import annotations

from typing import Any

__all__ = ["DPL"]


def __getattr__(name: str) -> Any:
    # Lazy so that light users (codecs, CLI help) do not pay torch's import time.
    if name == "DPL":
        from learning.dpl import DPL

        return DPL
    raise AttributeError(name)
