"""Production settings: ``manage.py check --deploy`` is clean, and the running app behaves accordingly.

Both run in subprocesses with the environment a deployment sets (DEBUG=0, SECRET_KEY, ALLOWED_HOSTS,
DATABASE_URL), since the settings module reads the environment once, at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HOST = "lab.example.org"


def production_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "CROWD_"))}
    env.update(
        DEBUG="0",
        SECRET_KEY="prod-" + "k3y-" * 15 + "not-for-real-use",
        ALLOWED_HOSTS=HOST,
        DATABASE_URL=os.environ.get("DATABASE_URL", "sqlite:///:memory:"),
        DJANGO_SETTINGS_MODULE="webapp.settings",
    )
    return env


def test_check_deploy_is_clean_with_production_settings():
    r = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"], cwd=ROOT,
                       env=production_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "System check identified no issues (0 silenced)." in r.stdout, r.stdout


# Requests that touch neither the database nor templates with static files (no collectstatic here).
PROBE = f"""
import json, django
django.setup()
from django.conf import settings
from django.test import Client
c = Client(HTTP_HOST="{HOST}")
out = {{"debug": settings.DEBUG, "session_secure": settings.SESSION_COOKIE_SECURE,
        "csrf_secure": settings.CSRF_COOKIE_SECURE}}
r = c.get("/lab/")
out["http"] = [r.status_code, r.get("Location", "")]
r = c.get("/lab/", secure=True)
out["https"] = [r.status_code, r.get("Location", "")] + [r.get(h, "") for h in (
    "Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")]
r = c.get("/api/experiments/", secure=True)
out["api"] = [r.status_code, r.content.decode()]
r = c.get("/media/refs/x.png", secure=True)
out["media"] = [r.status_code, r.content.decode()[:2000]]
r = Client(HTTP_HOST="evil.example").get("/lab/", secure=True)
out["bad_host"] = r.status_code
print(json.dumps(out))
"""


def test_production_app_enforces_https_headers_and_hides_internals():
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=production_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["debug"] is False and out["session_secure"] and out["csrf_secure"]
    assert out["http"] == [301, f"https://{HOST}/lab/"]
    status, location, hsts, xfo, nosniff, referrer = out["https"]
    assert status == 302 and location.startswith("/lab/login/")
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts and "preload" in hsts
    assert (xfo, nosniff, referrer) == ("DENY", "nosniff", "same-origin")
    assert out["api"][0] == 401 and "credentials were not provided" in out["api"][1]
    assert out["media"][0] == 404  # no file serving from MEDIA_ROOT in production
    for leak in ("Traceback", "DEBUG", "urlpatterns", "SECRET", "MEDIA_ROOT"):
        assert leak not in out["media"][1], leak
    assert out["bad_host"] == 400
