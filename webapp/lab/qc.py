"""Quality control per participant, computed from the judgments (never stored, never deleting).

The rules are ``RULES``, one ``Rule`` subclass each (defaults below; an experiment overrides any threshold
with ``experiment.spec["qc"][KEY]``):

- ``SentinelAccuracy`` (``min_sentinel_accuracy``): flag when the share of sentinel trials answered with the
  known answer (``trial.expected``) is below this, once the participant answered at least ``min_sentinels``.
- ``RepeatConsistency`` (``min_repeat_consistency``): flag when the share of planned repeats (the same trial
  shown again with the sides swapped) on which the participant chose the *same stimulus* as the first time
  is below this, once at least ``min_repeats`` repeat pairs exist.
- ``FastResponses`` (``max_fast_share``): flag when the share of responses faster than
  ``experiment.min_response_ms`` is above this.
- Viewing, from what the judging page recorded while each trial was shown (``judgment.events``; judgments
  without it do not count): ``FocusLost`` (``max_focus_lost_share``): flag when the share of trials during
  which the page lost focus (another window or tab) is above this; ``FullscreenExits``, ``TooSmall`` and
  ``RatioChanges`` (``max_fullscreen_exits``, ``max_too_small``, ``max_ratio_changes``): flag when the
  participant left the study's fullscreen, made the window smaller than its ``min_viewport``, or zoomed to a
  pixel ratio it does not allow more often than this, in all.

Adding a rule is one ``Rule`` subclass appended to ``RULES``: its thresholds, the counts it needs (SQL over
the judgment rows, or a Django aggregate over the judgments' events) and its test with its reason text. A
count that the QC table and the API should show is also a ``ParticipantQC`` field of the same name.

Practice trials (``trial.kind == "practice"`` or ``item.is_practice``) are left out of everything.
The counting is done by the database, one row per participant: memory and Python time grow with the number of
participants, not with the number of judgments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from django.db import connection
from django.db.models import Count, Func, IntegerField, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from webapp.crowd.models import Assignment, AssignmentItem, Judgment, Participant
from webapp.experiments.models import Trial


def _times(n: int) -> str:
    return "1 time" if n == 1 else f"{n} times"


def _event_total(key: str) -> Func:
    """The sum of one ``judgment.events`` count over a participant's judgments (0 when none)."""
    return Coalesce(Sum(Cast(KT(f"events__{key}"), IntegerField())), 0)


class Rule(ABC):
    """One QC rule. ``thresholds``: its settings and their defaults (``spec["qc"]`` overrides them);
    ``sql``: ParticipantQC field -> SQL aggregate over the participant's judgment rows (columns of ``r`` in
    ``_QC_SQL``; ``%(name)s`` is a threshold or ``sentinel``); ``events``: field -> Django aggregate over the
    judgments that carry ``events``. ``reason`` is the test: why ``qc`` is flagged, or None."""

    thresholds: ClassVar[dict[str, float]] = {}
    sql: ClassVar[dict[str, str]] = {}
    events: ClassVar[dict[str, Func]] = {}

    @abstractmethod
    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        """Why ``qc`` is flagged under the thresholds ``t`` (``qc_rules``), or None."""


class SentinelAccuracy(Rule):
    thresholds = {"min_sentinel_accuracy": 0.75, "min_sentinels": 1}
    sql = {
        "sentinels": "SUM(CASE WHEN kind = %(sentinel)s AND expected_id IS NOT NULL THEN 1 ELSE 0 END)",
        "sentinel_correct": "SUM(CASE WHEN kind = %(sentinel)s AND expected_id IS NOT NULL "
                            "AND chosen_id = expected_id THEN 1 ELSE 0 END)",
    }

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.sentinels >= t["min_sentinels"] and qc.sentinel_accuracy < t["min_sentinel_accuracy"]:
            return f"sentinel accuracy {qc.sentinel_accuracy:.2f} < {t['min_sentinel_accuracy']:.2f}"
        return None


class RepeatConsistency(Rule):
    """A planned repeat (``item.is_repeat``) counts when the participant judged the same trial before as a
    non-repeat; it is consistent when it chose the stimulus chosen at the first such judgment (lowest id)."""

    thresholds = {"min_repeat_consistency": 0.5, "min_repeats": 2}
    sql = {
        "repeats": "SUM(CASE WHEN is_repeat AND NOT first_is_repeat THEN 1 ELSE 0 END)",
        "repeat_consistent": "SUM(CASE WHEN is_repeat AND NOT first_is_repeat AND chosen_id = first_chosen "
                             "THEN 1 ELSE 0 END)",
    }

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.repeats >= t["min_repeats"] and qc.repeat_consistency < t["min_repeat_consistency"]:
            return f"repeat consistency {qc.repeat_consistency:.2f} < {t['min_repeat_consistency']:.2f}"
        return None


class FastResponses(Rule):
    """Faster than the study's ``min_response_ms`` (the floor ``qc_rules`` adds; not a ``spec["qc"]`` key)."""

    thresholds = {"max_fast_share": 0.25}
    sql = {"fast": "SUM(CASE WHEN response_ms < %(min_response_ms)s THEN 1 ELSE 0 END)"}

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.judgments and qc.fast_share > t["max_fast_share"]:
            return (f"{qc.fast_share:.0%} of responses faster than {t['min_response_ms']:.0f} ms"
                    f" (max {t['max_fast_share']:.0%})")
        return None


