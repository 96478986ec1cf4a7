"""gunicorn settings (``make serve-prod``), all from the environment.

GUNICORN_BIND (127.0.0.1:8000), GUNICORN_WORKERS (2 x cores + 1), GUNICORN_THREADS (1 = sync workers;
more = gthread workers, each thread with its own persistent database connection), GUNICORN_TIMEOUT (30 s),
GUNICORN_ACCESS_LOG (off; a path or "-"), GUNICORN_BACKLOG (2048 pending connections).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1))
threads = int(os.environ.get("GUNICORN_THREADS", 1))
worker_class = "gthread" if threads > 1 else "sync"
backlog = int(os.environ.get("GUNICORN_BACKLOG", 2048))
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
