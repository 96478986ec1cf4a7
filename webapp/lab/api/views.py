"""Researcher REST API: token (``Authorization: Token KEY``) or session auth. Each endpoint asks
``access.experiment_for`` for the role it needs: reads are the viewer's, starting an export the editor's,
erasing a participant the owner's (404 on a study the caller has no role on, 403 for a lower role).

Create a token with ``python manage.py drf_create_token USERNAME`` (or in the admin under Auth Token).
"""

import re
from base64 import b64decode
from urllib.parse import parse_qs

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.crowd.erasure import NotErasable, erase_participant
from webapp.crowd.models import Erasure, Judgment, Participant
from webapp.experiments.access import experiment_for, experiments_for
from webapp.lab.api import serializers as s
from webapp.lab.export import opaque_id
from webapp.lab.jobs import start_export, zip_response
from webapp.lab.models import ExportJob
from webapp.lab.params import BIGINT_MAX, parse_bounded_int, parse_flag
from webapp.lab.qc import compute_qc, qc_rules


def _erasure_json(record) -> dict:
    return {"id": record.pk, "kind": record.kind, "via": record.via, "created": record.created,
            "reason": record.reason, "judgments": record.judgments, "assignments": record.assignments}


def _erase(request, exp, participant_id: int, body: dict):
    """Erase participant ``participant_id`` of ``exp`` for the API's caller (``body``: the request's checked
    JSON object, with the reason); 200 with the erasure record, 404 when the study has no such participant."""
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise ValidationError({"reason": "expected text of at most 2000 characters"})
    try:
        record = erase_participant(participant_id, exp, kind=Erasure.ERASURE, via="api", by=request.user,
                                   reason=reason.replace("\x00", ""))
    except NotErasable:
        raise NotFound("no such participant in this study") from None
    return Response({"erasure": _erasure_json(record)})


def _body(request) -> dict:
    """The request's JSON object body ({} when empty); ParseError/ValidationError otherwise."""
    try:
        body = request.data
    except RecursionError:  # nested past the parser's depth
        raise ParseError("JSON nested too deeply") from None
    if not body:
        return {}
    if not isinstance(body, dict):
        raise ValidationError({"body": "expected a JSON object"})
    return body


class LabAPIMixin:
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    schema = AutoSchema()


class ExperimentList(LabAPIMixin, generics.ListAPIView):
    """Experiments the caller holds any role on (all for superusers), with the role and progress."""

    serializer_class = s.ExperimentSerializer
    pagination_class = None

    def get_queryset(self):
        return experiments_for(self.request.user)


class ExperimentDetail(LabAPIMixin, generics.RetrieveAPIView):
    """One experiment with its settings, the caller's role and progress; 404 without a role on it."""

    serializer_class = s.ExperimentDetailSerializer
    lookup_field = "slug"

    def get_queryset(self):
        return experiments_for(self.request.user)


class JudgmentCursor(CursorPagination):
    """DRF's cursor pagination, but malformed ``page_size`` / ``cursor`` values are refused (400 / 404)
    instead of silently falling back to the defaults / the first page, or reaching int() or the query
    unchecked (a 500)."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            return parse_bounded_int(raw, 1, self.max_page_size)
        except ValueError as exc:
            raise ValidationError({"page_size": str(exc)}) from None

    def get_schema_operation_parameters(self, view) -> list[dict]:
        """DRF's parameters, with the page size's bounds documented."""
        params = super().get_schema_operation_parameters(view)
        for p in params:
            if p["name"] == self.page_size_query_param:
                p["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return params

    def decode_cursor(self, request) -> Cursor | None:
        """The cursor DRF encoded (``o`` offset, ``r`` reverse, ``p`` last id), every field checked."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            fields = parse_qs(b64decode(encoded.encode("ascii"), validate=True).decode("ascii"),
                              keep_blank_values=True, strict_parsing=True)
            if not set(fields) <= {"o", "r", "p"} or any(len(v) != 1 for v in fields.values()):
                raise ValueError("unknown or repeated field")
            one = {k: v[0] for k, v in fields.items()}
            offset = parse_bounded_int(one.get("o", "0"), 0, self.offset_cutoff)
            reverse = parse_bounded_int(one.get("r", "0"), 0, 1) == 1
            position = str(parse_bounded_int(one["p"], 0, BIGINT_MAX)) if "p" in one else None
        except ValueError:  # not ASCII, not base64, not a query string, a field out of range
            raise NotFound(self.invalid_cursor_message) from None
        return Cursor(offset=offset, reverse=reverse, position=position)


