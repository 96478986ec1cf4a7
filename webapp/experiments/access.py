"""Who may do what on which experiment: the one place that decides (dashboard, API, exports, admin).

Roles, lowest first: ``viewer`` (reads the study, its plots, QC, scale and existing exports, and the API),
``editor`` (also changes status and sampling and starts exports), ``owner`` (also spends money and decides
on the platform, erases participants and manages members). The experiment's ``owner`` field counts as the
owner role; other users hold a role through a ``Membership``; superusers are owners everywhere. A user
with no role never learns that a study exists (404); a lower role than needed gets 403.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Case, CharField, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import Http404

from webapp.experiments.models import Experiment, Membership

ROLES = ("viewer", "editor", "owner")  # lowest first
RANK = {role: i for i, role in enumerate(ROLES)}


def at_least(role: str | None, need: str) -> bool:
    """Whether ``role`` (None: no role) includes what ``need`` may do."""
    return role is not None and RANK[role] >= RANK[need]


class RoleTooLow(PermissionDenied):
    """The user has a role on the study, lower than the action needs (403)."""

    def __init__(self, role: str, need: str) -> None:
        super().__init__(f"this needs the {need} role on the study; yours is {role}")
        self.role, self.need = role, need


def experiments_for(user, need: str = "viewer") -> QuerySet[Experiment]:
    """Experiments on which ``user`` holds at least role ``need`` (none for anonymous users), newest first,
    each annotated with ``user_role``: the user's role on it."""
    if need not in RANK:
        raise ValueError(f"need must be one of {', '.join(ROLES)}")
    qs = Experiment.objects.all().order_by("-created", "slug")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser:
        return qs.annotate(user_role=Value("owner", output_field=CharField()))
    member = Membership.objects.filter(experiment=OuterRef("pk"), user=user)
    qs = qs.filter(Q(owner=user) | Exists(member)).annotate(user_role=_role_expression(user, member))
    return qs if need == "viewer" else qs.filter(user_role__in=ROLES[RANK[need]:])


def _role_expression(user, member: QuerySet[Membership]):
    return Case(When(owner=user, then=Value("owner")), default=Subquery(member.values("role")[:1]),
                output_field=CharField())


def role_of(user, exp: Experiment) -> str | None:
    """``user``'s role on ``exp``: ``viewer``, ``editor``, ``owner``, or None."""
    if not user.is_authenticated:
        return None
    if user.is_superuser or (exp.owner_id is not None and exp.owner_id == user.pk):
        return "owner"
    return Membership.objects.filter(experiment=exp, user=user).values_list("role", flat=True).first()


def experiment_for(user, slug: str, need: str = "viewer") -> Experiment:
    """The experiment ``slug`` with ``user_role`` set, if ``user`` holds at least role ``need`` on it.
    Http404 when the user holds no role on it (never reveals that it exists), ``RoleTooLow`` (403) when
    the role is lower than ``need``."""
    try:
        exp = experiments_for(user).get(slug=slug)
    except Experiment.DoesNotExist:
        raise Http404("no such experiment") from None
    require(exp, need)
    return exp


def require(exp: Experiment, need: str) -> None:
    """``RoleTooLow`` (403) unless ``exp.user_role`` (set by ``experiment_for``) is at least ``need``: for a
    view whose need depends on what is asked, checked after ``experiment_for`` with the lowest one."""
    if not at_least(exp.user_role, need):
        raise RoleTooLow(exp.user_role, need)


def status_need(status: str, paid: bool) -> str:
    """The role that may set a study to ``status``: setting live a study recruited on a paid platform
    (``paid``: MTurk, Prolific, where it publishes and pays; the caller asks the platform adapter) is the
    owner's, any other change the editor's."""
    return "owner" if status == "live" and paid else "editor"


# --- members -----------------------------------------------------------------------------------------------


class MembershipError(ValueError):
    """A membership change that is refused (unknown role, the owner of record, the last owner)."""


def members(exp: Experiment) -> list[tuple[object, str, bool]]:
    """``(user, role, is_owner_of_record)`` of everyone with a role on ``exp`` (superusers aside), the
    owner of record first, then by username."""
    rows = [(exp.owner, "owner", True)] if exp.owner_id is not None else []
    for m in exp.memberships.select_related("user").exclude(user_id=exp.owner_id).order_by("user__username"):
        rows.append((m.user, m.role, False))
    return rows


