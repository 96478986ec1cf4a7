"""Backups taken while participants judge: ``export_dataset`` is a snapshot, ``make backup`` restores.

Writer threads post judgments through the real judge view (each thread its own database connection,
committed rows) while the main thread runs ``manage.py export_dataset`` and ``make backup``
(pg_dump + media tar). Each export must be internally consistent: manifest counts == rows in the files,
the BAPPS judge fractions and counts == what judgments.csv says, checksums right. The dump must restore
with ``pg_restore`` into a fresh database holding a judgment count between the counts before and after it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import tarfile
import threading
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client

from tests.web.conftest import enter

ROOT = Path(__file__).resolve().parents[3]


class Writers:
    """Threads judging every item of their assignments through the judge view, until stopped."""

    def __init__(self, assignments: list, threads: int = 4):
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.posted = 0
        chunks = [assignments[i::threads] for i in range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(c,)) for c in chunks]

    def _run(self, assignments: list) -> None:
        client = Client()
        try:
            for a in assignments:
                for pos in range(a.n_items):
                    if self.stop.is_set():
                        return
                    body = {"uuid": str(uuid.uuid4()), "position": pos, "response_ms": 600,
                            "choice": "left" if (a.pk + pos) % 3 else "right"}
                    r = client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                                    headers={"X-Assignment-Token": str(a.token)})
                    if r.status_code != 201:
                        self.errors.append(f"{r.status_code} {r.content[:200]!r}")
                    self.posted += 1
        finally:
            connection.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def _judgments(exp) -> int:
    from webapp.crowd.models import Judgment

    return Judgment.objects.filter(trial__experiment=exp).count()


def _check_export(out: Path) -> dict:
    """Assert that one export is internally consistent; returns its manifest counts."""
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    with open(out / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    with open(out / "judgments.csv", newline="") as f:
        log = list(csv.DictReader(f))
    jsonl = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert counts["judgments_in_log"] == len(log) == len(jsonl)
    assert [r["judgment"] for r in log] == [r["judgment"] for r in jsonl]
    assert len({r["judgment"] for r in log}) == len(log)  # no judgment twice
    assert counts["triplets_total"] == len(trials) == sum(counts["triplets"].values())
    per_trial: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # trial -> [n, chose p1]
    for r in log:
        if r["kind"] == "normal":  # BAPPS entries hold normal trials (repeats included), not sentinels
            per_trial[int(r["trial"])][0] += 1
            per_trial[int(r["trial"])][1] += r["chosen"] == "b"
    assert {int(t["trial"]) for t in trials} == set(per_trial)
    assert counts["judgments_in_triplets"] == sum(n for n, _ in per_trial.values())
    slug = manifest["experiment"]["slug"]
    for t in trials:
        n, nb = per_trial[int(t["trial"])]
        assert int(t["n"]) == n and float(t["judge"]) == pytest.approx(nb / n, abs=1e-6)
        base = out / t["split"] / slug
        assert np.load(base / "judge" / f"{t['index']}.npy")[0] == pytest.approx(nb / n, abs=1e-6)
        assert np.load(base / "judge_n" / f"{t['index']}.npy")[0] == n
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel
    return counts


@pytest.fixture
def judging(transactional_db, experiment_factory, settings):
    """A live experiment with 40 open assignments (entered over the test client), ready to be judged."""
    settings.CROWD_RATE_LIMIT = 0
    cache.clear()
    exp = experiment_factory(codecs=("jpeg:10,30,50,70,90",), trials_per_assignment=10,
                             judgments_per_trial=50)
    assignments = []
    for _ in range(40):
        a = enter(Client(), exp)
        a.n_items = a.items.count()
        assignments.append(a)
    return exp, assignments


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_export_during_live_judging_is_a_consistent_snapshot(judging, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the snapshot (REPEATABLE READ) export needs PostgreSQL")
    exp, assignments = judging
    overlapped, exports = 0, []
    with Writers(assignments) as w:
        while _judgments(exp) < 50:  # let the writers get going
            w.stop.wait(0.05)
        for k in range(4):
            before = _judgments(exp)
            call_command("export_dataset", exp.slug, "--out", str(tmp_path / f"ex{k}"), verbosity=0)
            after = _judgments(exp)
            counts = _check_export(tmp_path / f"ex{k}")
            assert before <= counts["judgments_in_log"] <= after
            overlapped += after > before
            exports.append((before, counts["judgments_in_log"], after))
    assert not w.errors, w.errors[:5]
    print(f"\nexports during judging (judgments before, exported, after): {exports}; {w.posted} posted")
    assert overlapped >= 2, f"judgments were not committed while the exports ran: {exports}"
    assert exports[-1][1] > exports[0][1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_backup_during_live_judging_restores(judging, tmp_path, settings):
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump backups need PostgreSQL")
    for tool in ("pg_dump", "pg_restore", "make"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    exp, assignments = judging
    s = connection.settings_dict
    auth = f"{s['USER']}{':' + s['PASSWORD'] if s.get('PASSWORD') else ''}@{s.get('HOST') or '127.0.0.1'}"
    server = f"postgres://{auth}:{s.get('PORT') or 5432}"
    backups = tmp_path / "backups"
    with Writers(assignments) as w:
        while _judgments(exp) < 50:
            w.stop.wait(0.05)
        before = _judgments(exp)
        done = subprocess.run(["make", "-s", "backup", f"DATABASE_URL={server}/{s['NAME']}",
                               f"BACKUP_DIR={backups}", f"MEDIA_ROOT={settings.MEDIA_ROOT}"],
                              cwd=ROOT, capture_output=True, text=True)
        after = _judgments(exp)
    assert done.returncode == 0, done.stderr
    assert not w.errors, w.errors[:5]
    dump, media = done.stdout.split()
    restored = f"{s['NAME']}_restore_{uuid.uuid4().hex[:6]}"
    with connection.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{restored}"')
    try:
        r = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={server}/{restored}",
                            dump], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        q = subprocess.run(["psql", f"{server}/{restored}", "-Atc",
                            "SELECT count(*) FROM crowd_judgment j JOIN crowd_assignment a ON "
                            f"a.id = j.assignment_id JOIN experiments_experiment e ON e.id = a.experiment_id "
                            f"WHERE e.slug = '{exp.slug}'"], capture_output=True, text=True, check=True)
        in_dump = int(q.stdout.strip())
    finally:
        with connection.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
    print(f"\npg_dump during judging: {before} judgments before, {in_dump} in the dump, {after} after")
    assert before <= in_dump <= after
    with tarfile.open(media) as tar:
        names = tar.getnames()
    from webapp.stimuli.models import Stimulus

    stored = Stimulus.objects.filter(decoded__isnull=False).exclude(decoded="").first()
    assert any(n.endswith(stored.decoded.name) for n in names), stored.decoded.name
