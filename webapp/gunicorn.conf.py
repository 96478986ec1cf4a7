"""gunicorn settings from the environment: GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_ACCESS_LOG."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1))
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # off unless a path or "-" is given
errorlog = "-"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
