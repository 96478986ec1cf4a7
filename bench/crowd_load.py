"""Load test of the participant API: N concurrent workers doing whole assignments over HTTP.

    python bench/crowd_load.py --workers 1,3 --clients 50 --database-url postgres://postgres@127.0.0.1/bench

For each gunicorn worker count it migrates a fresh database, loads the demo experiment, starts gunicorn
(DEBUG=0, SECURE_SSL_REDIRECT=0) on a free port, runs the clients and prints judgments/s with the ratio
to the first worker count (the baseline, measured in the same run).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def participant(base: str, slug: str, seed: int) -> int:
    """One whole assignment (consent, every item, 20 % replays, completion); returns judgments stored."""
    rng, s = random.Random(seed), requests.Session()
    page = s.get(f"{base}/p/{slug}/", timeout=60).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = s.post(
        f"{base}/p/{slug}/",
        data={"consent": "yes", "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/p/{slug}/"},
        allow_redirects=False,
        timeout=60,
    )
    token = r.headers["Location"].rstrip("/").split("/")[-1]
    hdr = {"X-Assignment-Token": token}
    items = s.get(f"{base}/a/{token}/state", timeout=60).json()["items"]
    for it in items:
        body = {
            "uuid": str(uuid.uuid4()),
            "position": it["position"],
            "choice": rng.choice(["left", "right"]),
            "response_ms": rng.randint(300, 2000),
        }
        for _ in range(2 if rng.random() < 0.2 else 1):
            assert s.post(f"{base}/a/{token}/judge", json=body, headers=hdr, timeout=60).status_code in (
                200,
                201,
            )
    assert s.post(f"{base}/a/{token}/complete", headers=hdr, timeout=60).status_code == 200
    return len(items)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(workers: int, clients: int, db_url: str, media: str) -> float:
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "DATABASE_URL": db_url,
        "MEDIA_ROOT": media,
        "CROWD_RATE_LIMIT": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["flush", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run(manage + ["load_demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run(
        manage
        + [
            "shell",
            "-c",
            "from webapp.experiments.models import Experiment as E; "
            "E.objects.filter(slug='demo').update(judgments_per_trial=1000)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    gun = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp.wsgi", "-c", "webapp/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/p/demo/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            judged = sum(pool.map(lambda i: participant(base, "demo", i), range(clients)))
        return judged / (time.perf_counter() - t0)
    finally:
        gun.terminate()
        gun.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,3")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    a = ap.parse_args()
    if not a.database_url.startswith("postgres"):
        sys.exit("error: --database-url must be a PostgreSQL URL (a scratch database: it is flushed)")
    with tempfile.TemporaryDirectory() as media:
        env = {**os.environ, "DATABASE_URL": a.database_url}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        rates = {}
        for w in map(int, a.workers.split(",")):
            rates[w] = run(w, a.clients, a.database_url, media)
            base = rates[next(iter(rates))]
            print(
                f"gunicorn workers={w}: {a.clients} clients, {rates[w]:.1f} judgments/s "
                f"(x{rates[w] / base:.2f} vs workers={next(iter(rates))})",
                flush=True,
            )


if __name__ == "__main__":
    main()
