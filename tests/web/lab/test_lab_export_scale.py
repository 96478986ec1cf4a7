"""The export is a consistent snapshot and streams: memory does not grow with the number of judgments."""

import threading
import tracemalloc
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from lab_factories import build_world


def _bulk_judgments(w, n: int, name: str) -> None:
    """``n`` judgments by one participant spread over the normal trials (bulk insert, fast)."""
    from webapp.crowd.models import AssignmentItem, Judgment

    p = w.participant(name)
    a = w.assignments[p.pk]
    items = AssignmentItem.objects.bulk_create(
        AssignmentItem(assignment=a, position=i, trial=w.normal[i % 6], is_repeat=i >= 6, left_is_a=True)
        for i in range(n)
    )
    Judgment.objects.bulk_create(
        (Judgment(assignment=a, item=it, trial=it.trial,
                  chosen=it.trial.stimulus_b if i % 3 else it.trial.stimulus_a,
                  chosen_side="right" if i % 3 else "left", left_stimulus=it.trial.stimulus_a,
                  response_ms=900, client_uuid=uuid.uuid4()) for i, it in enumerate(items)),
        batch_size=2000,
    )


def _peak_export(exp, out) -> int:
    tracemalloc.start()
    try:
        call_command("export_dataset", exp.slug, "--out", str(out), verbosity=0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
@pytest.mark.django_db
def test_export_memory_does_not_grow_with_judgments(media, users, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("server-side cursors (streaming) need PostgreSQL")
    small = build_world(users["alice"], slug="small")
    big = build_world(users["alice"], slug="big")
    _bulk_judgments(small, 1_000, "s")
    _bulk_judgments(big, 20_000, "b")
    peak_small = _peak_export(small.exp, tmp_path / "small")
    peak_big = _peak_export(big.exp, tmp_path / "big")
    lines = sum(1 for _ in open(tmp_path / "big" / "judgments.jsonl"))
    assert lines == 20_000
    # 20× the judgments: the peak may grow a little (chunk buffers), never in proportion
    print(f"export peak traced memory: 1k judgments {peak_small / 1e6:.2f} MB, 20k {peak_big / 1e6:.2f} MB")
    assert peak_big < 2 * peak_small + 2_000_000, (peak_small, peak_big)


@pytest.mark.django_db(transaction=True)
def test_snapshot_ignores_judgments_committed_meanwhile(media, users):
    """Inside ``snapshot()`` a judgment committed by another connection is not seen (REPEATABLE READ)."""
    if connection.vendor != "postgresql":
        pytest.skip("REPEATABLE READ needs PostgreSQL")
    from webapp.crowd.models import Judgment
    from webapp.lab.export import snapshot

    w = build_world(users["alice"])
    p = w.participant("x")
    w.judge(p, w.normal[0], "a")

    def other_writer():
        try:
            w.judge(p, w.normal[1], "b")
        finally:
            connection.close()

    with snapshot():
        assert Judgment.objects.count() == 1
        t = threading.Thread(target=other_writer)
        t.start()
        t.join()
        assert Judgment.objects.count() == 1  # committed meanwhile, invisible in the snapshot
    assert Judgment.objects.count() == 2
