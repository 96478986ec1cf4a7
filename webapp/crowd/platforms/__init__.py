"""Recruiting platforms as adapters: one module per platform, registered here.

``for_experiment(exp)`` is what the participant views call; ``get(name)`` the rest. Adding a platform:
write a module with a ``Platform`` subclass (``base.py`` lists what it may decide), add it to ``_CLASSES``,
add its ``(name, label)`` to ``Experiment.PLATFORMS`` (a migration records the new choice; a test checks
that the two lists agree), and, for recruiting from the lab, a client in ``webapp/recruit/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webapp.crowd.platforms.base import BadEntry, Identity, Platform
from webapp.crowd.platforms.mturk import MTurk
from webapp.crowd.platforms.open_link import OpenLink
from webapp.crowd.platforms.prolific import Prolific
from webapp.crowd.platforms.simulated import Simulated

if TYPE_CHECKING:
    from webapp.experiments.models import Experiment

__all__ = ["BadEntry", "Identity", "Platform", "REGISTRY", "for_experiment", "get", "recruiting"]

_CLASSES: tuple[type[Platform], ...] = (OpenLink, Prolific, MTurk, Simulated)
REGISTRY: dict[str, Platform] = {cls.name: cls() for cls in _CLASSES}


def get(name: str) -> Platform:
    """The platform called ``name``; KeyError names the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown platform {name!r}; known: {', '.join(REGISTRY)}") from None


def for_experiment(exp: Experiment) -> Platform:
    """The platform ``exp`` recruits on."""
    return get(exp.platform)


def recruiting() -> list[Platform]:
    """The platforms an experiment may name, in registration order."""
    return [p for p in REGISTRY.values() if p.recruits]
