"""The study page's figures computed once (``summary``), by aggregate queries: the same numbers as before.

The previous implementations (a Python pass over every judgment for QC and win rates, the per-participant
rows for the scale, the template's loop for the QC table) are kept here as references and compared on a
seeded study with every case QC distinguishes (sentinels right and wrong, repeats consistent or not, a
repeat without a first showing, a trial judged twice, fast answers, practice, simulated participants).
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from webapp.lab import analysis, jod_scales, plots, summary
from webapp.lab.qc import ParticipantQC, _finish, compute_qc, qc_rules

pytestmark = pytest.mark.django_db
QUALITY = {"jpeg": 0.0, "original": 3.0, "webp": 1.0}


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def seeded(world, participants: int, seed: int = 0, start: int = 0) -> None:
    """``participants`` more participants judging ``world``'s trials at random, quality-led with noise."""
    rng = np.random.default_rng(seed)
    w = world

    def q(stim) -> float:
        return QUALITY[stim.codec] + (stim.quality or 0) / 40

    for k in range(start, start + participants):
        platform = ["prolific", "prolific", "mturk", "simulated"][k % 4]
        p = w.participant(f"s{k}", platform)
        careless = k % 5 == 2
        if rng.random() < 0.5:
            w.judge(p, w.practice, "ab"[int(rng.integers(2))], ms=int(rng.integers(50, 2000)))
        judged = []
        for t in w.normal:
            if rng.random() < 0.8:
                p_a = 0.5 if careless else 1 / (1 + np.exp(-2 * (q(t.stimulus_a) - q(t.stimulus_b))))
                ms = int(rng.integers(100, 400)) if careless else int(rng.integers(250, 3000))
                w.judge(p, t, "a" if rng.random() < p_a else "b", ms=ms, left_is_a=bool(rng.random() < 0.5))
                judged.append(t)
        for t in w.sentinel.values():
            if rng.random() < 0.9:
                w.judge(p, t, "b" if (rng.random() < (0.4 if careless else 0.95)) else "a",
                        ms=int(rng.integers(200, 2000)))
        for t in rng.permutation(judged)[: int(rng.integers(0, 4))]:  # planned repeats
            w.judge(p, t, "ab"[int(rng.integers(2))], repeat=True, left_is_a=False,
                    ms=int(rng.integers(200, 2000)))
        if k % 7 == 3:  # a repeat of a trial this participant never saw first: not a repeat pair
            unseen = [t for t in w.normal if t not in judged]
            if unseen:
                w.judge(p, unseen[0], "a", repeat=True)
        if k % 9 == 4 and judged:  # the same trial judged twice, neither a planned repeat
            w.judge(p, judged[0], "b")
            w.judge(p, judged[0], "a", repeat=True)
        if k % 6 == 5:  # a repeat of a sentinel trial
            w.judge(p, w.sentinel[0], "b")
            w.judge(p, w.sentinel[0], "a", repeat=True)


# ---- the previous implementations (before issue 16's dashboard fix), the references ----------------------


def previous_compute_qc(experiment) -> dict[int, ParticipantQC]:
    """``compute_qc`` as it was: one pass in Python over every judgment, ordered by participant."""
    from webapp.crowd.models import Judgment, Participant

    rules = qc_rules(experiment)
    result = {pid: ParticipantQC(pid, platform or "", platform_id or "")
              for pid, platform, platform_id in Participant.objects.filter(experiment=experiment)
              .order_by("pk").values_list("pk", "platform", "platform_id")}
    rows = (Judgment.objects.filter(trial__experiment=experiment).exclude(trial__kind="practice")
            .exclude(item__is_practice=True).order_by("assignment__participant_id", "item__is_repeat", "id")
            .values_list("assignment__participant_id", "trial_id", "trial__kind", "trial__expected_id",
                         "chosen_id", "item__is_repeat", "response_ms"))
    current, first_choice, times = None, {}, []

    def finish(qc, times):
        qc.median_response_ms = float(statistics.median(times)) if times else None
        _finish(qc, rules)

    for pid, trial_id, kind, expected_id, chosen_id, is_repeat, response_ms in rows:
        if current is None or current.participant_id != pid:
            if current is not None:
                finish(current, times)
            current = result.setdefault(pid, ParticipantQC(pid, "", ""))
            first_choice, times = {}, []
        current.judgments += 1
        times.append(float(response_ms))
        if response_ms < rules["min_response_ms"]:
            current.fast += 1
        if kind == "sentinel" and expected_id is not None:
            current.sentinels += 1
            current.sentinel_correct += int(chosen_id == expected_id)
        if not is_repeat:
            first_choice.setdefault(trial_id, chosen_id)
        elif trial_id in first_choice:
            current.repeats += 1
            current.repeat_consistent += int(first_choice[trial_id] == chosen_id)
    if current is not None:
        finish(current, times)
    return result


