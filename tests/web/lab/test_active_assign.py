"""Active sampling at entry (webapp.crowd.active via create_assignment): the balanced mode's guarantees
and a bounded number of extra queries (issue 18)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from webapp.crowd import active
from webapp.crowd.assign import create_assignment
from webapp.crowd.models import Participant, TrialSlots
from webapp.experiments.sampling import set_sampling_mode


def _arrive(exp, name):
    p = Participant.objects.create(experiment=exp, platform="prolific", platform_id=name,
                                   consent_at=timezone.now())
    return create_assignment(exp.pk, p)


def _normal(a):
    return [i.trial_id for i in a.items.filter(is_repeat=False, is_practice=False, trial__kind="normal")]


@pytest.mark.django_db
def test_active_entry_keeps_balanced_guarantees_and_costs_few_queries(world):
    exp = world.exp
    exp.trials_per_assignment = 4
    exp.save()
    active._STATES.clear()
    with CaptureQueriesContext(connection) as balanced:
        _arrive(exp, "b0")
    set_sampling_mode(exp, "active")
    for i, t in enumerate(world.normal):  # some judgments, so the posterior is not flat
        p = world.participant(f"j{i}")
        world.judge(p, t, "b" if i % 3 else "a")
    _arrive(exp, "warm")  # first active entry in this process builds the posterior (2 queries)
    with CaptureQueriesContext(connection) as act:
        a = _arrive(exp, "a1")
    trials = _normal(a)
    assert len(trials) == 4 and len(set(trials)) == 4
    assert set(trials) <= {t.pk for t in world.normal}
    # one query more than balanced (the judgments since the last entry)
    assert len(act) <= len(balanced) + 1, [q["sql"][:80] for q in act.captured_queries]
    # slots: every first showing counted once, as in balanced mode
    held = dict(TrialSlots.objects.filter(trial__experiment=exp).values_list("trial_id", "held"))
    assert sum(held.values()) == 4 * 3
    # more arrivals than trials per pair: all 6 trials used, least-held ones first within a setting pair
    for k in range(6):
        assert len(set(_normal(_arrive(exp, f"x{k}")))) == 4


@pytest.mark.django_db
def test_choose_trials_excludes_what_the_participant_had(world):
    exp = world.exp
    set_sampling_mode(exp, "active")
    active._STATES.clear()
    allowed = {t.pk: 0 for t in world.normal[:4]}
    got = active.choose_trials(exp.pk, allowed, 10)
    assert sorted(got) == sorted(allowed)  # fewer than asked: all that are allowed, each once
    got = active.choose_trials(exp.pk, allowed, 2)
    assert len(got) == 2 and set(got) <= set(allowed)


@pytest.mark.django_db
def test_site_uses_the_benched_design(world, monkeypatch):
    """The entry path asks learning.scaling.design for its default design (the one bench/active_sampling.py
    measures as active:variance:mst), with the slots handed out as pending information."""
    from learning.scaling import design

    seen = []
    real = design.choose

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(design, "choose", spy)
    set_sampling_mode(world.exp, "active")
    active._STATES.clear()
    held = {t.pk: 1 for t in world.normal}
    assert len(active.choose_trials(world.exp.pk, held, 3)) == 3
    assert seen and all(k["criterion"] == design.CRITERION == "variance" for k in seen)
    assert all(k["strategy"] == design.STRATEGY == "mst" for k in seen)
    assert seen[0]["pending"].sum() == len(world.normal)  # one slot held per trial, none judged yet
