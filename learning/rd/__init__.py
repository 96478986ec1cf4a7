"""Rate–distortion evaluation: encode at bpp targets, measure metrics, plot curves, BD-rate vs an anchor.

``python -m learning rd`` is ``resolve_curves`` (codec names and checkpoints, checked before any work)
→ ``run_rd`` (the rows) → ``write_report`` (rd.csv, plots, BD-rate tables), or ``read_csv`` →
``write_report`` for ``--from-csv``; the site and benches call the same functions.
"""

from learning.rd.evaluate import resolve_curves, run_rd
from learning.rd.report import read_csv, write_report

__all__ = ["read_csv", "resolve_curves", "run_rd", "write_report"]