class JudgmentList(LabAPIMixin, generics.ListAPIView):
    """All judgments of an experiment in storage order, cursor-paginated (``next`` link)."""

    serializer_class = s.JudgmentSerializer
    pagination_class = JudgmentCursor

    def get_queryset(self):
        exp = experiment_for(self.request.user, self.kwargs["slug"], "viewer")
        return (
            Judgment.objects.filter(trial__experiment=exp)
            .select_related("assignment", "item", "trial", "trial__stimulus_a", "trial__stimulus_b",
                            "left_stimulus")
            .defer("trial__stimulus_a__encoded", "trial__stimulus_b__encoded", "left_stimulus__encoded")
        )


@extend_schema(responses=s.QCResponseSerializer)  # on the class: keeps the spectacular AutoSchema base
class ParticipantQC(LabAPIMixin, APIView):
    """QC numbers per participant and the rules applied (practice trials excluded)."""

    def get(self, request, slug):
        exp = experiment_for(request.user, slug, "viewer")
        rows = list(compute_qc(exp).values())
        return Response({"rules": qc_rules(exp),
                         "participants": s.ParticipantQCSerializer(rows, many=True).data})


def _job_json(request, job) -> dict:
    url = request.build_absolute_uri(f"/api/experiments/{job.experiment.slug}/export/?job={job.id}")
    out = {"id": str(job.id), "state": job.state, "stage": job.stage, "done": job.done, "total": job.total,
           "percent": job.percent, "exclude_flagged": job.exclude_flagged,
           "include_simulated": job.include_simulated, "created": job.created, "finished": job.finished,
           "error": job.error or None, "url": url}
    if job.state == "done":
        out["download"] = url + "&zip=1"
    return out


EXPORT_FLAGS = ("exclude_flagged", "include_simulated")


