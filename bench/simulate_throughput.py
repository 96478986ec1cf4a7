"""simulate_crowd against the production server: judgments/s it sustains, and CPU per judgment on both
sides (issue 15's benchmark; figures in bench/README.md).

On a scratch PostgreSQL database beside ``DATABASE_URL``'s: the fixture images with JPEG at eight
qualities (112 triplet trials, ``--judgments`` each), served by ``python -m webapp.serve`` (granian,
``DEBUG=0``, what ``make serve-prod`` runs) on ``--port``; then ``simulate()`` with ``--base-url`` and a
PSNR observer at each ``--concurrency``. Client CPU comes from the simulation's own rusage, server CPU
from the granian processes' CPU times (psutil) before and after.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lab .venv/bin/python bench/simulate_throughput.py
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from closed_loop import django_setup, experiment_file, scratch_database  # noqa: E402


def _wait_port(port: int, timeout: float = 60.0) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the server did not open port {port}")


def _cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="4,16", help="comma list of simultaneous participants")
    ap.add_argument("--judgments", type=int, default=10, help="judgments per trial (per round)")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args(argv)
    work = REPO / "var/simulate_throughput"
    work.mkdir(parents=True, exist_ok=True)
    with scratch_database(os.environ.get("DATABASE_URL", ""), keep=False) as db_url:
        django_setup(db_url, work / "media")
        from django.core.management import call_command

        from webapp.crowd.simulate import SimConfig, simulate
        from webapp.experiments.models import Experiment

        call_command("import_images", str(REPO / "fixtures/images"), verbosity=0)
        env = {**os.environ, "DATABASE_URL": db_url, "MEDIA_ROOT": str(work / "media"), "DEBUG": "0",
               "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "127.0.0.1,localhost",
               "WEB_BUFFERING_PROXY": "1", "CROWD_RATE_LIMIT": "0", "WEB_BIND": f"127.0.0.1:{args.port}",
               "SECURE_SSL_REDIRECT": "0", "SECURE_COOKIES": "0", "STATIC_ROOT": str(work / "static")}
        # what make serve-prod does first: the manifest of hashed static files that DEBUG=0 needs
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO, env=env,
                       check=True)
        rows = []
        for k, conc in enumerate(int(c) for c in args.concurrency.split(",")):
            slug = f"throughput-{k}"
            call_command("create_experiment", str(experiment_file(
                work / f"{slug}.yaml", slug, "simulate_crowd throughput", ["jpeg:5,10,20,30,45,60,80,95"],
                args.judgments, 20, 0)), verbosity=0)
            call_command("make_stimuli", slug, verbosity=0)
            Experiment.objects.filter(slug=slug).update(status="live")
            server = psutil.Popen([sys.executable, "-m", "webapp.serve"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _wait_port(args.port)
                time.sleep(2)
                cpu0 = _cpu(server)
                exp = Experiment.objects.get(slug=slug)
                n = exp.trials.filter(kind="normal").count() * args.judgments // 20 + 4
                s = simulate(SimConfig(slug=slug, observer="psnr", participants=n, concurrency=conc,
                                       noise=0.5, seed=k, base_url=f"http://127.0.0.1:{args.port}"))
                server_cpu = _cpu(server) - cpu0
            finally:
                server.terminate()
                server.wait(30)
            if s.failures:
                print(f"{len(s.failures)} participants failed, e.g. {s.failures[:3]}", flush=True)
            if not s.audit_ok or not s.acknowledged:
                raise SystemExit(f"audit failed: {s.stored} stored, {s.acknowledged} acknowledged")
            row = {"concurrency": conc, "participants": s.completed, "judgments": s.acknowledged,
                   "judgments_per_s": round(s.judgments_per_s, 1),
                   "client_cpu_ms_per_judgment": round(s.cpu_ms_per_judgment or 0, 2),
                   "server_cpu_ms_per_judgment": round(1000 * server_cpu / max(s.acknowledged, 1), 2),
                   "retries": s.retries, "reloads": s.reloads, "failures": len(s.failures)}
            rows.append(row)
            print(row, flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
