"""Fixtures for the researcher-side tests (factories in lab_factories.py)."""

import pytest
from lab_factories import build_world


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def users(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw-alice")
    bob = django_user_model.objects.create_user("bob", password="pw-bob")
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root")
    return {"alice": alice, "bob": bob, "root": root}


@pytest.fixture
def world(db, media, users):
    return build_world(users["alice"])


@pytest.fixture
def judged(world):
    """Three participants with known QC (see test_qc): good, bad (flagged 3 ways), borderline fast."""
    w = world
    n = w.normal  # 6 normal trials: 0-2 on ref0 (train), 3-5 on ref1 (test)
    good, bad, edge = w.participant("good"), w.participant("bad", "mturk"), w.participant("edge", "open")
    # good: practice wrong and fast (must be ignored), 6 normal, 2 sentinels right, 1 consistent repeat
    # (one repeat is below min_repeats = 2, so consistency is reported but not judged).
    w.judge(good, w.practice, "b", ms=50)
    for t, c in zip(n, "aabbab"):
        w.judge(good, t, c)
    w.judge(good, w.sentinel[0], "b")
    w.judge(good, w.sentinel[1], "b")
    w.judge(good, n[0], "a", repeat=True, left_is_a=False)
    # bad: 4 normal (2 fast), 2 sentinels wrong (1 fast), 2 inconsistent repeats -> 3/8 fast.
    for t, c, ms in zip(n[:4], "bbba", [100, 100, 900, 900]):
        w.judge(bad, t, c, ms=ms)
    w.judge(bad, w.sentinel[0], "a", ms=100)
    w.judge(bad, w.sentinel[1], "a", ms=800)
    w.judge(bad, n[0], "a", repeat=True, left_is_a=False)
    w.judge(bad, n[1], "a", repeat=True, left_is_a=False)
    # edge: 3 normal + 1 sentinel right; 1 of 4 fast = 0.25 = the maximum, so not flagged.
    for t, c, ms in zip([n[0], n[1], n[5]], "aba", [250, 700, 800]):
        w.judge(edge, t, c, ms=ms)
    w.judge(edge, w.sentinel[1], "b", ms=600)
    return {"world": w, "good": good, "bad": bad, "edge": edge}
