"""What the researcher dashboard costs on a large study: the study page, its 6 plots and the study list.

    python -m bench.dashboard_cost                      # 100,000 judgments
    python -m bench.dashboard_cost --judgments 10000 --profile

Builds a study on a scratch PostgreSQL database (``--db``, created on DATABASE_URL's server or
``--admin-url``'s, dropped at the end unless ``--keep``): the demo experiment (``manage.py load_demo``: 4
references × 5 codec settings, 40 normal trials, 4 sentinel and 4 practice trials), then ``--judgments /
50`` participants (2,000 at 100k) with one completed assignment each of 50 items (2 practice, 40 normal, 4
sentinels, 4 planned repeats with the sides swapped) and a judgment on every item, bulk-inserted.
Answers follow the settings' quality (a Thurstone observer on a latent scale rising with log bpp, with a
sharpness per participant); about 5 % of the participants answer at random and fast (QC flags them), about
2 % are ``simulated``, the rest ``prolific``.

Then it times, in this process through Django's test client logged in as a superuser (the whole request
cycle, middleware included, DEBUG=0), each request ``--repeat`` times: the study list, the study page and
each of its 6 plots (PNG), printing seconds per request and the statements sent: once with the cache
emptied before each request (``cold``: each computes what it shows, as when nothing is stored or, in a
study of up to ``summary.INLINE_MAX`` judgments, after every new judgment), then ``--repeat`` times with
it filled (``warm``: the page and plots of a study whose figures are stored). The cache is this process's
LocMem (REDIS_URL unset for the run).
``--profile`` prints a cProfile summary of one study page with the cache empty: the top 25 by cumulative
time among the project's, the template engine's, the ORM's and the numeric libraries' frames (the request
plumbing above them, test client and middleware, left out), then the top 15 by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import tempfile
import time
import uuid
from pathlib import Path

from webapp.harness import admin_sql, scratch_url

ROOT = Path(__file__).resolve().parents[1]

PROFILED = r"webapp/|learning/|django/(template|db)/|matplotlib/|numpy/|scipy/"  # frames worth listing
PLOTS = ("timeline", "coverage", "qc", "winrate", "scale", "agreement")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judgments", type=int, default=100_000, help="judgments in the study (default 100,000)")
    ap.add_argument("--admin-url", default=None,
                    help="an existing database for CREATE/DROP DATABASE (default: database postgres on "
                         "DATABASE_URL's server, else postgres://postgres@127.0.0.1:5432/postgres)")
    ap.add_argument("--db", default="h16dash_bench", help="scratch database name (default h16dash_bench)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept scratch database as it is")
    ap.add_argument("--repeat", type=int, default=2, help="warm passes after the cold one (default 2)")
    ap.add_argument("--profile", action="store_true", help="cProfile one cold study page (top 25)")
    a = ap.parse_args()

    if a.admin_url is None:  # the scratch database goes beside DATABASE_URL's, which need not exist yet
        server = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/"
        a.admin_url = scratch_url(server, "postgres")

    def admin(sql: str) -> None:
        admin_sql(a.admin_url, sql)

    if not a.reuse:
        admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')
        admin(f'CREATE DATABASE "{a.db}"')
    tmp = Path(tempfile.mkdtemp(prefix="dashbench-"))
    os.environ.update(DEBUG="0", SECRET_KEY="bench-" + uuid.uuid4().hex * 2, ALLOWED_HOSTS="testserver",
                      SECURE_SSL_REDIRECT="0", SECURE_COOKIES="0",
                      DATABASE_URL=scratch_url(a.admin_url, a.db),
                      MEDIA_ROOT=str(tmp / "media"), STATIC_ROOT=str(tmp / "static"),
                      DJANGO_SETTINGS_MODULE="webapp.settings")
    os.environ.pop("REDIS_URL", None)  # an in-process cache: the bench must not share one with others
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG=0 serves hashed names
        if not a.reuse:
            t0 = time.perf_counter()
            build_study(a.judgments)
            print(f"built the study in {time.perf_counter() - t0:.1f} s")
        measure(a)
    finally:
        from django.db import connections

        connections.close_all()
        if not a.keep:
            admin(f'DROP DATABASE IF EXISTS "{a.db}" WITH (FORCE)')


def build_study(judgments: int, seed: int = 0) -> None:
    """The demo study with ``judgments // 50`` participants × 50 judged items, bulk-inserted."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone
    from scipy.special import ndtr

    from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant
    from webapp.experiments.models import Experiment, Trial

    call_command("migrate", verbosity=0)
    call_command("load_demo", stdout=io.StringIO(), stderr=io.StringIO())
    exp = Experiment.objects.get(slug="demo")
    get_user_model().objects.create_superuser("benchroot", "root@example.org", "pw")
    trials = list(Trial.objects.filter(experiment=exp).select_related("stimulus_a", "stimulus_b"))
    normal = [t for t in trials if t.kind == "normal"]
    sentinel = [t for t in trials if t.kind == "sentinel"]
    practice = [t for t in trials if t.kind == "practice"]
    quality = {}  # latent quality (JOD-like) per stimulus: rises with log bpp, the original on top
    for t in trials:
        for s in (t.stimulus_a, t.stimulus_b):
            quality[s.pk] = 4.0 if s.codec == "original" else 1.5 * math.log2(max(s.bpp or 0.05, 0.05)) + (
                0.3 if s.codec == "webp" else 0.0)
    rng = np.random.default_rng(seed)
    n_part = max(judgments // 50, 2)
    now = timezone.now()
    start = now - timezone.timedelta(hours=6)
    with transaction.atomic():
        parts = Participant.objects.bulk_create([
            Participant(experiment=exp, platform="simulated" if k % 50 == 7 else "prolific",
                        platform_id=f"BENCH{k:07d}", study_id="S1", session_id=f"SES{k}", consent_at=start)
            for k in range(n_part)])
        asgs = Assignment.objects.bulk_create([
            Assignment(participant=p, experiment=exp, state="completed", device={"dpr": 1}, expires_at=now,
                       completed_at=now) for p in parts], batch_size=2000)
        items, plan = [], []  # plan: (trial, chosen, left_is_a, ms) per item
        for k, asg in enumerate(asgs):
            bad = k % 20 == 3  # random and fast: flagged by QC
            sens = rng.lognormal(0.0, 0.3)  # how sharply this participant sees differences
            main = normal + sentinel
            order = [(practice[i], False) for i in rng.choice(len(practice), 2, replace=False)]
            order += [(main[i], False) for i in rng.permutation(len(main))]
            for i in rng.choice(len(normal), 4, replace=False):  # repeats: somewhere after the first showing
                first = next(j for j, (t, _) in enumerate(order) if t.pk == normal[i].pk)
                order.insert(int(rng.integers(first + 1, len(order) + 1)), (normal[i], True))
            first_left: dict[int, bool] = {}  # trial -> left_is_a of its first showing
            for pos, (t, rep) in enumerate(order):
                qa, qb = quality[t.stimulus_a_id], quality[t.stimulus_b_id]
                p_a = 0.5 if bad else float(ndtr(sens * (qa - qb) / math.sqrt(2)))
                chosen = t.stimulus_a if rng.random() < p_a else t.stimulus_b
                left_is_a = (not first_left[t.pk]) if rep else bool(rng.random() < 0.5)
                first_left.setdefault(t.pk, left_is_a)
                ms = int(rng.lognormal(math.log(250 if bad else 1400), 0.5))
                items.append(AssignmentItem(assignment=asg, position=pos, trial=t, is_repeat=rep,
                                            is_practice=t.kind == "practice", left_is_a=left_is_a))
                plan.append((asg, t, chosen, left_is_a, ms))
        AssignmentItem.objects.bulk_create(items, batch_size=5000)
        rows = []
        for item, (asg, t, chosen, left_is_a, ms) in zip(items, plan, strict=True):
            left = t.stimulus_a if left_is_a else t.stimulus_b
            rows.append(Judgment(assignment=asg, item=item, trial=t, chosen=chosen,
                                 chosen_side="left" if chosen.pk == left.pk else "right", left_stimulus=left,
                                 response_ms=ms, client_uuid=uuid.uuid4(), client_created=now))
        Judgment.objects.bulk_create(rows, batch_size=5000)
        with connection.cursor() as c:  # spread the server times over the 6 hours (the timeline plot)
            c.execute(f"UPDATE {Judgment._meta.db_table} SET created = %s + (id - (SELECT min(id) FROM "
                      f"{Judgment._meta.db_table})) * interval '1 second' * %s",
                      [start, 6 * 3600 / max(len(rows), 1)])
    with connection.cursor() as c:
        c.execute("ANALYZE")
    print(f"{n_part} participants, {len(rows)} judgments ({len(normal)} normal, {len(sentinel)} sentinel, "
          f"{len(practice)} practice trials)")


def measure(a: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from webapp.experiments.models import Experiment

    get_wsgi_application()
    exp = Experiment.objects.get(slug="demo")
    client = Client()
    client.force_login(get_user_model().objects.filter(is_superuser=True).first())
    urls = [("study list", reverse("lab:index")), ("study page", reverse("lab:experiment", args=[exp.slug]))]
    urls += [(f"plot {n}", reverse("lab:plot", args=[exp.slug, n, "png"])) for n in PLOTS]
    from webapp.crowd.models import Judgment

    print(f"{Judgment.objects.filter(trial__experiment=exp).count()} judgments in the study")

    def get(url: str) -> tuple[float, int]:
        with CaptureQueriesContext(connection) as q:
            t0 = time.perf_counter()
            r = client.get(url)
            dt = time.perf_counter() - t0
        assert r.status_code == 200, (url, r.status_code)
        return dt, len(q)

    get(urls[0][1])  # the first request loads the middleware (whitenoise's file scan)
    if a.profile:
        cache.clear()
        prof = cProfile.Profile()
        prof.enable()
        dt, _ = get(urls[1][1])
        prof.disable()
        print(f"\nprofile of one cold study page ({dt:.2f} s):")
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(PROFILED, 25)  # below the request plumbing
        stats.sort_stats("tottime").print_stats(15)
        print(out.getvalue())
    passes = ["cold"] + [f"warm {k + 1}" for k in range(a.repeat)]
    times: dict[str, list[float]] = {name: [] for name, _ in urls}
    queries: dict[str, list[int]] = {name: [] for name, _ in urls}
    for label in passes:
        for name, url in urls:
            if label == "cold":
                cache.clear()  # each request finds nothing stored: it computes what it shows
            dt, nq = get(url)
            times[name].append(dt)
            queries[name].append(nq)
    print("\nseconds per request (statements sent); cold: the cache emptied before each request")
    print(f"{'request':<16} " + "  ".join(f"{p:>13}" for p in passes))
    for name, _ in urls:
        print(f"{name:<16} " + "  ".join(f"{t:8.3f} ({n:>2})" for t, n in zip(times[name], queries[name])))
    print(f"{'page + 6 plots':<16} " + "  ".join(
        f"{sum(times[n][k] for n, _ in urls[1:]):8.3f}     " for k in range(len(passes))))


if __name__ == "__main__":
    main()
