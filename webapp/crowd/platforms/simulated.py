"""The simulated crowd (``manage.py simulate_crowd``): model observers that enter through the study's own
platform link and are marked ``simulated`` right after consent (``webapp/crowd/simulated.py``), so that
the dashboard lists them apart and exports leave them out. No experiment recruits on it."""

from __future__ import annotations

from webapp.crowd.platforms.base import Platform


class Simulated(Platform):
    name = "simulated"
    label = "simulated crowd"
    recruits = False
