"""The environment file of deploy/ checked before a service starts (``python -m webapp.envcheck``): the
example as shipped is refused for its placeholders, a filled-in one passes, and each missing or malformed
variable is one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "lab.env"


def _example() -> dict[str, str]:
    out = {}
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _check(env: dict[str, str]) -> tuple[int, list[str]]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    r = subprocess.run([sys.executable, "-m", "webapp.envcheck"], cwd=ROOT, env={**base, **env},
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == ""
    return r.returncode, r.stderr.splitlines()


@pytest.fixture
def filled(tmp_path) -> dict[str, str]:
    env = _example()
    media = tmp_path / "media"
    media.mkdir()
    env.update(SECRET_KEY="k" * 60, DATABASE_URL="postgres://lab:pw@127.0.0.1:5432/lab",
               MEDIA_ROOT=str(media), STATIC_ROOT=str(tmp_path / "static"))
    return env


def test_every_variable_the_settings_read_is_in_the_example():
    documented = set(_example()) | {"PROLIFIC_TOKEN", "PROLIFIC_API_URL", "AWS_ACCESS_KEY_ID",
                                    "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"}
    text = EXAMPLE.read_text()
    read = set()
    for path in (ROOT / "webapp" / "settings.py", ROOT / "webapp" / "serve.py"):
        for chunk in path.read_text().split('("')[1:]:
            name = chunk.split('"')[0]
            if name.isupper() and name.replace("_", "").isalnum() and len(name) > 3:
                read.add(name)
    read -= {"TEST_DATABASE_NAME", "HTTP_X_FORWARDED_PROTO", "DJANGO_SETTINGS_MODULE"}
    missing = sorted(n for n in read if n not in documented and f"# {n}=" not in text)
    assert not missing, f"deploy/lab.env lacks {missing}"


def test_the_example_as_shipped_is_refused_for_its_placeholders():
    code, lines = _check(_example())
    assert code == 2
    assert "lab environment: SECRET_KEY: still the example's placeholder (CHANGE-ME)" in lines
    assert "lab environment: DATABASE_URL: still the example's placeholder (CHANGE-ME)" in lines


def test_a_filled_in_file_passes(filled):
    assert _check(filled) == (0, [])


@pytest.mark.parametrize("change, line", [
    ({"SECRET_KEY": None}, "SECRET_KEY: missing"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY: shorter than 50 characters"),
    ({"DEBUG": "1"}, "DEBUG: must be 0 in production"),
    ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL: production runs on PostgreSQL"),
    ({"REDIS_URL": None}, "REDIS_URL: missing"),
    ({"SITE_URL": "http://lab.example.org"}, "SITE_URL: expected https://HOST"),
    ({"ALLOWED_HOSTS": "other.example.org"}, "ALLOWED_HOSTS: does not allow SITE_URL's host lab.example.org"),
    ({"CSRF_TRUSTED_ORIGINS": ""}, "CSRF_TRUSTED_ORIGINS: missing"),
    ({"MEDIA_ROOT": "media"}, "MEDIA_ROOT: expected an absolute path"),
    ({"WEB_BUFFERING_PROXY": "0"}, "WEB_BUFFERING_PROXY: must be 1"),
    ({"CROWD_RATE_LIMIT": "thirty"}, "CROWD_RATE_LIMIT: expected an integer, got 'thirty'"),
    ({"CROWD_RATE_WINDOW": "0"}, "CROWD_RATE_WINDOW: expected an integer >= 1, got 0"),
    ({"SECURE_COOKIES": "maybe"}, "SECURE_COOKIES: expected 1/0"),
    ({"SERVED_X_ACCEL_REDIRECT": "_served"}, "SERVED_X_ACCEL_REDIRECT: expected a path like /_served/"),
])
def test_each_problem_is_one_line_naming_its_variable(filled, change, line):
    env = {**filled}
    for k, v in change.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    code, lines = _check(env)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"lab environment: {line}"), lines


def test_the_server_refuses_a_malformed_variable_in_one_line(filled):
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    r = subprocess.run([sys.executable, "-m", "webapp.serve"], cwd=ROOT, env={
        **base, **filled, "WEB_THREADS": "many"}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == "webapp.serve: WEB_THREADS: expected an integer, got 'many'"
