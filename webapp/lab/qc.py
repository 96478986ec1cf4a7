"""Quality control per participant, computed from the judgments (never stored, never deleting).

Rules (defaults below; an experiment overrides any of them with ``experiment.spec["qc"][KEY]``):

- ``min_sentinel_accuracy``: flag when the share of sentinel trials answered with the known answer
  (``trial.expected``) is below this, once the participant answered at least ``min_sentinels`` of them.
- ``min_repeat_consistency``: flag when the share of planned repeats (the same trial shown again with the
  sides swapped) on which the participant chose the *same stimulus* as the first time is below this, once
  at least ``min_repeats`` repeat pairs exist.
- ``max_fast_share``: flag when the share of responses faster than ``experiment.min_response_ms`` is
  above this.
- Viewing, from what the judging page recorded while each trial was shown (``judgment.events``; judgments
  without it do not count): ``max_focus_lost_share``: flag when the share of trials during which the page
  lost focus (another window or tab) is above this; ``max_fullscreen_exits``, ``max_too_small`` and
  ``max_ratio_changes``: flag when the participant left the study's fullscreen, made the window smaller
  than its ``min_viewport``, or zoomed to a pixel ratio it does not allow more often than this, in all.

Practice trials (``trial.kind == "practice"`` or ``item.is_practice``) are left out of everything.
The counting is done by the database, one row per participant: memory and Python time grow with the number of
participants, not with the number of judgments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

QC_DEFAULTS: dict[str, float] = {
    "min_sentinel_accuracy": 0.75,
    "min_sentinels": 1,
    "min_repeat_consistency": 0.5,
    "min_repeats": 2,
    "max_fast_share": 0.25,
    "max_focus_lost_share": 0.25,
    "max_fullscreen_exits": 2,
    "max_too_small": 2,
    "max_ratio_changes": 2,
}


def qc_rules(experiment) -> dict[str, float]:
    """Thresholds in force for ``experiment``: QC_DEFAULTS overridden by ``spec["qc"]``, plus the floor."""
    rules = dict(QC_DEFAULTS)
    spec = experiment.spec if isinstance(experiment.spec, dict) else {}
    for key, value in (spec.get("qc") or {}).items():
        if key in rules:
            rules[key] = float(value)
    rules["min_response_ms"] = float(experiment.min_response_ms or 0)
    return rules


@dataclass
class ParticipantQC:
    """QC numbers of one participant (``None`` where no data of that kind exists)."""

    participant_id: int
    platform: str
    platform_id: str
    judgments: int = 0
    sentinels: int = 0
    sentinel_correct: int = 0
    repeats: int = 0
    repeat_consistent: int = 0
    fast: int = 0
    median_response_ms: float | None = None
    with_events: int = 0  # judgments whose page reported what happened during the trial
    focus_lost: int = 0  # of those, trials during which the page lost focus
    fullscreen_exits: int = 0  # times, in all
    too_small: int = 0
    ratio_changes: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def sentinel_accuracy(self) -> float | None:
        return self.sentinel_correct / self.sentinels if self.sentinels else None

    @property
    def repeat_consistency(self) -> float | None:
        return self.repeat_consistent / self.repeats if self.repeats else None

    @property
    def fast_share(self) -> float | None:
        return self.fast / self.judgments if self.judgments else None

    @property
    def focus_lost_share(self) -> float | None:
        return self.focus_lost / self.with_events if self.with_events else None

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            sentinel_accuracy=self.sentinel_accuracy,
            repeat_consistency=self.repeat_consistency,
            fast_share=self.fast_share,
            focus_lost_share=self.focus_lost_share,
            flagged=self.flagged,
            reason="; ".join(self.reasons),
        )
        return d


_QC_SQL = """
WITH j AS (
    SELECT a.participant_id AS pid, j.id, j.trial_id, t.kind, t.expected_id, j.chosen_id, i.is_repeat,
           j.response_ms
    FROM {judgment} j
    JOIN {trial} t ON t.id = j.trial_id
    JOIN {item} i ON i.id = j.item_id
    JOIN {assignment} a ON a.id = j.assignment_id
    WHERE t.experiment_id = %(exp)s AND t.kind <> %(practice)s AND NOT i.is_practice
), r AS (
    SELECT pid, kind, expected_id, chosen_id, is_repeat, response_ms,
           ROW_NUMBER() OVER (PARTITION BY pid ORDER BY response_ms) AS rank_ms,
           COUNT(*) OVER (PARTITION BY pid) AS n,
           FIRST_VALUE(chosen_id) OVER first AS first_chosen,
           FIRST_VALUE(is_repeat) OVER first AS first_is_repeat
    FROM j
    WINDOW first AS (PARTITION BY pid, trial_id ORDER BY is_repeat, id)
)
SELECT pid,
       COUNT(*),
       SUM(CASE WHEN response_ms < %(fast)s THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = %(sentinel)s AND expected_id IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = %(sentinel)s AND expected_id IS NOT NULL AND chosen_id = expected_id
                THEN 1 ELSE 0 END),
       SUM(CASE WHEN is_repeat AND NOT first_is_repeat THEN 1 ELSE 0 END),
       SUM(CASE WHEN is_repeat AND NOT first_is_repeat AND chosen_id = first_chosen THEN 1 ELSE 0 END),
       AVG(CASE WHEN 2 * rank_ms >= n AND 2 * rank_ms <= n + 2 THEN response_ms END)
