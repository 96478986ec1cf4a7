"""Experiment files (JSON or YAML): validation with clear messages, and creation of the Experiment row."""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import reprlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from learning.codecs.spec import parse_codec_spec
from learning.errors import LearningError
from webapp.experiments.models import Experiment
from webapp.experiments.sampling import SAMPLING


class SpecError(Exception):
    """A problem with an experiment file (one line, names the field)."""


_CHOICES = {
    "mode": ("triplet", "pair"),
    "pairs": ("all", "sampled"),
    "platform": tuple(name for name, _ in Experiment.PLATFORMS),
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
# Rules a recruiting platform sets on the fields (Prolific needs one completion code for all). Filled in
# by the crowd app, which owns the platform adapters (webapp/crowd/apps.py), so this app needs not import it.
PLATFORM_RULES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {}
KNOWN = {"slug", "codecs", "sampling", "language", "viewing", *_CHOICES, *_INTS, *_RATES, *_TEXTS}

# Viewing conditions (``viewing:``). The contradiction checks use the largest displays and tablets made: an
# 8K display (7680 × 4320 device pixels) and the largest tablet viewports (iPad Pro 13": 1376 × 1032 CSS px).
VIEWING_KEYS = ("min_viewport", "pixel_ratios", "mobile", "fullscreen")
LARGEST_DISPLAY = (7680, 4320)  # device pixels, either orientation
LARGEST_TABLET = (1376, 1032)  # CSS pixels, either orientation
_MAX_VIEWPORT = 16384
_MAX_RATIO = 8


MAX_FILE_BYTES = 1024 * 1024  # an experiment file is a few kilobytes
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 4
_REPR.maxlevel = 2


def shown(value: object) -> str:
    """``repr(value)`` bounded in length and depth: YAML aliases make a tiny file hold a value whose full
    repr is gigabytes ("billion laughs"), and error messages echo values."""
    return _REPR.repr(value)


def read_text(path: Path) -> str:
    """The file's text (UTF-8, at most MAX_FILE_BYTES), or SpecError."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{path}: over {MAX_FILE_BYTES:,} bytes; an experiment file is a few kilobytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


class DuplicateKey(ValueError):
    """A mapping of the file names a key twice (``line``: 1-based, where known)."""

    def __init__(self, key: object, line: int | None = None, first: int | None = None):
        self.key, self.line, self.first = key, line, first
        super().__init__(f"duplicate key {shown(key)}")

    def describe(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        first = f" (first at line {self.first})" if self.first else ""
        return f"duplicate key {shown(self.key)}{where}{first}: each field may be given once"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice, at any depth (PyYAML keeps the
    last value silently: ``status: draft`` then ``status: live`` would make a live study). The keys
    merged in by ``<<`` may be overridden, as YAML says."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[object, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:  # unhashable: PyYAML's own error says so
                    continue
                line = key_node.start_mark.line + 1
                if seen:
                    raise DuplicateKey(key, line, first_line[key])
                first_line[key] = line
        return super().construct_mapping(node, deep)


def _key_lines(text: str, start: int) -> list[tuple[str, int]]:
    """(key, line) of every key of the JSON object whose body starts at ``text[start]`` (after its ``{``);
    its values are skipped with the standard decoder."""
    ws, skip, out, pos = " \t\n\r", json.JSONDecoder(), [], start
    while True:
        while text[pos] in ws:
            pos += 1
        if text[pos] == "}":
            return out
        key, after = json.decoder.scanstring(text, pos + 1)
        out.append((key, text.count("\n", 0, pos) + 1))
        pos = text.index(":", after) + 1
        while text[pos] in ws:
            pos += 1
        _, pos = skip.raw_decode(text, pos)
        while text[pos] in ws:
            pos += 1
        pos += text[pos] == ","


def loads_json(text: str) -> object:
    """``json.loads`` that refuses an object naming a key twice, at any depth (DuplicateKey with its line)."""

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_once, object_hook, list, memo)
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            lines: dict[str, int] = {}
            for key, line in _key_lines(*s_and_end):
                if key in lines:
                    raise DuplicateKey(key, line, lines[key])
                lines[key] = line
        return dict(pairs), end

    decoder = json.JSONDecoder()
    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # the C scanner would not call parse_object
    return decoder.decode(text)


def load_file(path: Path) -> dict:
    """The mapping of fields in a JSON or YAML file, or SpecError (one line, bounded); a key given twice in
    any mapping is an error, not the last value silently kept."""
    text = read_text(path)
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = loads_json(text) if kind == "JSON" else yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKey as exc:
        raise SpecError(f"{path}: {exc.describe()}") from exc
    # ValueError: also PyYAML's impossible dates and over-long JSON integers; RecursionError: deep nesting
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not valid {kind}: {' '.join(str(exc).split())[:300]}") from exc
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
    unknown = sorted(k[:80] if isinstance(k, str) else shown(k) for k in set(data) - KNOWN)  # or numbers...
    if unknown:
        names = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise SpecError(f"unknown field(s): {names}; allowed: {', '.join(sorted(KNOWN))}")
    out: dict[str, Any] = {}
    slug = data.get("slug")
    if not isinstance(slug, str) or not slug or slugify(slug) != slug or len(slug) > 100:
        raise SpecError(
            f"slug: required, at most 100 lowercase letters, digits and dashes (got {shown(slug)})")
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
                raise SpecError(f"{name}: must be one of {', '.join(allowed)} (got {shown(data[name])})")
            out[name] = data[name]
    for name, (lo, hi) in _INTS.items():
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise SpecError(f"{name}: expected an integer in [{lo}, {hi}] (got {shown(v)})")
            out[name] = v
    for name in _RATES:
        if name in data:
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise SpecError(f"{name}: expected a number in [0, 1] (got {shown(v)})")
            out[name] = float(v)
    if "language" in data:
        languages = [code for code, _ in settings.LANGUAGES]
        if data["language"] not in languages:
            raise SpecError(
                f"language: must be one of {', '.join(languages)} (got {shown(data['language'])})")
    if "viewing" in data:
        viewing_conditions(data["viewing"])  # SpecError if malformed or contradictory
    if "sampling" in data and data["sampling"] not in SAMPLING:  # kept in spec (webapp.experiments.sampling)
        raise SpecError(f"sampling: must be one of {', '.join(SAMPLING)} (got {shown(data['sampling'])})")
    if out.get("pairs") == "sampled" and not out.get("pairs_per_reference"):
        raise SpecError("pairs_per_reference: required when pairs is 'sampled'")
    if out.get("completion_url") and not out["completion_url"].startswith(("https://", "http://")):
        raise SpecError("completion_url: must be an http(s) URL")
    rule = PLATFORM_RULES.get(out.get("platform", "open"))
    problem = rule(out) if rule else None
    if problem:
        raise SpecError(problem)
    codecs = data.get("codecs", [])
    if isinstance(codecs, str):
        codecs = [codecs]
    if not isinstance(codecs, list) or not all(isinstance(c, str) for c in codecs):
        raise SpecError("codecs: expected a list of codec specs like 'jpeg:10,30'")
    for c in codecs:
        try:
            parse_codec_spec(c)
        except LearningError as exc:
            raise SpecError(f"codecs: {str(exc)[:300]}") from exc
    out["codec_settings"] = codecs
    return out


def _fits(size: tuple[float, float], box: tuple[int, int]) -> bool:
    """Whether ``size`` fits in ``box`` in either orientation."""
    w, h = size
    return (w <= box[0] and h <= box[1]) or (w <= box[1] and h <= box[0])


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def viewing_conditions(value: object) -> dict[str, Any]:
    """The ``viewing:`` block of an experiment file, checked and with its defaults: ``min_viewport`` ([W, H]
    CSS pixels, or None), ``pixel_ratios`` (allowed devicePixelRatio values, or None for any), ``mobile``
    (phones and tablets may take part; default True unless no tablet's viewport reaches ``min_viewport``),
    ``fullscreen`` (trials in fullscreen; default False). SpecError (one line, naming the field) for a
    malformed block or conditions that contradict each other."""
    if not isinstance(value, dict):
        raise SpecError(f"viewing: expected a mapping with {', '.join(VIEWING_KEYS)} (got {shown(value)})")
    unknown = sorted(str(k)[:40] for k in value if k not in VIEWING_KEYS)
    if unknown:
        raise SpecError(f"viewing: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(VIEWING_KEYS)}")
    size = value.get("min_viewport")
    if size is not None:
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= _MAX_VIEWPORT
                           for x in size)):
            raise SpecError(f"viewing.min_viewport: expected [width, height] in CSS pixels, integers in "
                            f"[1, {_MAX_VIEWPORT}] (got {shown(size)})")
    ratios = value.get("pixel_ratios")
    if ratios is not None:
        if not isinstance(ratios, list) or not all(_number(r) and 0 < r <= _MAX_RATIO for r in ratios):
            raise SpecError(f"viewing.pixel_ratios: expected a list of devicePixelRatio values in (0, "
                            f"{_MAX_RATIO}] (got {shown(ratios)})")
        if not ratios:
            raise SpecError("viewing.pixel_ratios: empty, so no device could take part; leave the field out "
                            "to allow any pixel ratio")
        ratios = sorted({float(r) for r in ratios})
    for name in ("mobile", "fullscreen"):
        if name in value and not isinstance(value[name], bool):
            raise SpecError(f"viewing.{name}: expected true or false (got {shown(value[name])})")
    fullscreen = value.get("fullscreen", False)
    if size is not None:
        lowest = ratios[0] if ratios else 1.0
        needs = (size[0] * lowest, size[1] * lowest)
        if not _fits(needs, LARGEST_DISPLAY):
            raise SpecError(
                f"viewing: min_viewport {size[0]}×{size[1]} at pixel ratio {lowest:g} needs {needs[0]:g}×"
                f"{needs[1]:g} device pixels, more than the largest displays have ({LARGEST_DISPLAY[0]}×"
                f"{LARGEST_DISPLAY[1]}): no one could take part")
    tablet_fits = size is None or _fits((size[0], size[1]), LARGEST_TABLET)
    mobile = value.get("mobile", tablet_fits)
    if value.get("mobile") is True:
        if not tablet_fits:
            raise SpecError(
                f"viewing: mobile is true but min_viewport {size[0]}×{size[1]} is larger than any phone's or "
                f"tablet's window (the largest tablets: {LARGEST_TABLET[0]}×{LARGEST_TABLET[1]} CSS pixels); "
                "set mobile: false or a smaller min_viewport")
        if fullscreen:
            raise SpecError(
                "viewing: mobile is true but fullscreen is required, which iPhones cannot give a web page "
                "(Safari on iPhone has no fullscreen for pages) and phones leave by themselves (rotation, "
                "system gestures); set mobile: false or fullscreen: false")
    return {"min_viewport": list(size) if size is not None else None, "pixel_ratios": ratios,
            "mobile": mobile, "fullscreen": fullscreen}


def study_viewing(exp: Experiment) -> dict[str, Any] | None:
    """The viewing conditions of ``exp`` (``viewing_conditions``), or None when its file sets none."""
    spec = exp.spec if isinstance(exp.spec, dict) else {}
    if spec.get("viewing") is None:
        return None
    return viewing_conditions(spec["viewing"])


def study_language(exp: Experiment) -> str:
    """The language the participant pages of ``exp`` are shown in (its file's ``language``, else English)."""
    spec = exp.spec if isinstance(exp.spec, dict) else {}
    language = spec.get("language")
    return language if language in dict(settings.LANGUAGES) else "en"


def create(data: dict, owner=None, replace: bool = False) -> Experiment:
    """Create the experiment (or replace a draft with the same slug when ``replace``), in one transaction."""
    fields = validate(data)
    with transaction.atomic():
        return _create(fields, data, owner, replace)


def _create(fields: dict[str, Any], data: dict, owner, replace: bool) -> Experiment:
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
