"""import_images, create_experiment, make_stimuli, load_demo and the production settings."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def test_import_is_content_addressed_and_deterministic(db, media_root, small_images, tmp_path):
    from webapp.stimuli.models import ReferenceImage

    dup = tmp_path / "dup"
    dup.mkdir()
    first = sorted(small_images.iterdir())[0]
    (dup / "copy.png").write_bytes(first.read_bytes())
    Image.open(first).convert("L").save(dup / "gray.png")
    call_command("import_images", str(small_images), str(dup), source="kodak", licence="research")
    refs = list(ReferenceImage.objects.all())
    assert len(refs) == 3  # the copy is the same content
    for r in refs:
        assert r.file.name == f"refs/{r.sha256}.png" and (r.width, r.height) == (64, 64)
        assert Image.open(r.file.path).mode == "RGB"
    out = io.StringIO()
    call_command("import_images", str(small_images), stdout=out)
    assert "0 new" in out.getvalue() and ReferenceImage.objects.count() == 3
    from webapp.stimuli.ingest import split_for

    assert all(r.split == split_for(r.sha256, 0, 0.1, 0.2) for r in refs)


def test_broken_file_imports_nothing(db, media_root, small_images):
    from webapp.stimuli.models import ReferenceImage

    (small_images / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(CommandError, match=r"zz_broken\.png: not a readable image.*nothing was imported"):
        call_command("import_images", str(small_images))
    assert not ReferenceImage.objects.exists()
    assert not (media_root / "refs").exists() or not any((media_root / "refs").iterdir())


def test_decompression_bomb_rejected(db, media_root, small_images, monkeypatch):
    from webapp.stimuli.models import ReferenceImage

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×64 = 4096 > 1000: treated as a bomb
    with pytest.raises(CommandError, match="decompression bomb"):
        call_command("import_images", str(small_images))
    assert not ReferenceImage.objects.exists()


def test_oversized_file_imports_nothing(db, media_root, small_images):
    from django.test import override_settings

    from webapp.stimuli.models import ReferenceImage

    biggest = max(f.stat().st_size for f in small_images.iterdir())
    big = small_images / "zz_big.png"
    Image.open(sorted(small_images.iterdir())[0]).resize((128, 128)).save(big)  # a valid image, more bytes
    assert big.stat().st_size > biggest
    with override_settings(STIMULI_MAX_IMAGE_BYTES=biggest):
        with pytest.raises(CommandError) as err:
            call_command("import_images", str(small_images))
        assert str(err.value) == (
            f"{big}: file is {big.stat().st_size:,} bytes, over the {biggest:,}-byte limit "
            "(STIMULI_MAX_IMAGE_BYTES) (nothing was imported)"
        )
        assert not ReferenceImage.objects.exists()
        assert not (media_root / "refs").exists() or not any((media_root / "refs").iterdir())
        big.unlink()  # the others are within the limit (equal to it counts as within)
        call_command("import_images", str(small_images), stdout=io.StringIO())
    assert ReferenceImage.objects.count() == 2


def test_default_byte_cap_is_checked_before_reading(db, media_root, small_images):
    from webapp.stimuli.models import ReferenceImage

    huge = small_images / "zz_huge.png"
    with huge.open("wb") as f:
        f.truncate(1 << 40)  # sparse: 1 TiB on paper, nothing on disk; reading it would never finish
    msg = r"zz_huge\.png: file is 1,099,511,627,776 bytes, over the 67,108,864-byte limit"
    with pytest.raises(CommandError, match=msg):
        call_command("import_images", str(small_images))
    assert not ReferenceImage.objects.exists()


def test_byte_cap_setting_comes_from_the_environment():
    env = {**os.environ, "STIMULI_MAX_IMAGE_BYTES": "12345", "DATABASE_URL": "sqlite:///:memory:"}
    code = "from django.conf import settings; print(settings.STIMULI_MAX_IMAGE_BYTES)"
    r = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.split()[-1] == "12345", r.stdout + r.stderr


def test_import_bad_arguments(db, media_root, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_images", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="no image files"):
        call_command("import_images", str(tmp_path))


def _spec(tmp_path, **fields):
    spec = {"slug": "s1", "title": "T", "codecs": ["jpeg:20,60"], **fields}
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(spec))
    return str(p)


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"slug": "Bad Slug"}, "slug"),
        ({"title": ""}, "title"),
        ({"mode": "quad"}, "mode: must be one of triplet, pair"),
        ({"sentinel_rate": 1.5}, "sentinel_rate"),
        ({"trials_per_assignment": 0}, "trials_per_assignment"),
        ({"trials_per_assignment": "ten"}, "trials_per_assignment"),
        ({"pairs": "sampled"}, "pairs_per_reference"),
        ({"codecs": ["nocodec:10"]}, "unknown codec"),
        ({"colour": "red"}, "unknown field(s): colour"),
        ({"completion_url": "javascript:alert(1)"}, "completion_url"),
    ],
)
def test_create_experiment_validation(db, tmp_path, fields, needle):
    from webapp.experiments.models import Experiment

    with pytest.raises(CommandError, match=__import__("re").escape(needle)):
        call_command("create_experiment", _spec(tmp_path, **fields))
    assert not Experiment.objects.exists()


def test_create_experiment_yaml_owner_and_replace(db, tmp_path, django_user_model):
    from webapp.experiments.models import Experiment

    django_user_model.objects.create_user("ann", password="x")
    p = tmp_path / "e.yaml"
    p.write_text("slug: s2\ntitle: Hello\nmode: pair\ncodecs: ['webp:30']\n")
    call_command("create_experiment", str(p), owner="ann")
    exp = Experiment.objects.get(slug="s2")
    assert exp.owner.username == "ann" and exp.mode == "pair" and exp.spec["title"] == "Hello"
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_experiment", str(p))
    with pytest.raises(CommandError, match="no user"):
        call_command("create_experiment", str(p), owner="nobody", replace=True)
    call_command("create_experiment", str(p), replace=True)
    exp.status = "live"
    Experiment.objects.filter(slug="s2").update(status="live")
    with pytest.raises(CommandError, match="only drafts"):
        call_command("create_experiment", str(p), replace=True)
    (tmp_path / "broken.yaml").write_text("slug: [unclosed\n")
    with pytest.raises(CommandError, match="not valid YAML"):
        call_command("create_experiment", str(tmp_path / "broken.yaml"))


def test_make_stimuli_exact_bytes_metrics_and_idempotent(live_experiment):
    import hashlib

    from learning.codecs import get_codec
    from webapp.experiments.models import Trial
    from webapp.stimuli.models import Stimulus

    stims = Stimulus.objects.exclude(codec="original")
    assert stims.count() == 6 and Stimulus.objects.filter(codec="original").count() == 2
    for s in stims:
        data = bytes(s.encoded)
        assert hashlib.sha256(data).hexdigest() == s.encoded_sha256
        assert s.bpp == pytest.approx(8 * len(data) / (64 * 64))
        decoded = get_codec("jpeg").decode(data).convert("RGB")
        assert list(Image.open(s.decoded.path).convert("RGB").getdata()) == list(decoded.getdata())
        assert 10 < s.psnr < 60 and 0 < s.ssim <= 1
        assert s.decoded.name == f"stimuli/{s.public_id}.png"
    by_ref = {}
    for s in stims:
        by_ref.setdefault(s.reference_id, []).append(s)
    for ref_stims in by_ref.values():  # higher quality -> more bits and higher PSNR
        ref_stims.sort(key=lambda s: s.quality)
        assert [s.bpp for s in ref_stims] == sorted(s.bpp for s in ref_stims)
        assert ref_stims[0].psnr < ref_stims[-1].psnr
    counts = {
        k: Trial.objects.filter(experiment=live_experiment, kind=k).count()
        for k in ("normal", "sentinel", "practice")
    }
    assert counts == {"normal": 6, "sentinel": 2, "practice": 2}
    sentinel = Trial.objects.filter(kind="sentinel").first()
    assert sentinel.expected.codec == "original"
    assert {sentinel.stimulus_a_id, sentinel.stimulus_b_id} >= {sentinel.expected_id}
    live_experiment.status = "draft"
    live_experiment.save()
    call_command("make_stimuli", live_experiment.slug)
    assert Stimulus.objects.count() == 8 and Trial.objects.filter(experiment=live_experiment).count() == 10


def test_make_stimuli_errors(live_experiment):
    with pytest.raises(CommandError, match="no experiment"):
        call_command("make_stimuli", "nope", codec=["jpeg:10"])
    with pytest.raises(CommandError, match="unknown codec"):
        call_command("make_stimuli", live_experiment.slug, codec=["zzz:10"])


@pytest.mark.slow
def test_load_demo_twice(db, media_root):
    from webapp.experiments.models import Experiment

    out = io.StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=out)
    exp = Experiment.objects.get(slug="demo")
    assert exp.status == "live" and exp.trials.filter(kind="normal").count() == 40
    assert "http://127.0.0.1:8000/p/demo/" in out.getvalue() and "demo-password" in out.getvalue()


def test_deploy_check_clean_in_production():
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60 + "-prod-secret-KEY-for-check-ONLY-9876",
        "ALLOWED_HOSTS": "lab.example.org",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    r = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    env.pop("SECRET_KEY")
    r = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0 and "SECRET_KEY must be set" in r.stderr


def test_sampled_pairs_are_seeded(experiment_factory):
    from webapp.experiments.models import Trial

    a = experiment_factory(pairs="sampled", pairs_per_reference=2, seed=7)
    b = experiment_factory(pairs="sampled", pairs_per_reference=2, seed=7)

    def pairs(exp):
        return sorted(
            (t.reference_id, *sorted((t.stimulus_a_id, t.stimulus_b_id)))
            for t in Trial.objects.filter(experiment=exp, kind="normal")
        )

    assert len(pairs(a)) == 4 and pairs(a) == pairs(b)


def test_bpp_targets_go_through_rate_control(experiment_factory):
    from webapp.stimuli.models import Stimulus

    exp = experiment_factory(codecs=("webp@0.8,2.0",))
    stims = list(Stimulus.objects.filter(codec="webp").exclude(target_bpp=None))
    assert len(stims) == 4 and all(s.quality is None for s in stims)
    for ref in {s.reference_id for s in stims}:
        low, high = sorted((s for s in stims if s.reference_id == ref), key=lambda s: s.target_bpp)
        assert (low.target_bpp, high.target_bpp) == (0.8, 2.0)
        assert low.bpp < high.bpp and abs(high.bpp - 2.0) < 1.0, (low.bpp, high.bpp)
    assert exp.trials.filter(kind="normal").count() == 2  # one pair per reference