@extend_schema(
    parameters=[OpenApiParameter("exclude_flagged", OpenApiTypes.BOOL, description="leave out QC-flagged"),
                OpenApiParameter("include_simulated", OpenApiTypes.BOOL,
                                 description="keep simulated participants (simulate_crowd)")],
)
class ExportJobs(LabAPIMixin, APIView):
    """Exports (BAPPS layout + judgment log + manifest, as a zip) built in the background by the task
    worker. POST starts one (202; its ``url`` tells the progress). GET lists this study's latest 20 as
    ``{"exports": [...]}`` (with the flags: those made with them), ``?job=ID`` one of them,
    ``?job=ID&zip=1`` its zip (409 while being built)."""

    @extend_schema(parameters=[OpenApiParameter("job", OpenApiTypes.UUID, description="one export"),
                               OpenApiParameter("zip", OpenApiTypes.BOOL,
                                                description="with job: the zip itself")],
                   responses={200: OpenApiTypes.OBJECT, (200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, slug):
        exp = experiment_for(request.user, slug, "viewer")
        flags = self._flags(request)
        jobs = exp.export_jobs.select_related("experiment").filter(
            **{k: v for k, v in flags.items() if k in request.query_params})
        job_id = request.query_params.get("job")
        if job_id is None:
            return Response({"exports": [_job_json(request, j) for j in jobs[:20]]})
        try:
            job = jobs.get(pk=job_id)
        except (ExportJob.DoesNotExist, DjangoValidationError):
            raise NotFound("no such export") from None
        try:
            want_zip = parse_flag(request.query_params.get("zip"))
        except ValueError as exc:
            raise ValidationError({"zip": str(exc)}) from None
        return zip_response(job) if want_zip else Response(_job_json(request, job))

    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request, slug):
        exp = experiment_for(request.user, slug, "editor")
        flags = self._flags(request)
        try:
            body = request.data  # an empty body, or a JSON object of the flags only
        except RecursionError:  # nested past the parser's depth
            raise ParseError("JSON nested too deeply") from None
        if not isinstance(body, dict) or set(body) - set(EXPORT_FLAGS):
            raise ValidationError({"body": "expected nothing or a JSON object of " + ", ".join(EXPORT_FLAGS)})
        for name in EXPORT_FLAGS:
            if name in body:
                if not isinstance(body[name], bool):
                    raise ValidationError({name: "expected true or false"})
                flags[name] = body[name]
        job = start_export(exp, request.user, **flags)
        job.experiment = exp
        return Response(_job_json(request, job), status=202)

    @staticmethod
    def _flags(request) -> dict[str, bool]:
        flags = {}
        for name in EXPORT_FLAGS:
            try:
                flags[name] = parse_flag(request.query_params.get(name))
            except ValueError as exc:
                raise ValidationError({name: str(exc)}) from None
        return flags


_OPAQUE = re.compile(r"[0-9a-f]{16}")


class ParticipantErasure(LabAPIMixin, APIView):
    """DELETE erases one participant of the study: their judgments, assignments and ids (one transaction;
    the trials they held are offered again); an erasure record that names nobody is kept and counted in
    later exports' manifest. ``participant`` is the opaque id of ``qc/`` and ``judgments/``. Optional JSON
    body ``{"reason": "..."}``. Owner only. 200 with the record; 404 for a study the caller has no role on
    or an unknown (or already erased) participant, 403 for a lower role, and nothing changes."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def delete(self, request, slug, participant):
        exp = experiment_for(request.user, slug, "owner")
        body = _body(request)
        if set(body) - {"reason"}:
            raise ValidationError({"body": "expected nothing or a JSON object of reason"})
        if _OPAQUE.fullmatch(participant):
            for pk in Participant.objects.filter(experiment=exp).values_list("pk", flat=True).iterator():
                if opaque_id("participant", str(pk)) == participant:
                    return _erase(request, exp, pk, body)
        raise NotFound("no such participant in this study")


class ParticipantErasureByPlatformId(LabAPIMixin, APIView):
    """POST ``{"platform_id": "...", "platform": optional, "reason": optional}`` erases the participant
    with this platform id (Prolific PID, MTurk WorkerId, ...), as DELETE on ``participants/<id>/`` does:
    for a participant who asks by the id they know. 404 when the study has none; 400 when the id is a
    participant on two platforms and ``platform`` does not say which."""

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, slug):
        exp = experiment_for(request.user, slug, "owner")
        body = _body(request)
        if set(body) - {"platform_id", "platform", "reason"}:
            raise ValidationError({"body": "expected a JSON object of platform_id, platform, reason"})
        pid, platform = body.get("platform_id"), body.get("platform")
        if not isinstance(pid, str) or not pid or len(pid) > 200:
            raise ValidationError({"platform_id": "expected the participant's platform id (text)"})
        if platform is not None and not isinstance(platform, str):
            raise ValidationError({"platform": "expected a platform name"})
        found = Participant.objects.filter(experiment=exp, platform_id=pid.replace("\x00", ""))
        if platform:
            found = found.filter(platform=platform)
        rows = list(found.values_list("pk", flat=True)[:2])
        if not rows:
            raise NotFound("no such participant in this study")
        if len(rows) > 1:
            raise ValidationError({"platform": "this id is a participant on two platforms: name one"})
        return _erase(request, exp, rows[0], body)