def previous_win_rates(experiment, exclude=None) -> list[dict]:
    """``win_rates`` as it was: one pass in Python over every normal judgment."""
    from collections import defaultdict

    stim = analysis._stimulus_table(experiment)
    wins, shown, bpps = defaultdict(int), defaultdict(int), defaultdict(list)
    key = {s: (r["codec"], r["quality"], r["target_bpp"]) for s, r in stim.items()}
    for s, r in stim.items():
        bpps[key[s]].append(r["bpp"] or 0.0)
    for a, b, chosen in (analysis._judgments(experiment, exclude).order_by("id")
                         .values_list("trial__stimulus_a_id", "trial__stimulus_b_id", "chosen_id")):
        shown[key[a]] += 1
        shown[key[b]] += 1
        wins[key[chosen]] += 1
    return [{"codec": k[0], "quality": k[1], "target_bpp": k[2], "label": analysis.setting_label(*k),
             "mean_bpp": float(np.mean(bpps[k])), "wins": wins[k], "shown": shown[k],
             "win_rate": wins[k] / shown[k]}
            for k in sorted(shown, key=lambda k: (k[0], float(np.mean(bpps[k]))))]


def previous_per_setting(experiment, exclude=None) -> dict:
    """``per_setting`` as it was: the comparisons built from one row per participant, trial and choice."""
    return jod_scales.per_setting(experiment, exclude, rows=jod_scales.judgment_rows(experiment, exclude))


_CELLS = (  # the template's QC table cells after the platform column, as they were
    '<td>{{ p.judgments }}</td>\n'
    '<td>{{ p.sentinel_accuracy|floatformat:2|default:"–" }} '
    '<small>({{ p.sentinel_correct }}/{{ p.sentinels }})</small></td>\n'
    '<td>{{ p.repeat_consistency|floatformat:2|default:"–" }} '
    '<small>({{ p.repeat_consistent }}/{{ p.repeats }})</small></td>\n'
    '<td>{{ p.fast_share|floatformat:2|default:"–" }}</td>'
    '<td>{{ p.median_response_ms|floatformat:0|default:"–" }}</td>\n'
    '<td>{{ p.reasons|join:"; " }}</td>'
)
_ROW = '<tr class="{% if p.flagged %}flagged{% endif %}"><td>{{ p.participant_id }}</td>'
_ERASE = ('\n<td><form method="get" '  # the erase button, added with participants' erasure
          'action="/lab/e/{{ exp.slug }}/participants/{{ p.participant_id }}/erase/" class="inline">'
          '<button type="submit">erase…</button></form></td>')
PREVIOUS_QC_LOOP = Template(  # the template's loops over the QC rows as they were
    "{% for p in qc %}" + _ROW + "<td>{{ p.platform }}</td>" + _CELLS + _ERASE + "</tr>\n{% endfor %}")
PREVIOUS_SIMULATED_LOOP = Template("{% for p in simulated %}" + _ROW + _CELLS + "</tr>{% endfor %}")


# ---- the figures equal the previous implementations' ------------------------------------------------------


def test_qc_equals_the_previous_implementation(world):
    seeded(world, 40)
    world.participant("never-judged")
    exp = world.exp
    new, old = compute_qc(exp), previous_compute_qc(exp)
    assert list(new) == list(old) and new == old
    assert sum(p.flagged for p in new.values()) >= 5  # the careless ones, and the cases are all there
    assert any(p.repeats and p.repeat_consistent < p.repeats for p in new.values())
    assert any(p.judgments % 2 == 0 for p in new.values()) and any(p.judgments % 2 for p in new.values())
    exp.spec = {"qc": {"min_sentinels": 2, "min_repeats": 1, "max_fast_share": 0.1}}
    exp.min_response_ms = 1000
    exp.save()
    assert compute_qc(exp) == previous_compute_qc(exp)


def test_win_rates_and_trial_counts_equal_the_previous_implementation(world):
    seeded(world, 30, seed=1)
    exp = world.exp
    excluded = {pid for pid, p in compute_qc(exp).items() if p.flagged}
    for exclude in (None, excluded):
        assert analysis.win_rates(exp, exclude) == previous_win_rates(exp, exclude)
        choices = analysis.choice_counts(exp, exclude)
        assert analysis.trial_counts(exp, choices=choices) == analysis.trial_counts(exp, exclude)


def test_scale_from_pooled_counts_equals_the_per_participant_rows(world):
    seeded(world, 30, seed=2)
    exp = world.exp
    excluded = {pid for pid, p in compute_qc(exp).items() if p.flagged}
    for exclude in (None, excluded):
        new, old = jod_scales.per_setting(exp, exclude), previous_per_setting(exp, exclude)
        assert new["error"] is None and new["rows"] == old["rows"]  # exactly: same wins, same draws
        assert new["scale"].participants == old["scale"].participants
        assert new["scale"].judgments == old["scale"].judgments


