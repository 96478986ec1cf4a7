"""The experiment's ``sampling`` setting: ``balanced`` (least-held trials first) or ``active`` (trials chosen
from the current JOD posterior, ``webapp.crowd.active``). Kept in ``Experiment.spec`` (the experiment
file's fields), so it needs no column; the dashboard can switch it while the study runs."""

from __future__ import annotations

SAMPLING = ("balanced", "active")
DEFAULT = "balanced"


def sampling_mode(experiment) -> str:
    """``balanced`` or ``active`` (anything else stored reads as the default)."""
    spec = experiment.spec if isinstance(experiment.spec, dict) else {}
    mode = spec.get("sampling", DEFAULT)
    return mode if mode in SAMPLING else DEFAULT


def set_sampling_mode(experiment, mode: str) -> None:
    """Store ``mode`` in the experiment's spec (ValueError for an unknown mode)."""
    if mode not in SAMPLING:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}")
    spec = dict(experiment.spec) if isinstance(experiment.spec, dict) else {}
    spec["sampling"] = mode
    experiment.spec = spec
    experiment.save(update_fields=["spec"])
