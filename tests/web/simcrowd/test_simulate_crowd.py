"""simulate_crowd: simulated observers judging a live study over real HTTP (live server or its own)."""

from __future__ import annotations

import _thread
import io
import json
import signal
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    settings.CROWD_RATE_LIMIT = 0


@pytest.fixture
def study(experiment_factory):
    """20 normal trials (2 references × 10 JPEG pairs); 8 per assignment, sentinels and repeats."""
    return experiment_factory(codecs=("jpeg:5,15,30,50,85",), trials_per_assignment=8, judgments_per_trial=4,
                              sentinel_rate=0.3, repeat_rate=0.3, min_response_ms=300)


def simulate(exp, **opts) -> str:
    out = io.StringIO()
    call_command("simulate_crowd", exp.slug, stdout=out, **opts)
    return out.getvalue()


def _participants(exp):
    from webapp.crowd.models import Participant

    return Participant.objects.filter(experiment=exp)


@pytest.mark.slow
def test_a_weighted_sum_observer_judges_by_its_terms(study, live_server):
    """0.7·PSNR + 0.3·CIEDE2000, each over its spread: a careful such observer agrees with PSNR on pairs of
    one codec's qualities, where both terms order alike."""
    from webapp.crowd.models import Judgment

    out = simulate(study, observer="0.7*psnr+0.3*ciede2000", participants=3, concurrency=3, noise=0.1,
                   seed=7, base_url=live_server.url)
    assert "3 entered, 3 completed" in out and "audit ok" in out, out
    normal = Judgment.objects.filter(trial__experiment=study, trial__kind="normal", item__is_practice=False)
    agree = total = 0
    for j in normal.select_related("trial__stimulus_a", "trial__stimulus_b"):
        a, b = j.trial.stimulus_a, j.trial.stimulus_b
        if abs(a.psnr - b.psnr) > 1.0:
            total += 1
            agree += (j.chosen_id == (a.pk if a.psnr > b.psnr else b.pk))
    assert total >= 10 and agree / total >= 0.85, (agree, total)


@pytest.mark.slow
def test_careful_psnr_observer_agrees_with_psnr_and_lapses_are_flagged(study, live_server):
    from webapp.crowd.models import Judgment
    from webapp.lab.qc import compute_qc

    out = simulate(study, observer="psnr", participants=6, concurrency=3, noise=0.1, seed=1,
                   base_url=live_server.url, agreement_curve=True)
    assert "6 entered, 6 completed" in out and "audit ok" in out, out
    assert "0 of 6 simulated participants flagged" in out, out
    assert "agreement vs judgments per trial" in out and "90% agreement needs" in out
    careful = set(_participants(study).values_list("pk", flat=True))
    assert _participants(study).exclude(platform="simulated").count() == 0
    normal = Judgment.objects.filter(trial__experiment=study, trial__kind="normal", item__is_practice=False)
    agree = total = 0
    for j in normal.select_related("trial__stimulus_a", "trial__stimulus_b"):
        a, b = j.trial.stimulus_a, j.trial.stimulus_b
        if abs(a.psnr - b.psnr) > 1e-9:
            total += 1
            agree += (j.chosen_id == (a.pk if a.psnr > b.psnr else b.pk))
    assert total >= 30 and agree / total >= 0.9, (agree, total)

    out = simulate(study, observer="psnr", participants=4, concurrency=2, noise=0.1, lapse=0.5, seed=2,
                   base_url=live_server.url)
    assert "audit ok" in out, out
    qc = compute_qc(study)
    assert not any(qc[pid].flagged for pid in careful)
    lapsing = [p for pid, p in qc.items() if pid not in careful]
    # fast guesses alone flag a participant with 4+ of ~12 answers fast (seed 2: 3 of the 4, whatever the
    # server's tie-breaks); wrong sentinels and inconsistent repeats usually flag the fourth
    assert len(lapsing) == 4 and sum(p.flagged for p in lapsing) >= 3


