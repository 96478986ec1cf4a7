"""Export benchmark: the streamed export against a naive in-memory export, in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python -m bench.lab_export [N ...]

Creates a throw-away test database (``test_<name>``), one experiment per N with N judgments (bulk
inserted), then for each N measures wall time and peak traced Python memory (tracemalloc) of
(a) ``export_experiment`` (streams rows with ``.iterator()`` in a REPEATABLE READ snapshot) and
(b) the baseline: load every judgment row into a list first (``list(queryset)``), then write the same
JSONL. Prints a Markdown table with the ratios baseline / streamed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def bulk(world, n: int) -> None:
    from webapp.crowd.models import AssignmentItem, Judgment

    p = world.participant("bench")
    a = world.assignments[p.pk]
    for start in range(0, n, 10_000):
        items = AssignmentItem.objects.bulk_create(
            AssignmentItem(assignment=a, position=i, trial=world.normal[i % 6], is_repeat=i >= 6)
            for i in range(start, min(n, start + 10_000)))
        Judgment.objects.bulk_create(
            Judgment(assignment=a, item=it, trial=it.trial, chosen=it.trial.stimulus_b,
                     chosen_side="right", left_stimulus=it.trial.stimulus_a, response_ms=900,
                     client_uuid=uuid.uuid4()) for it in items)


def naive(exp, out: Path) -> None:
    from webapp.crowd.models import Judgment

    rows = list(Judgment.objects.filter(trial__experiment=exp)
                .select_related("assignment__participant", "item", "trial__reference")
                .defer("trial__reference__file"))
    with open(out / "judgments.jsonl", "w") as f:
        for j in rows:
            f.write(json.dumps({"judgment": str(j.client_uuid), "participant": j.assignment.participant_id,
                                "trial": j.trial_id, "position": j.item.position, "chosen": j.chosen_id,
                                "side": j.chosen_side, "ms": j.response_ms,
                                "time": j.created.isoformat()}) + "\n")


def measure(fn) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        fn(Path(d) / "t")
        wall = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        tracemalloc.start()
        fn(Path(d) / "m")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return wall, peak / 1e6


def main(sizes: list[int]) -> None:
    import django

    django.setup()
    # after django.setup(): these import the models, which need configured settings
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test.utils import setup_test_environment

    from tests.web.lab.lab_factories import build_world
    from webapp.lab.export import export_experiment

    setup_test_environment()
    media = tempfile.mkdtemp(prefix="bench-media-")
    settings.MEDIA_ROOT = media
    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        owner = User.objects.create_user("bench")
        print(f"database: {connection.vendor}\n")
        print("| judgments | streamed s | naive s | streamed peak MB | naive peak MB | peak naive/streamed |")
        print("|---|---|---|---|---|---|")
        for n in sizes:
            w = build_world(owner, slug=f"bench{n}")
            bulk(w, n)

            def streamed(out: Path, exp=w.exp) -> None:
                export_experiment(exp, out)

            def baseline(out: Path, exp=w.exp) -> None:
                out.mkdir(parents=True)
                naive(exp, out)

            s_wall, s_peak = measure(streamed)
            n_wall, n_peak = measure(baseline)
            print(f"| {n} | {s_wall:.2f} | {n_wall:.2f} | {s_peak:.2f} | {n_peak:.2f} "
                  f"| {n_peak / s_peak:.1f} |")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2_000, 20_000, 100_000])
