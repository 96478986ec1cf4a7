"""The production server (``make serve-prod``): granian serving ``webapp.wsgi:application``.

    python -m webapp.serve          # replaces itself with granian, configured from the environment

WEB_BIND (127.0.0.1:8000), WEB_WORKERS (worker processes, one per core), WEB_THREADS (Python threads per
worker, 16), WEB_BACKLOG (2048 pending connections), WEB_ACCESS_LOG (off; 1 = on), WEB_HEADER_TIMEOUT_MS
(10000: a connection that has not sent its request headers by then is closed).

Slow clients: granian reads request headers in Rust, with the timeout above, but a WSGI request's body is
read by the Python thread serving it, and granian has no body timeout: workers x WEB_THREADS clients that
each send half a body would hold every thread. So the server must sit behind a proxy that buffers whole
request bodies before forwarding them (nginx's default ``proxy_request_buffering on`` with
``client_body_timeout``); ``main`` refuses to start unless WEB_BUFFERING_PROXY=1 says that one is in front.

granian parses HTTP in Rust and hands each request to one of a worker's Python threads, which runs it
through Django's request cycle (``webapp/wsgi.py``); a worker that dies is started again
(``--respawn-failed-workers``). Each thread keeps its own persistent PostgreSQL connection (CONN_MAX_AGE),
so the server holds up to workers x threads connections: keep that below PostgreSQL's max_connections.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def _count(env: Mapping[str, str], name: str, default: int) -> str:
    """``env[name]`` as a positive integer (text); ValueError naming the variable otherwise."""
    raw = (env.get(name) or "").strip() or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}: expected an integer, got {raw!r}" if not raw.isdigit()
                         else f"{name}: expected an integer >= 1, got {raw}")
    return raw


def command(env: Mapping[str, str] = os.environ) -> list[str]:
    """The granian command line for the settings in ``env``; ValueError (one line naming the variable)
    for a malformed one."""
    bind = env.get("WEB_BIND", "127.0.0.1:8000")
    host, _, port = bind.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"WEB_BIND: expected HOST:PORT, got {bind!r}")
    return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host or "127.0.0.1",
            "--port", port, "--workers", _count(env, "WEB_WORKERS", os.cpu_count() or 1),
            "--blocking-threads", _count(env, "WEB_THREADS", 16),
            "--backlog", _count(env, "WEB_BACKLOG", 2048),
            "--no-ws", "--respawn-failed-workers",
            "--http1-header-read-timeout", _count(env, "WEB_HEADER_TIMEOUT_MS", 10000),
            "--access-log" if env.get("WEB_ACCESS_LOG", "0") not in ("", "0") else "--no-access-log",
            "webapp.wsgi:application"]


PROXY_REQUIRED = ("webapp.serve: refusing to start: production needs a proxy in front that buffers whole "
                  "request bodies (granian has no body timeout, so clients sending half a body would hold "
                  "every thread); set WEB_BUFFERING_PROXY=1 once one does (README, Production)")


def main(env: Mapping[str, str] = os.environ) -> None:
    """Replace this process with granian, or exit 2 when no buffering proxy is declared."""
    if env.get("WEB_BUFFERING_PROXY") != "1":
        print(PROXY_REQUIRED, file=sys.stderr)
        raise SystemExit(2)
    try:
        cmd = command(env)
    except ValueError as exc:
        print(f"webapp.serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
