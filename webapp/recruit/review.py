"""Review proposals: approve or reject each platform submission, from what the site recorded and QC.

A submission is matched to the site's own assignment (MTurk: by its AssignmentId; Prolific: by the
participant id, its latest assignment). The proposal is only a proposal: nothing is sent until a
researcher approves or rejects (``manage.py mturk|prolific approve|reject`` or the study page).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from webapp.crowd import platforms
from webapp.crowd.models import Assignment
from webapp.experiments.models import Experiment
from webapp.lab.qc import compute_qc


@dataclass(frozen=True)
class Submission:
    """One submission as the platform lists it."""

    submission_id: str  # MTurk AssignmentId / Prolific submission id
    worker_id: str  # MTurk WorkerId / Prolific participant id
    status: str  # the platform's own status word (Submitted, Approved, AWAITING REVIEW, ...)


@dataclass
class Proposal:
    """What the site proposes for one submission: ``approve``, ``reject`` or ``manual`` (look yourself)."""

    submission: Submission
    action: str
    reasons: list[str] = field(default_factory=list)
    assignment: Assignment | None = None

    def as_dict(self) -> dict:
        return {"submission_id": self.submission.submission_id, "worker_id": self.submission.worker_id,
                "status": self.submission.status, "action": self.action, "reasons": self.reasons,
                "assignment_state": self.assignment.state if self.assignment else None}


def _local(exp: Experiment, platform: str, subs: list[Submission]) -> dict[str, Assignment]:
    """submission_id -> the site's assignment it stands for (absent when none)."""
    qs = Assignment.objects.filter(experiment=exp, participant__platform=platform)
    qs = qs.select_related("participant")
    if platforms.get(platform).submission_is_assignment:  # the worker must match too
        rows = qs.filter(mturk_assignment_id__in=[s.submission_id for s in subs])
        found = {(a.mturk_assignment_id, a.participant.platform_id): a for a in rows}
        return {s.submission_id: found[k] for s in subs if (k := (s.submission_id, s.worker_id)) in found}
    latest: dict[str, Assignment] = {}
    for a in qs.filter(participant__platform_id__in=[s.worker_id for s in subs]).order_by("created"):
        latest[a.participant.platform_id] = a  # the last one wins
    return {s.submission_id: latest[s.worker_id] for s in subs if s.worker_id in latest}


def propose(exp: Experiment, platform: str, submissions: Iterable[Submission]) -> list[Proposal]:
    """A proposal per submission: approve a completed, unflagged assignment; reject a flagged one (QC's
    reasons) or one not completed here; ``manual`` when the site has no assignment for it."""
    subs = list(submissions)
    local = _local(exp, platform, subs)
    qc = compute_qc(exp) if local else {}
    out = []
    for s in subs:
        a = local.get(s.submission_id)
        if a is None:
            out.append(Proposal(s, "manual", ["no assignment on this site matches this submission"]))
        elif a.state != "completed":
            out.append(Proposal(s, "reject", [f"the assignment was not completed here (it is {a.state})"], a))
        elif (p := qc.get(a.participant_id)) is not None and p.flagged:
            out.append(Proposal(s, "reject", list(p.reasons), a))
        else:
            out.append(Proposal(s, "approve", [], a))
    return out