class FocusLost(Rule):
    thresholds = {"max_focus_lost_share": 0.25}
    events = {"focus_lost": Count("id", filter=Q(events__focus_lost__gt=0))}

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.with_events and qc.focus_lost_share > t["max_focus_lost_share"]:
            return f"lost focus on {qc.focus_lost_share:.0%} of trials (max {t['max_focus_lost_share']:.0%})"
        return None


class FullscreenExits(Rule):
    thresholds = {"max_fullscreen_exits": 2}
    events = {"fullscreen_exits": _event_total("fullscreen_exits")}

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.fullscreen_exits > t["max_fullscreen_exits"]:
            return f"left fullscreen {_times(qc.fullscreen_exits)} (max {t['max_fullscreen_exits']:.0f})"
        return None


class TooSmall(Rule):
    thresholds = {"max_too_small": 2}
    events = {"too_small": _event_total("too_small")}

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.too_small > t["max_too_small"]:
            return f"window below the minimum size {_times(qc.too_small)} (max {t['max_too_small']:.0f})"
        return None


class RatioChanges(Rule):
    thresholds = {"max_ratio_changes": 2}
    events = {"ratio_changes": _event_total("ratio_changed")}

    def reason(self, qc: ParticipantQC, t: Mapping[str, float]) -> str | None:
        if qc.ratio_changes > t["max_ratio_changes"]:
            return (f"zoomed to a pixel ratio not allowed {_times(qc.ratio_changes)} "
                    f"(max {t['max_ratio_changes']:.0f})")
        return None


# In the order their reasons are listed.
RULES: tuple[Rule, ...] = (SentinelAccuracy(), RepeatConsistency(), FastResponses(), FocusLost(),
                           FullscreenExits(), TooSmall(), RatioChanges())
QC_DEFAULTS: dict[str, float] = {k: v for rule in RULES for k, v in rule.thresholds.items()}


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


# One row per judgment (``r``), then per participant: the judgments, the median response time and each
# rule's ``sql`` counts (``{counts}``).
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
       AVG(CASE WHEN 2 * rank_ms >= n AND 2 * rank_ms <= n + 2 THEN response_ms END){counts}
FROM r
GROUP BY pid
ORDER BY pid
"""


def _participant_rows(experiment, rules: dict[str, float]) -> tuple[list[str], list[tuple]]:
    """(the rules' ``sql`` count names, ``(participant, judgments, median ms, *those counts)`` per
    participant with judgments), aggregated by the database (one query; window functions, so PostgreSQL or
    SQLite ≥ 3.25). The median is the mean of the one or two middle response times, as
    ``statistics.median``."""
    counts = {name: expr for rule in RULES for name, expr in rule.sql.items()}
    qn = connection.ops.quote_name
    sql = _QC_SQL.format(judgment=qn(Judgment._meta.db_table), trial=qn(Trial._meta.db_table),
                         item=qn(AssignmentItem._meta.db_table), assignment=qn(Assignment._meta.db_table),
                         counts="".join(f",\n       {expr}" for expr in counts.values()))
    params = {**rules, "exp": experiment.pk, "practice": "practice", "sentinel": "sentinel"}
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return list(counts), cur.fetchall()


def _event_rows(experiment) -> tuple[list[str], list[tuple]]:
    """(the rules' ``events`` count names, ``(participant, judgments with events, *those counts)`` per
    participant), practice left out, counted by the database from the JSON column."""
    counts = {name: agg for rule in RULES for name, agg in rule.events.items()}
    rows = (Judgment.objects.filter(trial__experiment=experiment, events__isnull=False)
            .exclude(trial__kind="practice").exclude(item__is_practice=True)
            .order_by().values("assignment__participant_id")
            .annotate(n=Count("id"), **counts)
            .values_list("assignment__participant_id", "n", *counts))
    return list(counts), list(rows)


def _finish(qc: ParticipantQC, rules: dict[str, float]) -> None:
    """Append the reason of every rule that flags ``qc`` (in ``RULES`` order)."""
    for rule in RULES:
        reason = rule.reason(qc, rules)
        if reason is not None:
            qc.reasons.append(reason)


def compute_qc(experiment) -> dict[int, ParticipantQC]:
    """QC of every participant of ``experiment``, keyed by participant pk (ordered by pk).

    Counted by the database per participant (``_participant_rows``, ``_event_rows``): three queries whatever
    the number of judgments, and memory that grows with the number of participants only."""
    rules = qc_rules(experiment)
    result: dict[int, ParticipantQC] = {
        pid: ParticipantQC(pid, platform or "", platform_id or "")
        for pid, platform, platform_id in Participant.objects.filter(experiment=experiment)
        .order_by("pk")
        .values_list("pk", "platform", "platform_id")
    }
    judged = set()
    names, rows = _participant_rows(experiment, rules)
    for pid, n, median, *counts in rows:
        judged.add(pid)
        qc = result.setdefault(pid, ParticipantQC(pid, "", ""))
        qc.judgments = int(n)
        qc.median_response_ms = float(median) if median is not None else None
        for name, value in zip(names, counts, strict=True):
            setattr(qc, name, int(value))
    names, rows = _event_rows(experiment)
    for pid, n, *counts in rows:
        qc = result.setdefault(pid, ParticipantQC(pid, "", ""))
        qc.with_events = int(n)
        for name, value in zip(names, counts, strict=True):
            setattr(qc, name, int(value))
    for pid in judged:  # participants without judgments are listed, never flagged
        _finish(result[pid], rules)
    return result


def flagged_ids(qc: Iterable[ParticipantQC] | dict[int, ParticipantQC]) -> set[int]:
    """Participant pks with at least one flag."""
    values = qc.values() if isinstance(qc, dict) else qc
    return {p.participant_id for p in values if p.flagged}
