"""The bytes a worker receives carry nothing about codec or quality.

Stored stimuli are compressed PNGs whose length grows with quality (the reference is the largest), so
the images are served as uncompressed copies (``webapp/stimuli/served.py``): every image of a trial
(reference and both stimuli) has the same length, the same headers and the same caching behaviour.
"""

from __future__ import annotations

import io
import shutil
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.web.conftest import enter

CODECS = ("jpeg:5,50,95", "webp:20,90", "jxl:30", "avif:40")  # the reference stays the largest file
IGNORED_HEADERS = {"Content-Disposition"}  # the per-item file name: identical within a trial anyway


def _fetch(client, url: str, **headers) -> tuple[bytes, dict]:
    r = client.get(url, headers=headers)
    assert r.status_code == 200, (url, r.status_code)
    return b"".join(r.streaming_content), dict(r.items())


@pytest.fixture
def served_world(client, experiment_factory):
    exp = experiment_factory(codecs=CODECS, trials_per_assignment=6)
    a = enter(client, exp)
    items = client.get(f"/a/{a.token}/state").json()["items"]
    return exp, a, items


def test_stored_files_do_reveal_quality(served_world):
    """The leak this guards against: the stored PNGs' sizes differ with codec and quality (on full-size
    photographs the reference's is the largest; on these small crops the lowest qualities are smaller)."""
    from webapp.stimuli.models import Stimulus

    exp, _, _ = served_world
    for ref in exp.references.all():
        sizes = {(s.codec, s.setting_key): s.decoded.size for s in Stimulus.objects.filter(reference=ref)}
        assert len(set(sizes.values())) > len(sizes) // 2, sizes
        assert sizes[("jpeg", "quality=5")] < ref.file.size == sizes[("original", "original")], sizes


def test_every_image_of_a_trial_has_the_same_bytes_length_and_headers(client, served_world):
    from webapp.stimuli.served import served_length

    exp, a, items = served_world
    lengths = set()
    for item in items:
        got = {side: _fetch(client, item[side], Accept_Encoding="gzip, deflate, br") for side in
               ("left", "right", "ref")}
        heads = {side: h for side, (_, h) in got.items()}
        assert heads["left"] == heads["right"] == heads["ref"], heads  # every header, value for value
        h = heads["left"]
        assert h["Content-Type"] == "image/png"
        assert h["Cache-Control"] == "private, max-age=86400, no-transform"
        assert h["Content-Disposition"] == f'inline; filename="{item["position"]}.png"'
        assert not {"Content-Encoding", "ETag", "Last-Modified", "Vary", "Set-Cookie"} & set(h), h
        for side, (body, head) in got.items():
            assert len(body) == int(head["Content-Length"]), side
            lengths.add(len(body))
    ref = exp.references.first()
    # all references of the fixture are 64 x 64: every image of the experiment is the same length
    assert lengths == {served_length(ref.width, ref.height)}


def test_every_image_has_the_same_caching_behaviour(client, served_world):
    _, _, items = served_world
    conditional = {"If-None-Match": "*", "If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}
    for item in items[:3]:
        for side in ("left", "right", "ref"):
            first = _fetch(client, item[side])
            again = _fetch(client, item[side])  # served from the cached copy: the same bytes and headers
            revalidated = _fetch(client, item[side], **conditional)  # no 304 for some images only
            assert first == again == revalidated, side


def test_served_copies_are_uncompressed_pngs_of_the_stored_pixels(client, served_world):
    from webapp.crowd.models import AssignmentItem

    _, a, items = served_world
    for item in items:
        row = AssignmentItem.objects.select_related("trial__stimulus_a", "trial__stimulus_b",
                                                    "trial__reference").get(assignment=a,
                                                                            position=item["position"])
        stored = {"left": row.left_stimulus().decoded, "right": row.right_stimulus().decoded,
                  "ref": row.trial.reference.file}
        for side, f in stored.items():
            body, _ = _fetch(client, item[side])
            with Image.open(io.BytesIO(body)) as served, f.open("rb") as src, Image.open(src) as orig:
                assert served.mode == "RGB" and served.size == orig.size
                assert served.tobytes() == orig.convert("RGB").tobytes(), side
            assert b"IDAT" in body and zlib.decompress(_idat(body))  # a valid zlib stream
            assert _idat(body)[2] & 0b110 == 0  # the first deflate block is a stored one (BTYPE 00)


def _idat(png: bytes) -> bytes:
    i = png.index(b"IDAT")
    n = int.from_bytes(png[i - 4 : i], "big")
    return png[i + 4 : i + 4 + n]


@pytest.mark.parametrize("size", [(1, 1), (64, 64), (200, 200), (150, 301)])
def test_length_depends_only_on_the_size(size):
    """Noise and a flat image of the same size, one or several 64 KiB stored blocks: the same length."""
    from webapp.stimuli.served import served_length, uncompressed_png

    w, h = size
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    flat = np.full((h, w, 3), 128, dtype=np.uint8)
    pngs = [uncompressed_png(Image.fromarray(a)) for a in (noise, flat)]
    pngs.append(uncompressed_png(Image.fromarray(noise).convert("RGBA")))  # another mode: RGB all the same
    assert {len(p) for p in pngs} == {served_length(w, h)}
    with Image.open(io.BytesIO(pngs[0])) as im:
        assert np.array_equal(np.asarray(im), noise)


def test_copies_are_made_with_the_stimuli_and_again_when_missing(client, served_world, media_root):
    from webapp.stimuli.models import Stimulus

    exp, a, items = served_world
    served_dir = media_root / "served"
    made = sorted(p.name for p in served_dir.iterdir())
    assert len(made) == Stimulus.objects.count() + exp.references.count()  # make_stimuli wrote them all
    assert not any(name.startswith(".tmp") for name in made)
    before = _fetch(client, items[0]["left"])
    shutil.rmtree(served_dir)
    assert _fetch(client, items[0]["left"]) == before  # rebuilt on first use, identical
    assert len(list(served_dir.iterdir())) == 1
