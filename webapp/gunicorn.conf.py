"""gunicorn settings (``make serve-prod``), all from the environment.

GUNICORN_BIND (127.0.0.1:8000), GUNICORN_WORKERS (2 x cores + 1 processes), GUNICORN_THREADS (4 threads
per worker, gthread; 1 = classic sync workers), GUNICORN_KEEPALIVE (5 s), GUNICORN_TIMEOUT (30 s),
GUNICORN_ACCESS_LOG (off; a path or "-"), GUNICORN_BACKLOG (2048 pending connections).

Each thread keeps its own persistent PostgreSQL connection (CONN_MAX_AGE), so the server holds up to
workers x threads connections: keep that below PostgreSQL's max_connections. Threads (gthread) keep
HTTP connections alive between a participant's requests and let a request that waits (a commit's fsync,
the per-experiment lock of a new assignment) leave the CPU to the others; on 2 cores they served 1.5x the
judge POSTs of sync workers and 2.2x the static files (bench/README.md, load section).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
worker_class = "gthread" if threads > 1 else "sync"
backlog = int(os.environ.get("GUNICORN_BACKLOG", 2048))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # off unless a path or "-" is given
errorlog = "-"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
# gunicorn's control socket has one default path per user: several servers on one machine (benchmarks,
# tests) would take it from each other. Not used here (reload/stop go by signals to the master).
control_socket_disable = True


def on_starting(server):
    """Import every view (the URLconf) in the master before forking, so that a new worker, including one
    the master starts after a crash, answers its first request without a second of lazy imports."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (the attribute access does the import)
