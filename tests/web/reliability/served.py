"""Posting judgments through the served WSGI application (``webapp.wsgi``: Django's handler, as granian
calls it) in-process, with Django's connection handling (health checks, CONN_MAX_AGE) as served."""

from __future__ import annotations

import json
import uuid

from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory


def app() -> WSGIHandler:
    """What ``webapp/wsgi.py`` serves."""
    return WSGIHandler()


def post(wsgi, token, body, *, header=None, content_type="application/json", path=None, **extra):
    """POST through the WSGI app ``wsgi``; returns (status code, headers dict, body bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = RequestFactory().post(path or f"/a/{token}/judge", raw, content_type=content_type,
                                headers={"X-Assignment-Token": str(header or token)}, **extra)
    environ = {"HTTP_HOST": "testserver", **req.environ}
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    out = b"".join(wsgi(environ, start_response))
    return seen["status"], seen["headers"], out


def judgment(position, choice="left", uid=None, **extra):
    return {"uuid": str(uid or uuid.uuid4()), "position": position, "choice": choice, "response_ms": 640,
            "client_time": "2026-01-01T12:00:00Z", **extra}
