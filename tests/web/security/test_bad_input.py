"""Bad input that used to pass silently or crash: an experiment file naming a key twice (PyYAML and json keep
the last value without a word), and ``import_images --source`` with bytes that are not UTF-8 (a traceback
from the database driver). Each is now one line naming what is wrong, and nothing is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from webapp.experiments.spec import SpecError, load_file

REPO = Path(__file__).resolve().parents[3]

YAML_CASES = {
    "top level": ("slug: dup\ntitle: T\nstatus: draft\nmode: pair\nstatus: live\n",
                  "duplicate key 'status' at line 5 (first at line 3)"),
    "nested": ("slug: dup\ntitle: T\nqc:\n  min_sentinels: 1\n  max_fast_share: 0.2\n  min_sentinels: 3\n",
               "duplicate key 'min_sentinels' at line 6 (first at line 4)"),
    "in a list": ("slug: dup\ntitle: T\ncodecs:\n  - {a: 1, a: 2}\n",
                  "duplicate key 'a' at line 4 (first at line 4)"),
    "flow mapping": ("{slug: dup, title: T, slug: again}\n", "duplicate key 'slug' at line 1"),
}
JSON_CASES = {
    "top level": ('{"slug": "dup",\n "title": "T",\n "status": "draft",\n "status": "live"}',
                  "duplicate key 'status' at line 4 (first at line 3)"),
    "nested": ('{"slug": "dup", "title": "T",\n "qc": {"min_sentinels": 1,\n   "x": [1, {"y": 2}],\n'
               '   "min_sentinels": 3}}', "duplicate key 'min_sentinels' at line 4 (first at line 2)"),
    "in a list": ('{"slug": "dup", "title": "T", "codecs": [{"k": 1, "k": 2}]}',
                  "duplicate key 'k' at line 1 (first at line 1)"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_duplicate_keys_are_an_error(tmp_path, case):
    text, says = YAML_CASES[case]
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_file(path)
    message = str(err.value)
    assert says in message and "\n" not in message and message.startswith(str(path))


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_json_duplicate_keys_are_an_error(tmp_path, case):
    text, says = JSON_CASES[case]
    path = tmp_path / "study.json"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_file(path)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_files_without_duplicates_load_as_before(tmp_path):
    """YAML merge keys may be overridden (YAML's rule); equal keys in different mappings are fine; JSON
    escapes, empty objects and nesting load as json.loads does."""
    y = tmp_path / "ok.yaml"
    y.write_text("slug: ok\nbase: &b {a: 1, b: 2}\nother:\n  <<: *b\n  a: 3\nthird: {a: 1}\n")
    assert load_file(y) == {"slug": "ok", "base": {"a": 1, "b": 2}, "other": {"a": 3, "b": 2},
                            "third": {"a": 1}}
    doc = {"slug": "ok", "a": {}, "b": [], "c": 'x"y\\n\u00e9', "d": {"e": {"f": [1, 2.5, None, True]}},
           "qc": {"a": 1}, "x": {"a": 2}}
    j = tmp_path / "ok.json"
    j.write_text(json.dumps(doc, indent=2))
    assert load_file(j) == doc


def test_create_experiment_refuses_a_duplicate_status(db, tmp_path):
    from webapp.experiments.models import Experiment

    path = tmp_path / "study.yaml"
    path.write_text("slug: dup-status\ntitle: T\nstatus: draft\ncodecs: ['jpeg:20']\nstatus: live\n")
    with pytest.raises(CommandError, match=r"duplicate key 'status' at line 5 \(first at line 3\)"):
        call_command("create_experiment", str(path))
    assert not Experiment.objects.exists()


# --- import_images --source -----------------------------------------------------------------------------


@pytest.fixture
def one_image(tmp_path) -> Path:
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(d / "a.png")
    return d


@pytest.mark.parametrize("option", ["source", "licence"])
def test_import_images_refuses_text_that_is_not_utf8(db, one_image, media_root, option):
    from webapp.stimuli.models import ReferenceImage

    with pytest.raises(CommandError) as err:
        call_command("import_images", str(one_image), **{option: "caf\udce9"})
    said = f"--{option}: not valid UTF-8 text (byte 0xe9 at character 4) (nothing was imported)"
    assert str(err.value) == said
    assert not ReferenceImage.objects.exists() and not any(p.is_file() for p in media_root.rglob("*"))


def test_import_images_invalid_utf8_from_the_shell(db, one_image, tmp_path):
    """As a shell passes it: the byte reaches sys.argv as a lone surrogate. One line on stderr, exit 1."""
    from webapp.stimuli.models import ReferenceImage

    s = connection.settings_dict
    url = f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}" if connection.vendor == "postgresql" \
        else f"sqlite:///{s['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "MEDIA_ROOT": str(tmp_path / "media")}
    argv = [os.fsencode(sys.executable), b"manage.py", b"import_images", os.fsencode(one_image),
            b"--source", b"caf\xe9"]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=120)
    err = done.stderr.decode("utf-8", "replace").strip()
    assert done.returncode == 1, err
    assert err == ("CommandError: --source: not valid UTF-8 text (byte 0xe9 at character 4) "
                   "(nothing was imported)")
    assert not ReferenceImage.objects.exists() and not (tmp_path / "media").exists()
