"""The Recruiting page's view of each platform: one object per platform with the same few actions
(connect, create, list, review, decide, pay a bonus), wrapping ``mturk.py`` and ``prolific.py``.

Every action returns lines to show the researcher; a platform's refusal raises ``RemoteError`` (one line,
the platform's own message, what exists where). The commands (``manage.py mturk|prolific``) call the two
modules directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db.models import QuerySet

from webapp.experiments.models import Experiment
from webapp.recruit import mturk, prolific
from webapp.recruit.models import Decision, PlatformStudy
from webapp.recruit.review import Proposal

RemoteError = (mturk.MTurkError, prolific.ProlificError)


@dataclass(frozen=True)
class Field:
    """One input of the create form."""

    name: str
    label: str
    default: str = ""
    required: bool = True
    kind: str = "text"  # an <input type>


class Remote(ABC):
    """What the Recruiting page may do on one platform."""

    name: ClassVar[str]
    label: ClassVar[str]
    has_sandbox: ClassVar[bool] = False
    waiting: ClassVar[str]  # the platform's status word for a submission awaiting a decision
    create_label: ClassVar[str]
    create_fields: ClassVar[tuple[Field, ...]]
    verdicts: ClassVar[tuple[str, ...]] = ("approve", "reject")

    @abstractmethod
    def connect(self, live: bool) -> Any:
        ...

    def records(self, exp: Experiment) -> QuerySet[PlatformStudy]:
        return PlatformStudy.objects.filter(experiment=exp, platform=self.name).order_by("-id")

    def decisions(self, exp: Experiment) -> QuerySet[Decision]:
        return Decision.objects.filter(experiment=exp, platform=self.name).order_by("-id")

    @abstractmethod
    def create(self, exp: Experiment, conn: Any, values: dict[str, str], user: Any) -> list[str]:
        ...

    @abstractmethod
    def overview(self, exp: Experiment, conn: Any) -> list[str]:
        ...

    @abstractmethod
    def review(self, exp: Experiment, conn: Any) -> list[Proposal]:
        ...

    @abstractmethod
    def decide(self, exp: Experiment, conn: Any, action: str, ids: list[str], reason: str, user: Any
               ) -> list[str]:
        ...

    @abstractmethod
    def decide_proposed(self, exp: Experiment, conn: Any, action: str, user: Any) -> list[str]:
        """Send ``action`` (approve / reject) to every waiting submission the review proposes it for."""
        ...

    @abstractmethod
    def bonus(self, exp: Experiment, conn: Any, submission_id: str, amount: str, reason: str, user: Any
              ) -> list[str]:
        ...


def _optional_int(value: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise prolific.ProlificUsageError(f"{value!r} is not a whole number") from None


class MTurkRemote(Remote):
    name, label, has_sandbox, waiting = "mturk", "Amazon MTurk", True, "Submitted"
    create_label = "Create a HIT"
    create_fields = (
        Field("reward", "Reward per assignment (USD)", "0.50"),
        Field("assignments", "Assignments (empty: what the plan still needs)", "", False, "number"),
        Field("frame_height", "Frame height (px, 0 = whole window)", "0", True, "number"),
        Field("lifetime_hours", "Open for (hours)", "72", True, "number"),
    )

    def connect(self, live: bool) -> Any:
        return mturk.client(live=live)

    def create(self, exp, conn, values, user):
        try:
            numbers = {k: int(values.get(k) or 0) for k in ("frame_height", "lifetime_hours")}
            assignments = int(values["assignments"]) if values.get("assignments", "").strip() else None
        except ValueError:
            raise mturk.MTurkError("assignments, frame height and hours must be whole numbers: nothing was "
                                   "sent") from None
        mturk.check_study(exp, hit=True)
        r = mturk.create_hit(exp, conn, reward=values.get("reward", ""), assignments=assignments,
                             frame_height=numbers["frame_height"], lifetime_hours=numbers["lifetime_hours"],
                             user=user)
        found = " (MTurk had made it already: found by its token)" if r.found else ""
        lines = [f"HIT {r.hit_id}: {r.assignments} assignments at ${r.reward}{found}"]
        return lines + ([f"Workers see it at {r.preview}"] if r.preview else [])

    def overview(self, exp, conn):
        b = mturk.balance(conn)
        lines = [f"Balance: ${b.available} available" + (f", ${b.on_hold} on hold" if b.on_hold else "")]
        for h in mturk.list_hits(exp, conn):
            counts = "/".join("-" if v is None else str(v)
                              for v in (h.available, h.pending, h.completed, h.max_assignments))
            lines.append(f"HIT {h.hit_id or '(token ' + h.request_token[:8] + ')'}: {h.status}, "
                         f"available/pending/completed/max {counts}, ${h.reward}"
                         + (f" — {h.error}" if h.error else ""))
        return lines

    def review(self, exp, conn):
        return mturk.review(exp, conn)

    def decide(self, exp, conn, action, ids, reason, user):
        if action == "approve":
            return [self._line(r) for r in mturk.approve(exp, conn, ids, user=user, feedback=reason)]
        return [self._line(r) for r in mturk.reject(exp, conn, ids, reason, user=user)]

    def decide_proposed(self, exp, conn, action, user):
        proposed = [p for p in mturk.review(exp, conn)
                    if p.action == action and p.submission.status == self.waiting]
        if not proposed:
            return [f"Nothing proposed to {action}."]
        ids = [p.submission.submission_id for p in proposed]
        if action == "approve":
            return [self._line(r) for r in mturk.approve(exp, conn, ids, user=user)]
        reasons = {p.submission.submission_id:
                   ("Quality control: " + "; ".join(p.reasons))[:mturk.MAX_FEEDBACK] for p in proposed}
        return [self._line(r) for r in mturk.reject(exp, conn, ids, reasons, user=user)]

    def bonus(self, exp, conn, submission_id, amount, reason, user):
        return [self._line(mturk.bonus(exp, conn, submission_id, amount, reason, user=user))]

    @staticmethod
    def _line(r: mturk.DecisionResult) -> str:
        return f"{r.assignment_id} ({r.worker_id or '?'}): {r.action} {r.outcome}" + (
            f": {r.message}" if r.message else "")


class ProlificRemote(Remote):
    name, label, waiting = "prolific", "Prolific", "AWAITING REVIEW"
    create_label = "Create the Prolific study (a draft; it is published when the study goes live here)"
    create_fields = (
        Field("reward_cents", "Reward (pence/cents)", "150", True, "number"),
        Field("minutes", "Estimated minutes", "10", True, "number"),
        Field("places", "Places (empty: what the plan still needs)", "", False, "number"),
        Field("description", "Description shown on Prolific", "", False),
    )
    verdicts = ("approve", "reject", "return")

    def connect(self, live: bool) -> Any:
        return prolific.client_from_env()

    def create(self, exp, conn, values, user):
        reward = _optional_int(values.get("reward_cents", ""))
        minutes = _optional_int(values.get("minutes", ""))
        if reward is None or minutes is None:
            raise prolific.ProlificUsageError("reward and minutes are required: nothing was sent")
        row = prolific.create_study(exp, conn, url=None, reward=reward, minutes=minutes,
                                    places=_optional_int(values.get("places", "")),
                                    description=values.get("description", "").strip() or exp.question,
                                    user=user, publish=exp.status == "live")
        return [f"Prolific study {row.remote_id} ({row.details.get('status', 'draft')})"]

    def overview(self, exp, conn):
        study = prolific.linked_study(exp)
        if study is None:
            return ["No Prolific study yet."]
        subs = prolific.submissions(exp, conn)
        counts: dict[str, int] = {}
        for s in subs:
            counts[s.status] = counts.get(s.status, 0) + 1
        seen = ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())) or "none yet"
        return [f"Prolific study {study.remote_id}: submissions {seen}"]

    def review(self, exp, conn):
        return prolific.review(exp, conn)

    def decide(self, exp, conn, action, ids, reason, user):
        if action == "approve":
            outcomes = prolific.approve(exp, conn, ids, user=user)
        elif action == "return":
            outcomes = prolific.request_return(exp, conn, ids, reasons=[reason], user=user)
        else:
            message = prolific.rejection_message(exp, [], reason or None)
            outcomes = prolific.reject(exp, conn, ids, reason=message, category="OTHER", user=user)
        return [o.line() for o in outcomes]

    def decide_proposed(self, exp, conn, action, user):
        run = prolific.approve_proposed if action == "approve" else prolific.reject_proposed
        return [o.line() for o in run(exp, conn, user=user)] or [f"Nothing proposed to {action}."]

    def bonus(self, exp, conn, submission_id, amount, reason, user):
        return [prolific.bonus(exp, conn, submission_id, amount, reason, user=user).line()]


REMOTES: dict[str, Remote] = {r.name: r for r in (MTurkRemote(), ProlificRemote())}


def for_experiment(exp: Experiment) -> Remote | None:
    """The platform ``exp`` recruits on, if the lab can drive it (an open link has nothing to drive)."""
    return REMOTES.get(exp.platform)
