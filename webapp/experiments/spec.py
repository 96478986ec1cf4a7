"""Experiment files (JSON or YAML): validation with clear messages, and creation of the Experiment row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from django.utils.text import slugify

from learning.codecs.spec import parse_codec_spec
from learning.errors import LearningError
from webapp.experiments.models import Experiment


class SpecError(Exception):
    """A problem with an experiment file (one line, names the field)."""


_CHOICES = {
    "mode": ("triplet", "pair"),
    "pairs": ("all", "sampled"),
    "platform": ("open", "prolific", "mturk"),
    "status": ("draft", "live", "paused", "closed"),
}
_INTS = {
    "trials_per_assignment": (1, 10000),
    "judgments_per_trial": (1, 10000),
    "min_response_ms": (0, 600000),
    "practice_trials": (0, 100),
    "assignment_timeout_minutes": (1, 10080),
    "seed": (0, 2**62),
    "pairs_per_reference": (1, 100000),
}
_RATES = ("sentinel_rate", "repeat_rate")
_TEXTS = {
    "title": 200,
    "question": 500,
    "consent_text": 20000,
    "instructions_text": 20000,
    "completion_code": 100,
    "completion_url": 500,
}
KNOWN = {"slug", "codecs", *_CHOICES, *_INTS, *_RATES, *_TEXTS}


def load_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    # ValueError: also PyYAML's impossible dates and over-long JSON integers; RecursionError: deep nesting
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not valid {kind}: {str(exc)[:300]}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of fields at the top level")
    return data


def _storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor unpaired surrogates (which have no UTF-8 form)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(data: dict) -> dict[str, Any]:
    """Check every field; return Experiment field values (+ ``codec_settings``)."""
    unknown = sorted(map(str, set(data) - KNOWN))  # YAML keys can be numbers, booleans or null too
    if unknown:
        raise SpecError(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(KNOWN))}")
    out: dict[str, Any] = {}
    slug = data.get("slug")
    if not isinstance(slug, str) or not slug or slugify(slug) != slug or len(slug) > 100:
        raise SpecError(f"slug: required, at most 100 lowercase letters, digits and dashes (got {slug!r})")
    out["slug"] = slug
    if not isinstance(data.get("title"), str) or not data["title"].strip():
        raise SpecError("title: required text")
    for name, limit in _TEXTS.items():
        if name in data:
            v = data[name]
            if not isinstance(v, str) or len(v) > limit:
                raise SpecError(f"{name}: expected text of at most {limit} characters")
            if not _storable(v):
                raise SpecError(f"{name}: contains a NUL character or an unpaired surrogate")
            out[name] = v
    for name, allowed in _CHOICES.items():
        if name in data:
            if data[name] not in allowed:
                raise SpecError(f"{name}: must be one of {', '.join(allowed)} (got {data[name]!r})")
            out[name] = data[name]
    for name, (lo, hi) in _INTS.items():
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise SpecError(f"{name}: expected an integer in [{lo}, {hi}] (got {v!r})")
            out[name] = v
    for name in _RATES:
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise SpecError(f"{name}: expected a number in [0, 1] (got {v!r})")
            out[name] = float(v)
    if out.get("pairs") == "sampled" and not out.get("pairs_per_reference"):
        raise SpecError("pairs_per_reference: required when pairs is 'sampled'")
    if out.get("completion_url") and not out["completion_url"].startswith(("https://", "http://")):
        raise SpecError("completion_url: must be an http(s) URL")
    codecs = data.get("codecs", [])
    if isinstance(codecs, str):
        codecs = [codecs]
    if not isinstance(codecs, list) or not all(isinstance(c, str) for c in codecs):
        raise SpecError("codecs: expected a list of codec specs like 'jpeg:10,30'")
    for c in codecs:
        try:
            parse_codec_spec(c)
        except LearningError as exc:
            raise SpecError(f"codecs: {exc}") from exc
    out["codec_settings"] = codecs
    return out


def create(data: dict, owner=None, replace: bool = False) -> Experiment:
    """Create the experiment (or replace a draft with the same slug when ``replace``)."""
    fields = validate(data)
    existing = Experiment.objects.filter(slug=fields["slug"]).first()
    if existing is not None:
        if not replace:
            raise SpecError(f"experiment {fields['slug']!r} already exists (use --replace for a draft)")
        if existing.status != "draft":
            raise SpecError(
                f"experiment {fields['slug']!r} is {existing.status}; only drafts can be replaced"
            )
        if existing.assignments.exists():
            raise SpecError(f"experiment {fields['slug']!r} already has participants; cannot replace")
        existing.delete()
    return Experiment.objects.create(owner=owner, spec=data, **fields)