def _owners_left(exp: Experiment, without_user_id: int) -> int:
    n = exp.memberships.filter(role="owner").exclude(user_id=without_user_id)
    if exp.owner_id is not None:
        n = n.exclude(user_id=exp.owner_id)
    return n.count() + (exp.owner_id is not None)


def _lock(exp: Experiment) -> Experiment:
    """``exp`` re-read with its row locked: concurrent membership changes of one study run one after the
    other, so two owners removing each other cannot both pass the last-owner check."""
    return Experiment.objects.select_for_update().get(pk=exp.pk)


def set_role(exp: Experiment, user, role: str, by=None) -> Membership:
    """Give ``user`` role ``role`` on ``exp`` (add or change), recorded as added by ``by``. MembershipError
    for an unknown role, for the owner of record (``exp.owner``: change it in the admin), or when it would
    demote the study's last owner."""
    if role not in RANK:
        raise MembershipError(f"role must be one of {', '.join(ROLES)}")
    with transaction.atomic():
        exp = _lock(exp)
        _not_the_owner_of_record(exp, user)
        current = Membership.objects.filter(experiment=exp, user=user).first()
        demoted = current is not None and current.role == "owner" and role != "owner"
        if demoted and not _owners_left(exp, user.pk):
            raise MembershipError(f"{user.get_username()} is the study's last owner")
        if current is None:
            return Membership.objects.create(experiment=exp, user=user, role=role, added_by=by)
        if current.role != role:
            current.role = role
            current.save(update_fields=["role"])
        return current


def _not_the_owner_of_record(exp: Experiment, user) -> None:
    """MembershipError for the experiment's owner field, whose role is changed in the admin only."""
    if exp.owner_id is not None and exp.owner_id == user.pk:
        raise MembershipError(f"{user.get_username()} is the study's owner of record; that role is "
                              "changed in the admin (the experiment's owner field)")


def remove_member(exp: Experiment, user) -> bool:
    """Take ``user``'s membership of ``exp`` away; False when they had none. MembershipError for the owner
    of record or the study's last owner."""
    with transaction.atomic():
        exp = _lock(exp)
        _not_the_owner_of_record(exp, user)
        current = Membership.objects.filter(experiment=exp, user=user).first()
        if current is None:
            return False
        if current.role == "owner" and not _owners_left(exp, user.pk):
            raise MembershipError(f"{user.get_username()} is the study's last owner")
        current.delete()
        return True


# --- admin -------------------------------------------------------------------------------------------------


class OwnedByResearcherAdmin:
    """Admin mixin: researchers (staff, not superusers) see only rows of experiments they hold a role on,
    and change or delete them only as the experiment's owner (an admin edit can change anything).

    ``experiment_field`` is the lookup from the model to its experiment (``""`` for Experiment itself,
    e.g. ``"experiment"``); without it, it is derived from the older ``owner_field``
    (``"experiment__owner"``).
    """

    owner_field = "owner"
    experiment_field: str | None = None

    def _experiment_lookup(self) -> str:
        if self.experiment_field is not None:
            return self.experiment_field
        return self.owner_field.removesuffix("owner").removesuffix("__")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        lookup = self._experiment_lookup() or "pk"
        return qs.filter(**{f"{lookup}__in": experiments_for(request.user).values("pk")})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A row is added or moved only into a study the user owns."""
        if db_field.related_model is Experiment and not request.user.is_superuser:
            kwargs["queryset"] = experiments_for(request.user, "owner")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def delete_queryset(self, request, queryset):
        """The admin's bulk delete: refused whole when a row belongs to a study the user does not own."""
        if not request.user.is_superuser:
            lookup = self._experiment_lookup() or "pk"
            owned = experiments_for(request.user, "owner").values("pk")
            if queryset.exclude(**{f"{lookup}__in": owned}).exists():
                raise PermissionDenied("only a study's owners delete its rows")
        super().delete_queryset(request, queryset)

    def _experiment_of(self, obj) -> Experiment | None:
        for part in [p for p in self._experiment_lookup().split("__") if p]:
            obj = getattr(obj, part)
        return obj

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._owns(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._owns(request, obj)

    def _owns(self, request, obj) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        exp = self._experiment_of(obj)
        return exp is not None and at_least(role_of(request.user, exp), "owner")
