"""Management commands interrupted halfway change nothing: refused late, failing late, or SIGKILLed.

Each test takes a snapshot of the database rows the commands write and of every file under MEDIA_ROOT
(``.staging``, the commands' scratch folder, aside), runs the command to a failure or kills the real
``manage.py`` process once it has started writing, and compares. The kill tests use committed rows
(``transactional_db``) so that the subprocess sees the same database.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from PIL import Image

from tests.web.conftest import FIXTURE_IMAGES, enter

ROOT = Path(__file__).resolve().parents[3]


def media_files(media: Path) -> dict[str, str]:
    """sha256 of every file under MEDIA_ROOT but the staging folder."""
    return {str(p.relative_to(media)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(media.rglob("*")) if p.is_file() and ".staging" not in p.relative_to(media).parts}


def db_rows() -> dict[str, list]:
    """Every row of the tables the stimulus and experiment commands write."""
    from webapp.experiments.models import Experiment, Trial
    from webapp.stimuli.models import ReferenceImage, Stimulus

    models = {"refs": ReferenceImage, "stimuli": Stimulus, "trials": Trial, "experiments": Experiment,
              "experiment_refs": Experiment.references.through}
    return {k: list(m.objects.order_by("pk").values()) for k, m in models.items()}


def state(media: Path) -> tuple[dict, dict]:
    return db_rows(), media_files(media)


def write_spec(tmp_path: Path, **fields) -> Path:
    spec = {"slug": "halfway", "title": "Halfway", "codecs": ["jpeg:20,60"], **fields}
    path = tmp_path / f"{spec['slug']}.json"
    path.write_text(json.dumps(spec))
    return path


def crops(out: Path, n: int, side: int) -> Path:
    """``n`` distinct RGB PNGs of side x side cut from the committed Kodak crops."""
    out.mkdir(parents=True, exist_ok=True)
    srcs = sorted(FIXTURE_IMAGES.glob("*.png"))
    for i in range(n):
        im = Image.open(srcs[i % len(srcs)]).convert("RGB")
        x = (i // len(srcs)) * 3
        im.crop((x, 0, x + side, side)).save(out / f"img{i:03d}.png")
    return out


# --- refused or failing late ------------------------------------------------------------------------------

def test_make_stimuli_on_experiment_with_assignments_changes_nothing(client, live_experiment, media_root):
    enter(client, live_experiment)
    before = state(media_root)
    with pytest.raises(CommandError, match="already has assignments"):
        call_command("make_stimuli", live_experiment.slug, codec=["jpeg:25,55", "webp:30"])
    assert state(media_root) == before


def test_make_stimuli_with_a_tiny_reference_changes_nothing(db, media_root, tmp_path):
    folder = crops(tmp_path / "in", 2, 32)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "zz-tiny.png")  # imported last: fails late
    call_command("import_images", str(folder))
    call_command("create_experiment", str(write_spec(tmp_path)))
    before = state(media_root)
    with pytest.raises(CommandError, match=r"smaller than 11x11.*zz-tiny\.png \(1x1\)"):
        call_command("make_stimuli", "halfway")
    assert state(media_root) == before


def test_make_stimuli_with_a_failing_codec_late_in_the_batch_changes_nothing(db, media_root, tmp_path):
    """A bpp target only some references can reach: the codec fails after others were encoded."""
    call_command("import_images", str(crops(tmp_path / "in", 3, 48)))
    call_command("create_experiment", str(write_spec(tmp_path, codecs=["jpeg:30"])))
    before = state(media_root)
    with pytest.raises(CommandError):
        call_command("make_stimuli", "halfway", codec=["jpeg:30", "jpeg@0.0001"])
    assert state(media_root) == before


# --- killed -----------------------------------------------------------------------------------------------

def subprocess_env(media: Path) -> dict[str, str]:
    s = connection.settings_dict
    url = (f"postgres://{s['USER']}{':' + s['PASSWORD'] if s.get('PASSWORD') else ''}@"
           f"{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}")
    return {**os.environ, "DATABASE_URL": url, "MEDIA_ROOT": str(media), "PYTHONPATH": str(ROOT)}


def kill_when(args: list[str], media: Path, started: Callable[[], bool], limit_s: float = 120) -> bool:
    """Run ``manage.py ARGS``; SIGKILL it as soon as ``started()`` (True); fails if it ends first."""
    proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(media),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = time.monotonic() + limit_s
    try:
        while proc.poll() is None and time.monotonic() < stop:
            if started():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.001)
        err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.poll() is not None else ""
        pytest.fail(f"manage.py {args[0]} ended before writing (rc {proc.poll()}): {err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def any_file(*dirs: Path) -> Callable[[], bool]:
    return lambda: any(p.is_file() for d in dirs if d.exists() for p in d.rglob("*"))


@pytest.mark.timeout(300)
def test_make_stimuli_killed_halfway_changes_nothing(transactional_db, media_root, tmp_path):
    call_command("import_images", str(crops(tmp_path / "in", 2, 128)))
    qualities = ",".join(str(q) for q in range(5, 100, 10))
    call_command("create_experiment", str(write_spec(tmp_path, codecs=[f"jpeg:{qualities}"])))
    before = state(media_root)
    media_root.mkdir(exist_ok=True)
    assert kill_when(["make_stimuli", "halfway"], media_root,
                     any_file(media_root / "stimuli", media_root / ".staging"))
    assert state(media_root) == before
    call_command("make_stimuli", "halfway")  # a later run completes and sweeps the killed run's folder
    assert not list((media_root / ".staging").iterdir())
    from webapp.stimuli.models import Stimulus

    assert Stimulus.objects.count() == 2 * 11  # 10 qualities and the original


@pytest.mark.timeout(300)
def test_import_images_killed_halfway_changes_nothing(transactional_db, media_root, tmp_path):
    folder = crops(tmp_path / "in", 60, 96)
    before = state(media_root)
    media_root.mkdir(exist_ok=True)
    assert kill_when(["import_images", str(folder)], media_root,
                     any_file(media_root / "refs", media_root / ".staging"))
    assert state(media_root) == before


@pytest.mark.timeout(300)
def test_export_killed_halfway_leaves_no_partial_dataset(transactional_db, client, live_experiment,
                                                         media_root, tmp_path):
    enter(client, live_experiment)
    out = tmp_path / "export"
    partial = lambda: out.exists() or any(tmp_path.glob(".export-partial-*"))  # noqa: E731
    assert kill_when(["export_dataset", live_experiment.slug, "--out", str(out)], media_root, partial)
    assert not out.exists() or (out / "manifest.json").is_file()
