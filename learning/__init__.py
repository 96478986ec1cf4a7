"""The learning side: DPL, datasets, fitting, scoring, codecs, saliency. Never imports Django.

Library entry points (the CLI only parses arguments for them): ``fit_dpl`` (``learning.fitting``),
``score_metrics`` (``learning.scoring``), ``train_codec`` (``learning.training``), ``run_rd``
(``learning.rd``), and the ``DPL`` module (``learning.dpl``). ``learning.NAME`` imports its module on first
use: the site imports only torch-free parts of this package (``scaling``, ``twoafc``, ``data.bapps``,
``codecs.spec``), and these entry points import torch, which would cost every web worker about 250 MB
and a second of start-up (asserted by ``tests/test_layout.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DPL", "fit_dpl", "run_rd", "score_metrics", "train_codec"]

_ENTRY_POINTS = {
    "DPL": "learning.dpl",
    "fit_dpl": "learning.fitting",
    "run_rd": "learning.rd",
    "score_metrics": "learning.scoring",
    "train_codec": "learning.training",
}


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        return getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
    raise AttributeError(name)
