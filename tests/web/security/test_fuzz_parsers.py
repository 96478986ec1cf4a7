"""Hypothesis on the file and option parsers: experiment files, export options, image import.

A management command answers a malformed input with ``CommandError`` (recorded as 400 with its message);
anything else escaping it is recorded as a 500. Every case must leave the database unchanged, and the
image import must not leave files in MEDIA_ROOT.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from tests.web.security.hostile import HTML_INJECTION, NASTY_TEXT, SQL_INJECTION, assert_clean, probe

FUZZ = hsettings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda k: st.lists(k, max_size=3) | st.dictionaries(st.text(max_size=5), k,
                                                                                    max_size=3), max_leaves=8)


def command(name: str, *args, **opts) -> tuple[int, str]:
    """(400, message) for a CommandError with a message, (500, what escaped) for anything else,
    (201, ...) when the command ran."""
    try:
        call_command(name, *args, stdout=io.StringIO(), stderr=io.StringIO(), **opts)
    except CommandError as exc:
        msg = str(exc).strip()
        return (400, msg) if msg and "Traceback" not in msg else (500, f"unclear CommandError {msg!r}")
    except BaseException as exc:  # noqa: BLE001 - anything but a CommandError is a crash for the user
        return 500, f"{type(exc).__name__}: {exc}"
    return 201, "command succeeded"


# --- experiment files -------------------------------------------------------------------------------------

VALID_SPEC = {"slug": "fuzz-spec", "title": "Fuzz", "codecs": ["jpeg:20,60"]}


def _not(pred):
    return VALUES.filter(lambda v: not pred(v))


def _is_text(limit: int):
    return lambda v: isinstance(v, str) and len(v) <= limit and "\x00" not in v


def _in_range(lo, hi):
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and lo <= v <= hi


def _rate(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and not math.isnan(v) and 0 <= v <= 1


BAD_FIELDS: dict[str, st.SearchStrategy] = {
    "slug": st.one_of(_not(lambda v: isinstance(v, str)), st.sampled_from(
        ["", "Bad Slug", "a/b", "../x", "x" * 101, "slug\x00", "é", "-", *SQL_INJECTION, *HTML_INJECTION])),
    "title": st.one_of(_not(lambda v: isinstance(v, str) and v.strip()), st.sampled_from(
        ["", "   ", "t" * 201, "ti\x00tle"])),
    "question": st.one_of(_not(_is_text(500)), st.just("q" * 501), st.just("nul\x00")),
    "consent_text": st.one_of(_not(_is_text(20000)), st.just("c" * 20001), st.just("\x00")),
    "completion_code": st.one_of(_not(_is_text(100)), st.just("C" * 101)),
    "completion_url": st.sampled_from(["javascript:alert(1)", "ftp://x", "//evil.example", "data:text/html,x",
                                       "https://" + "u" * 500, "http://a\x00b"]),
    "mode": _not(lambda v: v in ("triplet", "pair")),
    "platform": _not(lambda v: v in ("open", "prolific", "mturk")),
    "status": _not(lambda v: v in ("draft", "live", "paused", "closed")),
    "trials_per_assignment": st.one_of(_not(_in_range(1, 10000)), st.sampled_from([0, 10001, -1, 2**63])),
    "seed": st.one_of(_not(_in_range(0, 2**62)), st.sampled_from([-1, 2**62 + 1, 2**64])),
    "min_response_ms": _not(_in_range(0, 600000)),
    "sentinel_rate": st.one_of(_not(_rate), st.sampled_from([-0.1, 1.01, float("nan"), float("inf")])),
    "repeat_rate": _not(_rate),
    "language": _not(lambda v: v in ("en", "de")),
    "viewing": st.one_of(VALUES.filter(lambda v: not isinstance(v, dict)), st.sampled_from([
        {"pixel_ratios": []}, {"fullscreen": True, "mobile": True}, {"min_viewport": [9000, 9000]},
        {"min_viewport": [1600, 1100], "mobile": True}, {"colour": 1}, {"min_viewport": [0, 1]},
        {"pixel_ratios": [float("nan")]}, {"min_viewport": [True, 700]}])),
    "codecs": st.one_of(
        VALUES.filter(lambda v: not isinstance(v, (str, list))),
        st.lists(st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=3))), min_size=1, max_size=3),
        st.sampled_from(["nocodec:10", "jpeg:", "jpeg:abc", "jpeg@-1", "jpeg@0", "jpeg", ":10", "ckpt:",
                         "ckpt:/nonexistent/model.pt", "ckpt:../../etc/passwd", "ckpt:/etc/passwd",
                         "jpeg:10\x00", *SQL_INJECTION]).map(lambda s: [s]),
    ),
}


@pytest.fixture
def spec_file(tmp_path):
    counter = {"n": 0}

    def write(data, suffix: str = ".yaml") -> Path:
        counter["n"] += 1
        p = tmp_path / f"spec{counter['n']}{suffix}"
        if isinstance(data, bytes):
            p.write_bytes(data)
        elif isinstance(data, str):
            p.write_text(data, encoding="utf-8")
        elif suffix == ".json":
            p.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
        else:
            p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return p

    return write


def test_fuzz_experiment_files(db, spec_file, tmp_path):
    """Every field given a value its rule forbids, unknown and non-text keys, broken YAML/JSON: each
    is a CommandError naming the problem, and no experiment is created."""
    from webapp.experiments.models import Experiment
    from webapp.experiments.spec import KNOWN

    assert command("create_experiment", str(spec_file({**VALID_SPEC, "slug": "taken"})))[0] == 201

    @FUZZ
    @given(field=st.sampled_from(sorted(BAD_FIELDS)), data=st.data(),
           suffix=st.sampled_from([".yaml", ".json"]))
    def bad_field(field, data, suffix):
        spec = {**VALID_SPEC, field: data.draw(BAD_FIELDS[field], label=field)}
        path = str(spec_file(spec, suffix))
        probe("spec.field", f"{field}={spec[field]!r}", command, "create_experiment", path)

    @hsettings(FUZZ, max_examples=30)
    @given(extra=st.dictionaries(st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none(),
                                           st.floats(allow_nan=False)), VALUES, min_size=1, max_size=3))
    def unknown_keys(extra):
        extra = {k: v for k, v in extra.items() if k not in KNOWN} or {"colour": "red"}
        text = yaml.safe_dump({**VALID_SPEC, **extra}, allow_unicode=True)
        probe("spec.keys", repr(extra), command, "create_experiment", str(spec_file(text)))

    @hsettings(FUZZ, max_examples=40)
    @given(raw=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b"\xff" + b)),
           suffix=st.sampled_from([".yaml", ".json", ".yml", ".txt"]))
    def raw_text(raw, suffix):
        probe("spec.raw", repr(raw)[:200], command, "create_experiment", str(spec_file(raw, suffix)))

    bad_field()
    unknown_keys()
    raw_text()
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    crafted = {
        "billion laughs": laughs + "slug: s\ntitle: t\ncodecs: *i\n",
        "python object tag": "slug: s\ntitle: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        "bad timestamp": "slug: s\ntitle: t\nseed: 2001-13-45\n",
        "deep flow nesting": "slug: s\ntitle: t\ncodecs: " + "[" * 3000 + "]" * 3000 + "\n",
        "recursive alias": "slug: s\ntitle: t\ncodecs: &c [*c]\n",
        "tabs": "slug:\ts\n\ttitle: t\n",
        "duplicate slug": yaml.safe_dump({**VALID_SPEC, "slug": "taken"}),
        "sampled without count": yaml.safe_dump({**VALID_SPEC, "pairs": "sampled"}),
        "top-level list": "- slug: s\n- title: t\n",
        "top-level scalar": "42\n",
        "empty": "",
        "UTF-16": yaml.safe_dump(VALID_SPEC).encode("utf-16"),
        "NUL in consent (JSON)": json.dumps({**VALID_SPEC, "consent_text": "ok\u0000"}),
        "lone surrogate escape (JSON)": '{"slug": "s", "title": "\\ud800"}',
        "deep JSON": "[" * 5000 + "]" * 5000,
        "huge JSON int": '{"slug": "s", "title": "t", "seed": ' + "9" * 5000 + "}",
        "NaN rate (JSON)": '{"slug": "s", "title": "t", "repeat_rate": NaN}',
    }
    for label, text in crafted.items():
        suffix = ".json" if "JSON" in label else ".yaml"
        probe("spec.crafted", label, command, "create_experiment", str(spec_file(text, suffix)))
    paths = {"missing file": tmp_path / "nope.yaml", "a directory": tmp_path,
             "traversal": tmp_path / ".." / ".." / "etc" / "shadow", "/dev/null": Path("/dev/null")}
    for label, path in paths.items():
        probe("spec.crafted", label, command, "create_experiment", str(path))
    assert list(Experiment.objects.values_list("slug", flat=True)) == ["taken"]
    assert_clean("spec.", 150)


# --- export options -----------------------------------------------------------------------------------


def test_fuzz_export_options(experiment_factory, tmp_path):
    """export_dataset: unknown experiments, unusable ``--out``; the download's ``exclude_flagged``."""
    exp = experiment_factory()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    (tmp_path / "afile").write_text("x")
    outs = {
        "non-empty dir without --force": tmp_path / "full",
        "an existing file": tmp_path / "afile",
        "below a file": tmp_path / "afile" / "sub",
        "under /proc": Path("/proc/self/nope/out"),
    }
    for label, out in outs.items():
        probe("export.cli", label, command, "export_dataset", exp.slug, out=str(out))
        if label != "non-empty dir without --force":
            assert not out.exists() or out.is_file()
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]
    for slug in ["no-such", "", " ", "../" + exp.slug, exp.slug.upper(), exp.slug + "\n", "x" * 300,
                 *SQL_INJECTION, *HTML_INJECTION]:
        probe("export.cli", f"slug {slug!r}", command, "export_dataset", slug, out=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()

    url = f"/lab/e/{exp.slug}/export/"  # queues a background export (POST)
    raw = Client(raise_request_exception=False)
    raw.force_login(exp.owner)
    accepted = {"1", "0", "true", "false", "on", "off", "yes", "no", ""}

    @FUZZ
    @given(value=st.one_of(st.text(max_size=20), st.sampled_from(NASTY_TEXT)).filter(
        lambda v: v.strip().lower() not in accepted))
    def bad_flag(value):
        probe("export.flag", repr(value), raw.post, url, {"exclude_flagged": value})

    bad_flag()
    assert raw.post(url, {"exclude_flagged": "yes"}).status_code == 302  # queued
    assert_clean("export.", 60)


# --- image import -------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` × ``height`` RGB pixels with a few bytes of pixel data (a bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


def encoded(fmt: str, size: tuple[int, int] = (48, 32), seed: int = 0) -> bytes:
    """Noise (incompressible, so any cut of the file cuts pixel data) encoded as ``fmt``."""
    buf = io.BytesIO()
    Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3)).save(buf, format=fmt)
    return buf.getvalue()


def jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded("JPEG"))
    i = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded("GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    i = data.index(b"\x2c")  # image descriptor: left, top, width, height
    data[i + 5:i + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded("BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


@pytest.fixture
def import_dir(tmp_path, media_root, db):
    """``make(name, data)`` -> [a good image, the hostile file] in a fresh directory (both named on the
    command line, so any suffix is read); ``media_files()`` lists what MEDIA_ROOT holds."""
    counter = {"n": 0}

    def make(name: str, data: bytes) -> list[str]:
        counter["n"] += 1
        d = tmp_path / f"batch{counter['n']}"
        d.mkdir()
        (d / "good.png").write_bytes(encoded("PNG", (40, 40)))
        (d / name).write_bytes(data)
        return [str(d / "good.png"), str(d / name)]

    def media_files() -> list[str]:
        return sorted(str(p) for p in media_root.rglob("*") if p.is_file())

    return make, media_files


def test_import_rejects_bombs_truncations_and_garbage(import_dir, tmp_path):
    """Each batch = one good image + one hostile file: the whole batch is refused, nothing stored."""
    make, media_files = import_dir
    assert Image.MAX_IMAGE_PIXELS and Image.MAX_IMAGE_PIXELS <= 200_000_000  # the bomb guard is on
    png, jpg = encoded("PNG"), encoded("JPEG")
    hostile = {
        "empty.png": b"",
        "text.png": b"hello, I am not an image\n",
        "html.jpg": b"<html><script>alert(1)</script></html>",
        "sql.png": b"'; DROP TABLE stimuli_referenceimage; --",
        "signature-only.png": b"\x89PNG\r\n\x1a\n",
        "bomb-100k-square.png": png_header_only(100_000, 100_000),
        "bomb-10k-square.png": png_header_only(10_000, 10_000),  # over MAX_IMAGE_PIXELS, under 2x: warning
        "bomb-one-row.png": png_header_only(2**31 - 1, 1),
        "zero-width.png": png_header_only(0, 10),
        "bomb.jpg": jpeg_with_size(65_000, 65_000),
        "bomb.gif": gif_with_size(65_535, 65_535),
        "bomb.bmp": bmp_with_size(100_000, 100_000),
        "negative.bmp": bmp_with_size(-5, -2**31),
        "bad-crc.png": png[:40] + bytes([png[40] ^ 0xFF]) + png[41:],
        "png-named.jpg": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.webp": encoded("WEBP")[:60],
        "truncated.tiff": encoded("TIFF")[:100],
        "..\\..\\windows\\evil.png": b"not an image",
        "%2e%2e%2fescape.png": b"not an image",
    }
    before = media_files()
    for name, data in hostile.items():
        out = probe("import.crafted", name, command, "import_images", *make(name, data))
        assert out.status != 400 or b"nothing was imported" in out.body, out.body
    good, _ = make("unused.png", b"")
    link = tmp_path / "passwd.png"
    link.symlink_to("/etc/passwd")
    probe("import.crafted", "symlink to /etc/passwd", command, "import_images", good, str(link))
    for label, opts in {"source > 255": {"source": "s" * 256}, "licence > 255": {"licence": "l" * 300},
                        "val fraction NaN": {"val_fraction": float("nan")},
                        "test fraction inf": {"test_fraction": float("inf")},
                        "fractions sum > 1": {"val_fraction": 0.6, "test_fraction": 0.6}}.items():
        files = make("also-good.png", encoded("PNG", seed=1))
        probe("import.options", label, command, "import_images", *files, **opts)
    assert_clean("import.", 25)
    assert media_files() == before


def test_fuzz_image_bytes(import_dir):
    """Random bytes and truncated encodings under image names are refused and store nothing."""
    make, media_files = import_dir
    samples = {fmt: encoded(fmt) for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")}
    before = media_files()

    @FUZZ
    @given(fmt=st.sampled_from(sorted(samples)), frac=st.floats(0, 0.9))
    def truncated(fmt, frac):
        data = samples[fmt][: int(len(samples[fmt]) * frac)]
        probe("import.truncated", f"{fmt}[:{len(data)}]", command, "import_images",
              *make(f"t.{fmt.lower()}", data))

    @hsettings(FUZZ, max_examples=40)
    @given(data=st.binary(max_size=400),
           prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                                   b"RIFF\x00\x00\x00\x00WEBP", b"BM"]),
           suffix=st.sampled_from(sorted({".png", ".jpg", ".webp", ".gif", ".bmp", ".tif"})))
    def garbage(data, prefix, suffix):
        probe("import.garbage", repr(prefix + data)[:120], command, "import_images",
              *make("g" + suffix, prefix + data))

    truncated()
    garbage()
    assert_clean("import.", 100)
    assert media_files() == before


def test_hostile_file_names_stay_inside_media_root(db, media_root, tmp_path):
    """A valid image with a traversal-looking or HTML name is stored as refs/<sha256>.png under
    MEDIA_ROOT; the name is kept only as text, escaped wherever it is shown."""
    from webapp.stimuli.models import ReferenceImage

    d = tmp_path / "names"
    d.mkdir()
    names = ["..\\..\\..\\etc\\passwd.png", "<img src=x onerror=alert(1)>.png", "'; DROP TABLE x;--.png",
             "%2e%2e%2f%2e%2e%2fetc.png", " .png"]
    for i, name in enumerate(names):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(d / name, format="PNG")
    assert command("import_images", str(d))[0] == 201
    root = os.path.realpath(media_root)
    for ref in ReferenceImage.objects.all():
        assert ref.file.name == f"refs/{ref.sha256}.png"
        assert os.path.realpath(ref.file.path).startswith(root + os.sep)
    assert sorted(ReferenceImage.objects.values_list("original_name", flat=True)) == sorted(names)
    assert sorted(p.name for p in media_root.rglob("*") if p.is_file()) == sorted(
        f"{r.sha256}.png" for r in ReferenceImage.objects.all())


def test_fuzz_saliency_maps(import_dir, tmp_path):
    """import_saliency DIR: a hostile map named after a real reference is refused, nothing stored."""
    from webapp.stimuli.models import ReferenceImage

    make, media_files = import_dir
    good, _ = make("unused.png", b"")
    assert command("import_images", good)[0] == 201
    stem = Path(ReferenceImage.objects.get().original_name).stem
    before = media_files()
    counter = {"n": 0}

    def batch(data: bytes) -> str:
        counter["n"] += 1
        d = tmp_path / f"maps{counter['n']}"
        d.mkdir()
        (d / f"{stem}.png").write_bytes(data)
        return str(d)

    hostile = {
        "empty": b"", "text": b"not a map", "bomb 100k": png_header_only(100_000, 100_000),
        "bomb 10k": png_header_only(10_000, 10_000), "bomb one row": png_header_only(2**31 - 1, 1),
        "truncated": encoded("PNG")[:200], "jpeg bomb": jpeg_with_size(65_000, 65_000),
        "signature only": b"\x89PNG\r\n\x1a\n", "zero width": png_header_only(0, 4),
    }
    for label, data in hostile.items():
        probe("saliency.crafted", label, command, "import_saliency", batch(data))

    @hsettings(FUZZ, max_examples=30)
    @given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n"]))
    def garbage(data, prefix):
        probe("saliency.garbage", repr(prefix + data)[:120], command, "import_saliency", batch(prefix + data))

    garbage()
    assert_clean("saliency.", 35)
    assert media_files() == before