def test_pair_mode_observer_compares_with_the_reference_from_the_database(experiment_factory, live_server):
    from webapp.crowd.models import Judgment

    exp = experiment_factory(mode="pair", question="Which looks better?")
    out = simulate(exp, observer="psnr", participants=2, concurrency=2, noise=0.0, seed=6,
                   base_url=live_server.url)
    assert "2 entered, 2 completed" in out and "audit ok" in out, out
    normal = Judgment.objects.filter(trial__experiment=exp, trial__kind="normal", item__is_practice=False)
    assert normal.exists()
    for j in normal.select_related("trial__stimulus_a", "trial__stimulus_b"):  # noiseless, no lapses
        a, b = j.trial.stimulus_a, j.trial.stimulus_b
        assert j.chosen_id == (a.pk if a.psnr > b.psnr else b.pk)


def test_refusals_are_one_line_and_judge_nothing(experiment_factory, live_server, tmp_path,
                                                 participant_client, client):
    from webapp.crowd.models import Judgment

    draft = experiment_factory(status="draft")
    with pytest.raises(CommandError, match=r"^experiment 'exp1' is not live \(it is a draft"):
        simulate(draft, observer="psnr", participants=1, base_url=live_server.url)
    closed = experiment_factory(status="closed")
    with pytest.raises(CommandError, match=r"is not live \(it is closed"):
        simulate(closed, observer="psnr", participants=1, base_url=live_server.url)
    live = experiment_factory()
    with pytest.raises(CommandError, match=r"^observer 'nope': unknown metric 'nope'"):
        simulate(live, observer="nope", participants=1, base_url=live_server.url)
    with pytest.raises(CommandError, match=r"weight file not found"):
        simulate(live, observer=f"observer:{tmp_path / 'no.pt'}", participants=1, base_url=live_server.url)
    with pytest.raises(CommandError, match=r"^observer ms-ssim: ms-ssim needs a smaller image side"):
        simulate(live, observer="ms-ssim", participants=1, base_url=live_server.url)
    for bad in ("0.5*psnr+", "0*psnr", "0.5*psnr+0.5*nope"):  # a bad sum touches no study either
        with pytest.raises(CommandError, match=r"^observer .*; nothing judged$"):
            simulate(live, observer=bad, participants=1, base_url=live_server.url)
    with pytest.raises(CommandError, match=r"^--base-url http://127\.0\.0\.1:9: does not answer"):
        simulate(live, observer="psnr", participants=1, base_url="http://127.0.0.1:9")
    assert not _participants(live).exists()
    participant_client(client, live)  # a real participant
    with pytest.raises(CommandError, match=r"live with 1 real participant: .*--force.*nothing judged") as e:
        simulate(live, observer="psnr", participants=1, base_url=live_server.url)
    assert "\n" not in str(e.value)
    assert not Judgment.objects.exists()
    out = simulate(live, observer="psnr", participants=1, base_url=live_server.url, force=True)
    assert "1 entered, 1 completed" in out and "audit ok" in out, out


def test_a_run_in_which_every_participant_fails_is_an_error(study, live_server, settings):
    """stored == acknowledged == 0 passes the audit, but a pilot that judged nothing must not look done:
    here the site sends its CSRF cookie over HTTPS only, so no consent over plain HTTP is accepted."""
    from webapp.crowd.models import Judgment

    settings.CSRF_COOKIE_SECURE = True
    with pytest.raises(CommandError, match=r"^no judgment was made: 2 simulated participant\(s\) failed, "
                                           r"e\.g\. participant \d: consent answered 403"):
        simulate(study, observer="psnr", participants=2, concurrency=1, base_url=live_server.url)
    assert not Judgment.objects.exists()