def test_scale_errors_equal_the_per_participant_rows(world):
    exp = world.exp
    assert jod_scales.per_setting(exp)["error"] == previous_per_setting(exp)["error"]  # no judgments
    seeded(world, 1, seed=3)
    one = jod_scales.per_setting(exp)["error"]
    assert one == previous_per_setting(exp)["error"] and "1 participant" in one


def test_summary_holds_what_the_page_computed_before(world):
    seeded(world, 25, seed=4)
    exp = world.exp
    s = summary.compute(exp)
    assert s.qc == list(previous_compute_qc(exp).values())
    assert s.rules == qc_rules(exp)
    assert s.progress == analysis.progress(exp)
    assert s.win_rates == previous_win_rates(exp)
    assert s.scale["rows"] == previous_per_setting(exp)["rows"]
    assert s.agreement == analysis.agreement(exp)
    assert s.metrics == analysis.metric_agreement(exp)
    assert s.coverage == analysis.coverage(exp)
    assert s.timeline == analysis.judgments_over_time(exp)
    from webapp.crowd.models import Judgment

    assert s.judgments == Judgment.objects.filter(trial__experiment=exp).count() > 0


def test_page_qc_tables_are_the_previous_templates_markup(client, world, users):
    """The rows are the template's as before, flagged participants first."""
    seeded(world, 16, seed=5)
    exp = world.exp
    qc = sorted(previous_compute_qc(exp).values(), key=lambda p: (not p.flagged, p.participant_id))
    ctx = Context({"qc": [p for p in qc if p.platform != "simulated"], "exp": exp,
                   "simulated": [p for p in qc if p.platform == "simulated"]})
    client.force_login(users["alice"])
    html = client.get(reverse("lab:experiment", args=[exp.slug])).content.decode()
    real, simulated = PREVIOUS_QC_LOOP.render(ctx), PREVIOUS_SIMULATED_LOOP.render(ctx)
    assert real.count("<tr") == 12 and simulated.count("<tr") == 4
    assert real in html and simulated in html
    assert "flagged" in real and "–" in real
    assert "page 1 of" not in html  # one page


