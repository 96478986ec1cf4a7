"""Fitting DPL weights on cached per-channel distance vectors.

:func:`fit_dpl` is the whole pipeline (2AFC sets in, weight file out; what ``python -m learning fit``
runs), returning a :class:`FitReport`. The parts: ``cache`` (channel vectors), ``fit`` (L-BFGS weights),
``tune`` (end-to-end fine-tuning), ``synthetic`` (observer data sets for tests).
"""

from learning.fitting.pipeline import FitReport, TuneSummary, fit_dpl

__all__ = ["FitReport", "TuneSummary", "fit_dpl"]
