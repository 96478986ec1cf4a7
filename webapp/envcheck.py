"""``python -m webapp.envcheck``: the production environment, checked before a service starts (the systemd
units of deploy/ run it as ExecStartPre). It prints one line per variable that is missing, still the
example's placeholder or malformed, naming it, and exits 2; silent with exit 0 when all is sound.
deploy/lab.env lists every variable."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from webapp.serve import command

REQUIRED = ("SECRET_KEY", "ALLOWED_HOSTS", "SITE_URL", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL",
            "MEDIA_ROOT", "STATIC_ROOT")
PLACEHOLDER = "CHANGE-ME"  # what deploy/lab.env holds where a value must be chosen


def _listed(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with ``env`` for production, one line each (empty: nothing)."""
    out = [f"{name}: missing (deploy/lab.env lists every variable)" for name in REQUIRED
           if not env.get(name, "").strip()]
    out += [f"{name}: still the example's placeholder ({PLACEHOLDER})" for name, value in env.items()
            if PLACEHOLDER in value]
    get = lambda name: env.get(name, "").strip()  # noqa: E731
    if get("DEBUG") not in ("0", "false", "no", "off"):
        out.append(f"DEBUG: must be 0 in production (got {get('DEBUG') or 'unset, which means 1'!r})")
    if get("SECRET_KEY") and PLACEHOLDER not in get("SECRET_KEY") and len(get("SECRET_KEY")) < 50:
        out.append("SECRET_KEY: shorter than 50 characters (python3 -c 'import secrets; "
                   "print(secrets.token_urlsafe(50))')")
    if get("DATABASE_URL") and urlsplit(get("DATABASE_URL")).scheme not in ("postgres", "postgresql"):
        out.append("DATABASE_URL: production runs on PostgreSQL (postgres://USER:PASSWORD@HOST:5432/DB)")
    if get("REDIS_URL") and urlsplit(get("REDIS_URL")).scheme not in ("redis", "rediss", "unix"):
        out.append("REDIS_URL: expected redis://HOST:6379/0")
    site = urlsplit(get("SITE_URL"))
    if get("SITE_URL"):
        if site.scheme != "https" or not site.hostname:
            out.append(f"SITE_URL: expected https://HOST (got {get('SITE_URL')!r})")
        else:
            hosts = _listed(get("ALLOWED_HOSTS"))
            if site.hostname not in hosts and not any(h.startswith(".") and site.hostname.endswith(h)
                                                      for h in hosts):
                out.append(f"ALLOWED_HOSTS: does not allow SITE_URL's host {site.hostname}")
            trusted = _listed(get("CSRF_TRUSTED_ORIGINS"))
            if trusted and f"https://{site.netloc}" not in trusted:
                out.append(f"CSRF_TRUSTED_ORIGINS: must list https://{site.netloc}")
    for name in ("MEDIA_ROOT", "STATIC_ROOT"):
        if get(name) and not Path(get(name)).is_absolute():
            out.append(f"{name}: expected an absolute path (got {get(name)!r})")
    if get("MEDIA_ROOT") and Path(get("MEDIA_ROOT")).is_absolute() and not Path(get("MEDIA_ROOT")).is_dir():
        out.append(f"MEDIA_ROOT: {get('MEDIA_ROOT')} is not a directory")
    try:
        command(env)
    except ValueError as exc:
        out.append(str(exc))
    if get("WEB_BUFFERING_PROXY") != "1":
        out.append("WEB_BUFFERING_PROXY: must be 1, with nginx (deploy/nginx/lab.conf) buffering bodies")
    return out


def main() -> int:
    found = problems(os.environ)
    if not found:  # the settings' own parsing (numbers, switches, paths) names what it cannot read
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")  # read at the first access
        try:
            settings.DEBUG  # noqa: B018  (reads, so parses, the settings)
        except ImproperlyConfigured as exc:
            found.append(str(exc))
    for line in found:
        print(f"lab environment: {line}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