FROM r
GROUP BY pid
ORDER BY pid
"""


def _participant_rows(experiment, rules: dict[str, float]) -> list[tuple]:
    """``(participant, judgments, fast, sentinels, sentinel_correct, repeats, repeat_consistent, median ms)``
    per participant with judgments, aggregated by the database (one query; window functions, so
    PostgreSQL or SQLite ≥ 3.25).

    A planned repeat (``item.is_repeat``) counts when the participant judged the same trial before as a
    non-repeat; it is consistent when it chose the stimulus chosen at the first such judgment (lowest id).
    The median is the mean of the one or two middle response times, as ``statistics.median``."""
    from django.db import connection

    from webapp.crowd.models import Assignment, AssignmentItem, Judgment
    from webapp.experiments.models import Trial

    qn = connection.ops.quote_name
    sql = _QC_SQL.format(judgment=qn(Judgment._meta.db_table), trial=qn(Trial._meta.db_table),
                         item=qn(AssignmentItem._meta.db_table), assignment=qn(Assignment._meta.db_table))
    params = {"exp": experiment.pk, "practice": "practice", "sentinel": "sentinel",
              "fast": rules["min_response_ms"]}
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _event_rows(experiment) -> list[tuple]:
    """``(participant, judgments with events, trials with focus lost, fullscreen exits, times too small, pixel
    ratio changes)`` per participant, practice left out, counted by the database from the JSON column."""
    from django.db.models import Count, IntegerField, Q, Sum
    from django.db.models.fields.json import KT
    from django.db.models.functions import Cast, Coalesce

    from webapp.crowd.models import Judgment

    def total(key: str):
        return Coalesce(Sum(Cast(KT(f"events__{key}"), IntegerField())), 0)

    return list(
        Judgment.objects.filter(trial__experiment=experiment, events__isnull=False)
        .exclude(trial__kind="practice").exclude(item__is_practice=True)
        .order_by().values("assignment__participant_id")
        .annotate(n=Count("id"), lost=Count("id", filter=Q(events__focus_lost__gt=0)),
                  exits=total("fullscreen_exits"), small=total("too_small"), ratio=total("ratio_changed"))
        .values_list("assignment__participant_id", "n", "lost", "exits", "small", "ratio"))


def _times(n: int) -> str:
    return "1 time" if n == 1 else f"{n} times"


def _finish(qc: ParticipantQC, rules: dict[str, float]) -> None:
    if qc.sentinels >= rules["min_sentinels"] and qc.sentinel_accuracy < rules["min_sentinel_accuracy"]:
        qc.reasons.append(
            f"sentinel accuracy {qc.sentinel_accuracy:.2f} < {rules['min_sentinel_accuracy']:.2f}"
        )
    if qc.repeats >= rules["min_repeats"] and qc.repeat_consistency < rules["min_repeat_consistency"]:
        qc.reasons.append(
            f"repeat consistency {qc.repeat_consistency:.2f} < {rules['min_repeat_consistency']:.2f}"
        )
    if qc.judgments and qc.fast_share > rules["max_fast_share"]:
        qc.reasons.append(
            f"{qc.fast_share:.0%} of responses faster than {rules['min_response_ms']:.0f} ms"
            f" (max {rules['max_fast_share']:.0%})"
        )
    if qc.with_events and qc.focus_lost_share > rules["max_focus_lost_share"]:
        qc.reasons.append(f"lost focus on {qc.focus_lost_share:.0%} of trials "
                          f"(max {rules['max_focus_lost_share']:.0%})")
    if qc.fullscreen_exits > rules["max_fullscreen_exits"]:
        qc.reasons.append(f"left fullscreen {_times(qc.fullscreen_exits)} "
                          f"(max {rules['max_fullscreen_exits']:.0f})")
    if qc.too_small > rules["max_too_small"]:
        qc.reasons.append(f"window below the minimum size {_times(qc.too_small)} "
                          f"(max {rules['max_too_small']:.0f})")
    if qc.ratio_changes > rules["max_ratio_changes"]:
        qc.reasons.append(f"zoomed to a pixel ratio not allowed {_times(qc.ratio_changes)} "
                          f"(max {rules['max_ratio_changes']:.0f})")


def compute_qc(experiment) -> dict[int, ParticipantQC]:
    """QC of every participant of ``experiment``, keyed by participant pk (ordered by pk).

    Counted by the database per participant (``_participant_rows``, ``_event_rows``): three queries whatever
    the number of judgments, and memory that grows with the number of participants only."""
    from webapp.crowd.models import Participant

    rules = qc_rules(experiment)
    result: dict[int, ParticipantQC] = {
        pid: ParticipantQC(pid, platform or "", platform_id or "")
        for pid, platform, platform_id in Participant.objects.filter(experiment=experiment)
        .order_by("pk")
        .values_list("pk", "platform", "platform_id")
    }
    judged = set()
    for pid, n, fast, sentinels, correct, repeats, consistent, median in _participant_rows(experiment, rules):
        judged.add(pid)
        qc = result.setdefault(pid, ParticipantQC(pid, "", ""))
        qc.judgments, qc.fast = int(n), int(fast)
        qc.sentinels, qc.sentinel_correct = int(sentinels), int(correct)
        qc.repeats, qc.repeat_consistent = int(repeats), int(consistent)
        qc.median_response_ms = float(median) if median is not None else None
    for pid, n, lost, exits, small, ratio in _event_rows(experiment):
        qc = result.setdefault(pid, ParticipantQC(pid, "", ""))
        qc.with_events, qc.focus_lost = int(n), int(lost)
        qc.fullscreen_exits, qc.too_small, qc.ratio_changes = int(exits), int(small), int(ratio)
    for pid in judged:  # participants without judgments are listed, never flagged
        _finish(result[pid], rules)
    return result


def flagged_ids(qc: Iterable[ParticipantQC] | dict[int, ParticipantQC]) -> set[int]:
    """Participant pks with at least one flag."""
    values = qc.values() if isinstance(qc, dict) else qc
    return {p.participant_id for p in values if p.flagged}
