"""Quality control per participant, computed from the judgments (never stored, never deleting).

Rules (defaults below; an experiment overrides any of them with ``experiment.spec["qc"][KEY]``):

- ``min_sentinel_accuracy``: flag when the share of sentinel trials answered with the known answer
  (``trial.expected``) is below this, once the participant answered at least ``min_sentinels`` of them.
- ``min_repeat_consistency``: flag when the share of planned repeats (the same trial shown again with the
  sides swapped) on which the participant chose the *same stimulus* as the first time is below this, once
  at least ``min_repeats`` repeat pairs exist.
- ``max_fast_share``: flag when the share of responses faster than ``experiment.min_response_ms`` is
  above this.

Practice trials (``trial.kind == "practice"`` or ``item.is_practice``) are left out of everything.
Memory grows with the number of participants and one participant's judgments, not with all judgments.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

QC_DEFAULTS: dict[str, float] = {
    "min_sentinel_accuracy": 0.75,
    "min_sentinels": 1,
    "min_repeat_consistency": 0.5,
    "min_repeats": 2,
    "max_fast_share": 0.25,
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
    def flagged(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            sentinel_accuracy=self.sentinel_accuracy,
            repeat_consistency=self.repeat_consistency,
            fast_share=self.fast_share,
            flagged=self.flagged,
            reason="; ".join(self.reasons),
        )
        return d


def _judgment_rows(experiment) -> Iterator[tuple]:
    from webapp.crowd.models import Judgment

    qs = (
        Judgment.objects.filter(trial__experiment=experiment)
        .exclude(trial__kind="practice")
        .exclude(item__is_practice=True)
        .order_by("assignment__participant_id", "item__is_repeat", "id")
        .values_list(
            "assignment__participant_id",
            "trial_id",
            "trial__kind",
            "trial__expected_id",
            "chosen_id",
            "item__is_repeat",
            "response_ms",
        )
    )
    return qs.iterator(chunk_size=2000)


def _finish(qc: ParticipantQC, times: list[float], rules: dict[str, float]) -> None:
    qc.median_response_ms = float(statistics.median(times)) if times else None
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


def compute_qc(experiment) -> dict[int, ParticipantQC]:
    """QC of every participant of ``experiment``, keyed by participant pk (ordered by pk)."""
    from webapp.crowd.models import Participant

    rules = qc_rules(experiment)
    result: dict[int, ParticipantQC] = {
        pid: ParticipantQC(pid, platform or "", platform_id or "")
        for pid, platform, platform_id in Participant.objects.filter(experiment=experiment)
        .order_by("pk")
        .values_list("pk", "platform", "platform_id")
    }
    current: ParticipantQC | None = None
    first_choice: dict[int, int] = {}
    times: list[float] = []
    for pid, trial_id, kind, expected_id, chosen_id, is_repeat, response_ms in _judgment_rows(experiment):
        if current is None or current.participant_id != pid:
            if current is not None:
                _finish(current, times, rules)
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
        _finish(current, times, rules)
    return result


def flagged_ids(qc: Iterable[ParticipantQC] | dict[int, ParticipantQC]) -> set[int]:
    """Participant pks with at least one flag."""
    values = qc.values() if isinstance(qc, dict) else qc
    return {p.participant_id for p in values if p.flagged}
