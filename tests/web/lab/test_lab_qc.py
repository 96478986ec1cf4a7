"""QC numbers on a hand-made case (see the ``judged`` fixture in conftest)."""

import pytest

from webapp.lab.qc import QC_DEFAULTS, compute_qc, flagged_ids, qc_rules

pytestmark = pytest.mark.django_db


def test_qc_numbers_by_hand(judged):
    qc = compute_qc(judged["world"].exp)
    good, bad, edge = (qc[judged[k].pk] for k in ("good", "bad", "edge"))

    # good: practice (wrong, 50 ms) ignored; 6 normal + 2 sentinels + 1 repeat
    assert good.judgments == 9
    assert (good.sentinels, good.sentinel_correct, good.sentinel_accuracy) == (2, 2, 1.0)
    assert (good.repeats, good.repeat_consistency) == (1, 1.0)
    assert good.fast == 0 and good.fast_share == 0
    assert good.median_response_ms == 1000
    assert not good.flagged and good.reasons == []

    assert bad.judgments == 8
    assert bad.sentinel_accuracy == 0.0
    assert (bad.repeats, bad.repeat_consistent) == (2, 0)
    assert bad.fast == 3 and bad.fast_share == pytest.approx(3 / 8)
    assert bad.median_response_ms == 850
    assert bad.flagged and len(bad.reasons) == 3
    assert any("sentinel" in r for r in bad.reasons)
    assert any("repeat" in r for r in bad.reasons)
    assert any("300 ms" in r for r in bad.reasons)

    # edge: 1 of 4 fast = 0.25, equal to the maximum share -> not flagged; no repeats -> None
    assert edge.judgments == 4 and edge.fast_share == 0.25
    assert edge.repeat_consistency is None and edge.sentinel_accuracy == 1.0
    assert edge.median_response_ms == 650
    assert not edge.flagged

    assert flagged_ids(qc) == {judged["bad"].pk}


def test_spec_overrides_thresholds(judged):
    exp = judged["world"].exp
    exp.spec = {"qc": {"max_fast_share": 0.2, "min_sentinel_accuracy": 0.0}}
    exp.save()
    rules = qc_rules(exp)
    assert rules["max_fast_share"] == 0.2 and rules["min_response_ms"] == 300
    assert rules["min_repeat_consistency"] == QC_DEFAULTS["min_repeat_consistency"]
    qc = compute_qc(exp)
    assert qc[judged["edge"].pk].flagged  # 0.25 > 0.2 now
    assert not any("sentinel" in r for r in qc[judged["bad"].pk].reasons)


def test_participant_without_judgments_is_listed_unflagged(world):
    p = world.participant("idle")
    qc = compute_qc(world.exp)
    assert qc[p.pk].judgments == 0 and not qc[p.pk].flagged and qc[p.pk].median_response_ms is None


def test_qc_never_deletes(judged):
    from webapp.crowd.models import Judgment

    before = Judgment.objects.count()
    compute_qc(judged["world"].exp)
    assert Judgment.objects.count() == before == 9 + 1 + 8 + 4


def test_single_inconsistent_repeat_is_not_enough(judged):
    """min_repeats = 2: a participant with one inconsistent repeat is reported, not flagged for it."""
    w = judged["world"]
    p = w.participant("once")
    w.judge(p, w.normal[2], "a")
    w.judge(p, w.normal[2], "b", repeat=True, left_is_a=False)
    q = compute_qc(w.exp)[p.pk]
    assert q.repeat_consistency == 0.0 and not q.flagged