def test_simulated_participants_stay_out_of_exports_unless_asked(study, live_server, tmp_path, client):
    from webapp.crowd.models import Judgment

    out = simulate(study, observer="psnr", participants=2, concurrency=2, seed=3, base_url=live_server.url)
    stored = Judgment.objects.filter(trial__experiment=study).count()
    assert f"{stored} stored (audit ok)" in out, out
    call_command("export_dataset", study.slug, out=str(tmp_path / "plain"), verbosity=0)
    manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert manifest["counts"]["judgments_in_log"] == 0 and manifest["counts"]["triplets_total"] == 0
    assert manifest["counts"]["participants_simulated"] == 2 and not manifest["include_simulated"]
    call_command("export_dataset", study.slug, out=str(tmp_path / "sim"), include_simulated=True, verbosity=0)
    manifest = json.loads((tmp_path / "sim" / "manifest.json").read_text())
    assert manifest["counts"]["judgments_in_log"] == stored and manifest["include_simulated"]
    log = (tmp_path / "sim" / "judgments.csv").read_text()
    assert log.count(",simulated,") == stored

    client.login(username="crowd-owner", password="pw-owner")
    page = client.get(f"/lab/e/{study.slug}/").content.decode()
    assert "Simulated participants" in page and "include_simulated" in page
    from django.core.management import call_command as run

    from webapp.lab.models import ExportJob

    for flags in ({}, {"include_simulated": "1"}):  # background exports, built by the task worker
        assert client.post(f"/lab/e/{study.slug}/export/", flags).status_code == 302
    run("db_worker", "--batch", "--no-startup-delay", "--no-reload", verbosity=0)
    plain, with_sim = (client.get(f"/lab/e/{study.slug}/exports/{j.id}.zip")
                       for j in ExportJob.objects.order_by("include_simulated"))
    assert plain.status_code == with_sim.status_code == 200
    assert len(b"".join(with_sim.streaming_content)) > len(b"".join(plain.streaming_content))
    api = client.post(f"/api/experiments/{study.slug}/export/?include_simulated=1")
    assert api.status_code == 202


def test_runs_its_own_server_and_an_interrupt_leaves_only_acknowledged_judgments(study, experiment_factory,
                                                                                transactional_db, request):
    from webapp.crowd.models import Judgment

    out = simulate(study, observer="psnr", participants=2, concurrency=2, seed=4)
    assert "(started by this command)" in out and "2 entered, 2 completed" in out and "audit ok" in out, out
    # a study with room for all 40 (the one above fills after 10 assignments, and a run whose participants
    # all find no trials ends before any Ctrl-C)
    roomy = experiment_factory(codecs=("jpeg:5,15,30,50,85",), trials_per_assignment=8,
                               judgments_per_trial=40, sentinel_rate=0.3, repeat_rate=0.3,
                               min_response_ms=300)

    def interrupt_after_new_judgments(before: int) -> None:
        from django.db import connection

        deadline = time.monotonic() + 30
        try:
            while Judgment.objects.count() <= before + 5 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:  # also if the query fails: the run must be interrupted either way
            connection.close()
            _thread.interrupt_main()  # Ctrl-C while the participants judge

    # Ctrl-C raises KeyboardInterrupt as in a terminal, whatever SIGINT handler an earlier test or library
    # left installed (interrupt_main does nothing while SIGINT is ignored or at its default)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    before = Judgment.objects.count()
    t = threading.Thread(target=interrupt_after_new_judgments, args=(before,))
    t.start()
    out = io.StringIO()
    with pytest.raises(CommandError, match="interrupted"):
        # paced answers (~0.3 s each): 40 participants take well over a minute, long after the Ctrl-C
        call_command("simulate_crowd", roomy.slug, observer="psnr", participants=40, concurrency=4, seed=5,
                     pace=True, rt_median=300, stdout=out)
    t.join()
    text = out.getvalue()
    assert "audit ok" in text, text
    assert Judgment.objects.count() - before < 40 * 10
