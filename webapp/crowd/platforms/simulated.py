"""The simulated crowd (``manage.py simulate_crowd``): model observers that enter through the study's own
platform link and are marked ``simulated`` right after consent (``webapp/simcrowd/run.py``), so that
the dashboard lists them apart and exports leave them out. No experiment recruits on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

from webapp.crowd.platforms.base import Identity, Platform

if TYPE_CHECKING:
    from webapp.experiments.models import Experiment


class Simulated(Platform):
    name = "simulated"
    label = "simulated crowd"
    recruits = False

    def identity(self, request: HttpRequest, exp: Experiment) -> Identity | None:
        """None: simulated participants enter through the study's own platform, then are marked."""
        return None