def test_qc_table_pages(client, world, users, monkeypatch):
    """Beyond one page of rows the table pages (``?qc_page=N``), flagged participants first; a page number
    out of range or not a number gives the last or the first page, not an error."""
    from webapp.lab import views

    monkeypatch.setattr(views, "QC_PAGE_SIZE", 5)
    seeded(world, 16, seed=5)
    exp = world.exp
    real = sorted((p for p in previous_compute_qc(exp).values() if p.platform != "simulated"),
                  key=lambda p: (not p.flagged, p.participant_id))
    client.force_login(users["alice"])
    url = reverse("lab:experiment", args=[exp.slug])
    pages = []
    for n in (1, 2, 3):
        html = client.get(url, {"qc_page": n}).content.decode()
        assert f"page {n} of 3" in html and f"of {len(real)} (flagged first)" in html
        pages.append(html)
    for k, p in enumerate(real):
        row = f'<tr class="{"flagged" if p.flagged else ""}"><td>{p.participant_id}</td>'
        assert [row in page for page in pages] == [i == k // 5 for i in range(3)], (k, p.participant_id)
    assert real[0].flagged and not real[-1].flagged
    assert "page 3 of 3" in client.get(url, {"qc_page": 99}).content.decode()
    assert "page 1 of 3" in client.get(url, {"qc_page": "x"}).content.decode()


# ---- computed once, shared, refreshed ---------------------------------------------------------------------


@pytest.fixture
def computes(monkeypatch):
    """Counts ``summary.compute`` calls."""
    calls = []
    real = summary.compute

    def counting(experiment):
        calls.append(experiment.pk)
        return real(experiment)

    monkeypatch.setattr(summary, "compute", counting)
    return calls


def _page(client, exp) -> str:
    r = client.get(reverse("lab:experiment", args=[exp.slug]))
    assert r.status_code == 200
    return r.content.decode()


def test_page_and_plots_share_one_computation(client, world, users, computes):
    seeded(world, 6, seed=6)
    exp = world.exp
    client.force_login(users["alice"])
    n = summary.stamp(exp).judgments
    html = _page(client, exp)
    assert f"Figures as of {n} judgments, computed at" in html and "newer judgments" not in html
    for name in plots.PLOTS:
        assert client.get(reverse("lab:plot", args=[exp.slug, name, "png"])).status_code == 200
    _page(client, exp)
    assert computes == [exp.pk]
    p = world.participant("late")
    world.judge(p, world.normal[0], "a")  # a small study: recomputed at once
    html = _page(client, exp)
    assert computes == [exp.pk, exp.pk] and f"Figures as of {n + 1} judgments" in html


def test_large_study_shows_stale_figures_and_refreshes_them_in_the_background(
        transactional_db, client, world, users, computes, monkeypatch):
    from django_tasks_db.models import DBTaskResult
    from lab_factories import run_tasks

    monkeypatch.setattr(summary, "INLINE_MAX", 0)  # every study is "large"
    monkeypatch.setattr(summary, "shared_cache", lambda: True)  # the worker (this process here) shares it
    seeded(world, 6, seed=7)
    exp = world.exp
    client.force_login(users["alice"])
    n = summary.stamp(exp).judgments
    _page(client, exp)  # nothing stored yet: computed here
    assert computes == [exp.pk]
    p = world.participant("late")
    world.judge(p, world.normal[0], "a")
    world.judge(p, world.normal[1], "b")
    for _ in range(2):  # the stored figures at once, one refresh queued however many ask
        html = _page(client, exp)
        assert f"Figures as of {n} judgments" in html and "being recomputed in the background" in html
        assert client.get(reverse("lab:plot", args=[exp.slug, "qc", "png"])).status_code == 200
    assert computes == [exp.pk]
    tasks = DBTaskResult.objects.filter(task_path__endswith="refresh_summary")
    assert tasks.count() == 1
    run_tasks()
    assert tasks.get().status == "SUCCESSFUL" and computes == [exp.pk, exp.pk]
    html = _page(client, exp)
    assert f"Figures as of {n + 2} judgments" in html and "newer judgments" not in html
    assert computes == [exp.pk, exp.pk] and not summary.refreshing(exp)
    assert summary.get_summary(exp).qc == list(previous_compute_qc(exp).values())


def test_large_study_on_a_process_local_cache_is_recomputed_at_most_every_minute(
        client, world, users, computes, monkeypatch):
    monkeypatch.setattr(summary, "INLINE_MAX", 0)
    assert not summary.shared_cache()  # the tests' LocMem cache
    seeded(world, 4, seed=8)
    exp = world.exp
    client.force_login(users["alice"])
    n = summary.stamp(exp).judgments
    _page(client, exp)
    world.judge(world.participant("late"), world.normal[0], "a")
    html = _page(client, exp)
    assert f"Figures as of {n} judgments" in html and "newer judgments have come in since; reload" in html
    assert computes == [exp.pk]
    monkeypatch.setattr(summary, "LOCAL_MAX_AGE", 0)
    assert f"Figures as of {n + 1} judgments" in _page(client, exp)
    assert computes == [exp.pk, exp.pk]


def test_a_changed_qc_rule_is_a_new_summary(client, world, users):
    seeded(world, 8, seed=9)
    exp = world.exp
    client.force_login(users["alice"])
    before = _page(client, exp).count('class="flagged"')
    exp.spec = {"qc": {"max_fast_share": 0.0}}
    exp.save()
    assert _page(client, exp).count('class="flagged"') > before


def _statements(client, url: str) -> int:
    cache.clear()
    with CaptureQueriesContext(connection) as q:
        assert client.get(url).status_code == 200
    return len(q)


def test_statements_do_not_grow_with_judgments(client, world, users):
    exp = world.exp
    client.force_login(users["alice"])
    urls = [reverse("lab:experiment", args=[exp.slug])]
    urls += [reverse("lab:plot", args=[exp.slug, name, "png"]) for name in plots.PLOTS]
    seeded(world, 3, seed=10)
    small = [_statements(client, u) for u in urls]
    seeded(world, 30, seed=11, start=3)
    assert [_statements(client, u) for u in urls] == small
    with CaptureQueriesContext(connection) as q:  # stored: the page reads its figures, computes nothing
        client.get(urls[0])
    assert len(q) < small[0] // 2


def test_qc_bars_draw_what_bar_drew():
    from matplotlib.figure import Figure

    heights, colors = [0.5, 0.0, 1.0, 0.25], ["tab:red", "tab:blue", "tab:blue", "tab:red"]
    fig = Figure()
    a, b = fig.subplots(1, 2)
    bars = a.bar(range(len(heights)), heights, color=colors)
    plots._bars(b, heights, colors)
    (coll,) = b.collections
    for rect, path, face in zip(bars.patches, coll.get_paths(), coll.get_facecolors(), strict=True):
        (x0, y0), (x1, y1) = path.vertices.min(0), path.vertices.max(0)
        assert (x0, y0, x1 - x0, y1 - y0) == pytest.approx((rect.get_x(), rect.get_y(), rect.get_width(),
                                                            rect.get_height()))
        assert tuple(face) == pytest.approx(rect.get_facecolor())
    assert b.get_xlim() == pytest.approx(a.get_xlim())
