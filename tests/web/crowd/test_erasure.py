"""Erasure by the researcher (command, study page, REST API) and the retention of platform ids: the
judgments go, the slot counts and offers follow, a record naming nobody stays, later exports count it,
the study page's cached figures follow, and nothing changes for an unknown participant or another
researcher's study."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.web.conftest import enter
from webapp.crowd.assign import count_slots
from webapp.crowd.models import Assignment, AssignmentItem, Erasure, Judgment, Participant, TrialSlots
from webapp.lab.export import opaque_id


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.CROWD_RATE_LIMIT = 0
    cache.clear()


def judge_all(a) -> int:
    c = Client()
    for item in a.items.order_by("position"):
        body = {"uuid": str(uuid.uuid4()), "position": item.position, "choice": "left", "response_ms": 900}
        r = c.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                   headers={"X-Assignment-Token": str(a.token)})
        assert r.status_code == 201
    return a.items.count()


def normal_trials(a) -> set[int]:
    return set(a.items.filter(trial__kind="normal", is_repeat=False).values_list("trial_id", flat=True))


def slots(exp) -> dict[int, int]:
    return dict(TrialSlots.objects.filter(trial__experiment=exp).values_list("trial_id", "held"))


def rows(exp) -> dict:
    """Every row an erasure of ``exp`` could change."""
    return {"participants": list(Participant.objects.order_by("pk").values()),
            "assignments": list(Assignment.objects.order_by("pk").values_list("pk", "state")),
            "items": AssignmentItem.objects.count(),
            "judgments": list(Judgment.objects.order_by("pk").values_list("pk", flat=True)),
            "slots": slots(exp), "erasures": Erasure.objects.count()}


@pytest.fixture
def study(experiment_factory):
    """6 normal trials, 2 per assignment, no sentinels or repeats: three participants hold every trial once
    (A, B, C), each judging all of theirs."""
    exp = experiment_factory(slug="erase-me", platform="prolific", trials_per_assignment=2, sentinel_rate=0,
                             repeat_rate=0, completion_url="https://app.prolific.com/submissions/complete")
    people = {}
    for name in ("A", "B", "C"):
        a = enter(Client(), exp, PROLIFIC_PID=f"PID-{name}", STUDY_ID="S", SESSION_ID=f"X-{name}")
        judge_all(a)
        people[name] = a
    assert set(slots(exp).values()) == {1}
    return exp, people


def test_command_erases_and_the_freed_trials_are_offered_again(study):
    exp, people = study
    a = people["A"]
    freed, judged = normal_trials(a), a.judgments.count()
    call_command("erase_participant", exp.slug, "--platform-id", "PID-A", "--reason", "asked by email",
                 verbosity=0)
    assert not Participant.objects.filter(platform_id="PID-A").exists()
    assert not Judgment.objects.filter(assignment_id=a.pk).exists()
    assert not Assignment.objects.filter(pk=a.pk).exists()
    assert Judgment.objects.count() == sum(p.items.count() for p in (people["B"], people["C"]))
    # the counters are the items' again: the trials only A held are free
    assert slots(exp) == count_slots(exp)
    assert {t for t, n in slots(exp).items() if n == 0} == freed
    # a new participant is offered exactly the freed trials (the least held)
    d = enter(Client(), exp, PROLIFIC_PID="PID-D", STUDY_ID="S", SESSION_ID="X-D")
    assert normal_trials(d) == freed
    record = Erasure.objects.get()
    assert (record.kind, record.via, record.by, record.reason, record.judgments, record.assignments) == (
        "erasure", "command", None, "asked by email", judged, 1)
    stored = json.dumps(list(Erasure.objects.values()), default=str)
    for secret in ("PID-A", "X-A", opaque_id("platform", "prolific:PID-A"), str(a.token)):
        assert secret not in stored


def test_command_refuses_what_it_cannot_erase(study):
    exp, _ = study
    before = rows(exp)
    with pytest.raises(CommandError, match="no participant with this platform id"):
        call_command("erase_participant", exp.slug, "--platform-id", "PID-NOBODY")
    with pytest.raises(CommandError, match="unknown experiment"):
        call_command("erase_participant", "no-such-study", "--platform-id", "PID-A")
    with pytest.raises(CommandError, match="--platform-id: not valid UTF-8"):
        call_command("erase_participant", exp.slug, "--platform-id", "PID-\udce9")
    with pytest.raises(CommandError, match="no participant with this platform id"):
        call_command("erase_participant", exp.slug, "--platform-id", "PID-A", "--platform", "mturk")
    assert rows(exp) == before
    call_command("erase_participant", exp.slug, "--platform-id", "PID-A", verbosity=0)
    with pytest.raises(CommandError, match="erased already"):  # a second time: nothing more
        call_command("erase_participant", exp.slug, "--platform-id", "PID-A")
    assert Erasure.objects.count() == 1


def test_erasure_blanks_the_worker_id_of_recruiting_decisions(study):
    from webapp.recruit.models import Decision

    exp, _ = study
    kept = Decision.objects.create(experiment=exp, platform="prolific", submission_id="SUB-B",
                                   worker_id="PID-B", action="approve", request_token="t-b")
    gone = Decision.objects.create(experiment=exp, platform="prolific", submission_id="SUB-A",
                                   worker_id="PID-A", action="approve", request_token="t-a")
    call_command("erase_participant", exp.slug, "--platform-id", "PID-A", verbosity=0)
    gone.refresh_from_db()
    kept.refresh_from_db()
    assert (gone.worker_id, gone.submission_id) == ("", "SUB-A") and kept.worker_id == "PID-B"


def test_next_export_counts_withdrawn_and_erased_participants(study, tmp_path):
    exp, people = study
    r = Client().post(f"/a/{people['B'].token}/withdraw", json.dumps({"confirm": True}),
                      content_type="application/json", headers={"X-Assignment-Token": str(people["B"].token)})
    assert r.status_code == 200
    call_command("erase_participant", exp.slug, "--platform-id", "PID-A", verbosity=0)
    call_command("export_dataset", exp.slug, "--out", str(tmp_path / "ds"), verbosity=0)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["participants_withdrawn"], counts["participants_erased"]) == (1, 1)
    assert counts["participants"] == 1
    assert counts["judgments_in_log"] == people["C"].items.count()
    assert "withdrew" in manifest["erasures"]
    log = (tmp_path / "ds" / "judgments.csv").read_text()
    assert opaque_id("platform", "prolific:PID-A") not in log
    assert opaque_id("platform", "prolific:PID-C") in log


def test_study_page_figures_follow_an_erasure(study):
    """The cached summary is stamped with the erasures and dropped by one: the QC table loses the row at
    once, and a later summary of fewer judgments is still stored (not refused as older)."""
    from webapp.lab import summary

    exp, people = study
    before = summary.get_summary(exp)
    pid = people["A"].participant_id
    assert pid in {p.participant_id for p in before.qc}
    call_command("erase_participant", exp.slug, "--platform-id", "PID-A", verbosity=0)
    assert summary.stamp(exp) != before.stamp and summary.stamp(exp).erasures == 1
    after = summary.get_summary(exp)
    assert pid not in {p.participant_id for p in after.qc} and after.judgments < before.judgments
    assert summary.get_summary(exp) is not None and cache.get(summary._key(exp.pk)).stamp == after.stamp


# --- the study page --------------------------------------------------------------------------------------


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob-erase", password="pw-bob")


def test_dashboard_erasure_owner_only(study, bob):
    exp, people = study
    pid = people["A"].participant_id
    url = reverse("lab:erase-participant", args=[exp.slug, pid])
    before = rows(exp)
    anon = Client()
    for send in (anon.get, anon.post):
        r = send(url)
        assert r.status_code == 302 and r["Location"].startswith(reverse("lab:login"))
    other = Client()
    other.force_login(bob)
    assert other.get(url).status_code == 404
    assert other.post(url, {"reason": "not mine"}).status_code == 404
    owner = Client()
    owner.force_login(exp.owner)
    assert owner.post(reverse("lab:erase-participant", args=[exp.slug, 10**9])).status_code == 404
    assert owner.post(reverse("lab:erase-participant", args=[exp.slug, 10**30])).status_code == 404
    assert rows(exp) == before
    page = owner.get(reverse("lab:experiment", args=[exp.slug])).content.decode()
    assert f'action="{url}"' in page  # the row's button
    confirm = owner.get(url)
    assert confirm.status_code == 200 and b'id="erase-confirm"' in confirm.content
    assert f"{people['A'].items.count()} judgments".encode() in confirm.content
    assert rows(exp) == before  # the confirm page changes nothing
    r = owner.post(url, {"reason": "withdrew by email"})
    assert r.status_code == 302 and r["Location"].endswith("#erasures")
    assert not Participant.objects.filter(pk=pid).exists() and slots(exp) == count_slots(exp)
    record = Erasure.objects.get()
    assert (record.by, record.via, record.reason) == (exp.owner, "dashboard", "withdrew by email")
    page = owner.get(reverse("lab:experiment", args=[exp.slug])).content.decode()
    assert "withdrew by email" in page and f'action="{url}"' not in page
    assert owner.post(url).status_code == 404  # again: nothing left to erase


def test_dashboard_refuses_a_participant_of_another_study(study, experiment_factory):
    exp, _ = study
    elsewhere = enter(Client(), experiment_factory(slug="other-study"))
    owner = Client()
    owner.force_login(exp.owner)  # owns both studies: still, the URL names the study
    before = rows(exp)
    r = owner.post(reverse("lab:erase-participant", args=[exp.slug, elsewhere.participant_id]))
    assert r.status_code == 404 and rows(exp) == before


# --- the REST API ----------------------------------------------------------------------------------------


def _api(user) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return c


def test_api_erasure(study, bob):
    exp, people = study
    api = _api(exp.owner)
    qc = api.get(f"/api/experiments/{exp.slug}/qc/").json()["participants"]
    opaque = opaque_id("participant", str(people["A"].participant_id))
    assert opaque in {p["participant"] for p in qc}
    url = f"/api/experiments/{exp.slug}/participants/{opaque}/"
    before = rows(exp)
    assert APIClient().delete(url).status_code == 401
    assert _api(bob).delete(url).status_code == 404
    assert _api(bob).post(f"/api/experiments/{exp.slug}/participants/erase/", {"platform_id": "PID-B"},
                          format="json").status_code == 404
    assert api.delete(f"/api/experiments/{exp.slug}/participants/{'0' * 16}/").status_code == 404
    assert api.delete(f"/api/experiments/{exp.slug}/participants/not-an-id/").status_code == 404
    assert api.delete(url, {"reason": 5}, format="json").status_code == 400
    assert rows(exp) == before
    n = people["A"].items.count()
    r = api.delete(url, {"reason": "asked us"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["erasure"]["judgments"] == n
    assert not Participant.objects.filter(pk=people["A"].participant_id).exists()
    assert api.delete(url).status_code == 404  # again
    # by the id the participant knows
    r = api.post(f"/api/experiments/{exp.slug}/participants/erase/", {"platform_id": "PID-B"}, format="json")
    assert r.status_code == 200 and not Participant.objects.filter(platform_id="PID-B").exists()
    assert api.post(f"/api/experiments/{exp.slug}/participants/erase/", {"platform_id": "PID-B"},
                    format="json").status_code == 404
    assert [(e.via, e.by, e.reason) for e in Erasure.objects.all()] == [
        ("api", exp.owner, "asked us"), ("api", exp.owner, "")]
    assert slots(exp) == count_slots(exp)


def test_api_schema_lists_the_erasure_endpoints(db):
    import yaml
    from drf_spectacular.validation import validate_schema

    schema = yaml.safe_load(APIClient().get("/api/schema/").content)
    validate_schema(schema)
    assert "delete" in schema["paths"]["/api/experiments/{slug}/participants/{participant}/"]
    assert "post" in schema["paths"]["/api/experiments/{slug}/participants/erase/"]


# --- platform ids after N days ------------------------------------------------------------------------------


def _age(a, days: int) -> None:
    past = timezone.now() - timedelta(days=days)
    Participant.objects.filter(pk=a.participant_id).update(created=past)
    Assignment.objects.filter(pk=a.pk).update(created=past, expires_at=past + timedelta(hours=1),
                                              state="completed")


def test_platform_ids_are_replaced_after_the_retention_period(experiment_factory, settings):
    exp = experiment_factory(platform="mturk", slug="old-hits")
    link = {"hitId": "H1", "turkSubmitTo": "https://workersandbox.mturk.com"}
    old = enter(Client(), exp, workerId="W-OLD", assignmentId="A-OLD", **link)
    old2 = enter(Client(), exp, workerId="W-OLD2", assignmentId="A-OLD2", **link)
    recent = enter(Client(), exp, workerId="W-NEW", assignmentId="A-NEW", **link)
    judged = judge_all(old)
    _age(old, 40)
    _age(old2, 40)
    _age(recent, 10)
    settings.CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS = 0
    call_command("erase_platform_ids", verbosity=0)  # off: nothing
    assert set(Participant.objects.values_list("platform_id", flat=True)) == {"W-OLD", "W-OLD2", "W-NEW"}
    settings.CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS = 30
    call_command("erase_platform_ids", verbosity=0)
    ids = dict(Participant.objects.values_list("pk", "platform_id"))
    assert ids[recent.participant_id] == "W-NEW"
    for a in (old, old2):
        p = Participant.objects.get(pk=a.participant_id)
        assert p.platform_id.startswith("erased:") and len(p.platform_id) == len("erased:") + 32
        assert (p.study_id, p.session_id) == ("", "") and p.ids_erased_at is not None
        assert Assignment.objects.get(pk=a.pk).mturk_assignment_id == ""
    assert ids[old.participant_id] != ids[old2.participant_id]  # the unique constraint holds
    assert Judgment.objects.filter(assignment=old).count() == judged  # the judgments stay
    again = dict(Participant.objects.values_list("pk", "platform_id"))
    call_command("erase_platform_ids", verbosity=0)  # nothing left to do: nothing changes
    assert dict(Participant.objects.values_list("pk", "platform_id")) == again
    # the worker returning with the old id is a new participant (nothing links them to the old rows)
    back = enter(Client(), exp, workerId="W-OLD", assignmentId="A-BACK", **link)
    assert back.participant_id != old.participant_id


def test_retention_keeps_participants_with_an_open_assignment(experiment_factory):
    exp = experiment_factory(slug="still-open")
    a = enter(Client(), exp)
    past = timezone.now() - timedelta(days=40)
    Participant.objects.filter(pk=a.participant_id).update(created=past)
    Assignment.objects.filter(pk=a.pk).update(created=past, expires_at=timezone.now() + timedelta(hours=1))
    call_command("erase_platform_ids", "--days", "30", verbosity=0)
    assert not Participant.objects.get(pk=a.participant_id).platform_id.startswith("erased:")


def test_retention_setting_must_be_a_number(settings):
    settings.CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS = "ten"
    with pytest.raises(CommandError, match="CROWD_ERASE_PLATFORM_IDS_AFTER_DAYS: expected a whole number"):
        call_command("erase_platform_ids")
