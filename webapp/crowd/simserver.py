"""The site served from a background thread of this process (``simulate_crowd`` without ``--base-url``).

A threaded WSGI server (Django's runserver one, one thread per connection) on a free port of 127.0.0.1,
serving the production application (Django's WSGI handler) against the same database. It is
private to the simulation, so within this process the entry rate limit is off and, in production mode,
plain HTTP is accepted on 127.0.0.1 (no HTTPS redirect, no secure-only cookies), until the block ends.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.test.utils import override_settings


class _Server(ThreadedWSGIServer):
    request_queue_size = 256  # the listen backlog: many simulated participants connect at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def _private_settings() -> override_settings:
    hosts = list(settings.ALLOWED_HOSTS)
    if "127.0.0.1" not in hosts and "*" not in hosts:
        hosts.append("127.0.0.1")
    return override_settings(CROWD_RATE_LIMIT=0, SECURE_SSL_REDIRECT=False, SESSION_COOKIE_SECURE=False,
                             CSRF_COOKIE_SECURE=False, ALLOWED_HOSTS=hosts)


class BackgroundServer:
    """``with BackgroundServer() as url:`` the site answers at ``url`` until the block ends."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._app = None
        self._settings: override_settings | None = None

    def __enter__(self) -> str:
        self._settings = _private_settings()
        self._settings.enable()  # for this process only, until the block ends
        self._app = WSGIHandler()  # what webapp/wsgi.py serves, with the settings above
        self._server = _Server(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
        self._server.set_app(self._app)
        self._thread = threading.Thread(target=self._server.serve_forever, name="simulate-crowd-server",
                                        daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        if self._settings is not None:
            self._settings.disable()
