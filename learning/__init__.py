"""The learning side: DPL, datasets, fitting, scoring, codecs, saliency. Never imports Django.

Library entry points (the CLI only parses arguments for them): ``fit_dpl`` (``learning.fitting``),
``score_metrics`` (``learning.scoring``), ``train_codec`` (``learning.training``), ``run_rd``
(``learning.rd``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DPL", "fit_dpl", "run_rd", "score_metrics", "train_codec"]

_LAZY = {
    "DPL": "learning.dpl",
    "fit_dpl": "learning.fitting",
    "run_rd": "learning.rd",
    "score_metrics": "learning.scoring",
    "train_codec": "learning.training",
}


def __getattr__(name: str) -> Any:
    # Lazy so that light users (codecs, CLI help) do not pay torch's import time.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
