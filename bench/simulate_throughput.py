"""simulate_crowd against the production server: judgments/s it sustains, and CPU per judgment on both
sides (issue 15's benchmark; figures in bench/README.md).

On a scratch PostgreSQL database beside ``DATABASE_URL``'s: the fixture images with JPEG at eight
qualities (112 triplet trials, ``--judgments`` each), served by ``python -m webapp.serve`` (granian,
``DEBUG=0``, what ``make serve-prod`` runs, started by ``webapp.harness``) on ``--port``; then
``simulate()`` with ``--base-url`` and a PSNR observer at each ``--concurrency``. Client CPU comes from the
simulation's own rusage, server CPU from the granian processes' CPU times (``webapp.harness``) before and
after.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lab .venv/bin/python -m bench.simulate_throughput
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import django

from webapp import harness

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="4,16", help="comma list of simultaneous participants")
    ap.add_argument("--judgments", type=int, default=10, help="judgments per trial (per round)")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args(argv)
    work = REPO / "var/simulate_throughput"
    work.mkdir(parents=True, exist_ok=True)
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("simulate_throughput needs DATABASE_URL=postgres://... (the scratch database goes "
                         "beside it)")
    admin = harness.scratch_url(base_url, "postgres")
    name = f"simulate_throughput_{secrets.token_hex(4)}"
    db_url = harness.scratch_url(base_url, name)
    harness.admin_sql(admin, f'CREATE DATABASE "{name}"')
    try:
        os.environ.update(DATABASE_URL=db_url, MEDIA_ROOT=str(work / "media"), CROWD_RATE_LIMIT="0")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
        django.setup()
        # after django.setup(): these import the models, which need the settings configured above
        from django.core.management import call_command
        from django.db import connections

        from webapp.experiments.models import Experiment
        from webapp.simcrowd.loop.studies import experiment_file
        from webapp.simcrowd.run import SimConfig, simulate

        call_command("migrate", verbosity=0)
        call_command("import_images", str(REPO / "fixtures/images"), verbosity=0)
        env = {**harness.server_env(db_url, str(work / "media"), str(work / "static"), args.port, None),
               "SECRET_KEY": secrets.token_urlsafe(50), "WEB_BUFFERING_PROXY": "1"}
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
            server = harness.start_server(env, str(work / f"{slug}.log"))
            try:
                time.sleep(2)
                cpu0 = harness.cpu_seconds(server.pid)
                exp = Experiment.objects.get(slug=slug)
                n = exp.trials.filter(kind="normal").count() * args.judgments // 20 + 4
                s = simulate(SimConfig(slug=slug, observer="psnr", participants=n, concurrency=conc,
                                       noise=0.5, seed=k, base_url=f"http://127.0.0.1:{args.port}"))
                server_cpu = harness.cpu_used(cpu0, harness.cpu_seconds(server.pid))["server"]
            finally:
                harness.stop_server(server)
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
    finally:
        connections.close_all()
        harness.admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
