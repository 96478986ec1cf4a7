"""Researcher REST API: token (``Authorization: Token KEY``) or session auth; only owned experiments.

Create a token with ``python manage.py drf_create_token USERNAME`` (or in the admin under Auth Token).
"""

from base64 import b64decode
from urllib.parse import parse_qs

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.lab.access import BIGINT_MAX, experiment_for, experiments_for, parse_bounded_int
from webapp.lab.api import serializers as s
from webapp.lab.qc import compute_qc, qc_rules


class LabAPIMixin:
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    schema = AutoSchema()


class ExperimentList(LabAPIMixin, generics.ListAPIView):
    """Experiments the caller owns (all for superusers), with progress."""

    serializer_class = s.ExperimentSerializer
    pagination_class = None

    def get_queryset(self):
        return experiments_for(self.request.user)


class ExperimentDetail(LabAPIMixin, generics.RetrieveAPIView):
    """One experiment with its settings and progress; 404 when not the caller's."""

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
        from webapp.crowd.models import Judgment

        exp = experiment_for(self.request.user, self.kwargs["slug"])
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
        exp = experiment_for(request.user, slug)
        rows = list(compute_qc(exp).values())
        return Response({"rules": qc_rules(exp),
                         "participants": s.ParticipantQCSerializer(rows, many=True).data})


def _job_json(request, job) -> dict:
    from django.urls import reverse

    out = {"id": str(job.id), "state": job.state, "stage": job.stage, "done": job.done, "total": job.total,
           "percent": job.percent, "exclude_flagged": job.exclude_flagged,
           "include_simulated": job.include_simulated, "created": job.created, "finished": job.finished,
           "error": job.error or None, "url": request.build_absolute_uri(
               reverse("lab:api-export-job", args=[job.experiment.slug, job.id]))}
    if job.state == "done":
        out["download"] = request.build_absolute_uri(
            reverse("lab:api-export-zip", args=[job.experiment.slug, job.id]))
    return out


class ExportJobs(LabAPIMixin, APIView):
    """Exports (BAPPS layout + judgment log + manifest as a zip) built in the background: POST starts one
    (202, with the URL to follow), GET lists this study's."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, slug):
        exp = experiment_for(request.user, slug)
        return Response([_job_json(request, j) for j in exp.export_jobs.select_related("experiment")[:20]])

    @extend_schema(
        parameters=[OpenApiParameter("exclude_flagged", OpenApiTypes.BOOL,
                                     description="leave out QC-flagged"),
                    OpenApiParameter("include_simulated", OpenApiTypes.BOOL,
                                     description="keep simulated participants (simulate_crowd)")],
        request=None, responses={202: OpenApiTypes.OBJECT},
    )
    def post(self, request, slug):
        from webapp.lab.jobs import start_export
        from webapp.lab.views import export_flags

        exp = experiment_for(request.user, slug)
        try:
            flags = export_flags(request.query_params)
        except ValueError as exc:
            name, _, msg = str(exc).partition(": ")
            raise ValidationError({name: msg}) from None
        job = start_export(exp, request.user, **flags)
        job.experiment = exp
        return Response(_job_json(request, job), status=202)


def _job(request, slug, job):
    from webapp.lab.models import ExportJob

    exp = experiment_for(request.user, slug)
    try:
        return ExportJob.objects.select_related("experiment").get(pk=job, experiment=exp)
    except ExportJob.DoesNotExist:
        raise NotFound("no such export") from None


class ExportJobDetail(LabAPIMixin, APIView):
    """One export: its state and progress; ``download`` once the zip is ready."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, slug, job):
        return Response(_job_json(request, _job(request, slug, job)))


class ExportJobZip(LabAPIMixin, APIView):
    """The zip of a finished export (409 while it is being built)."""

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, slug, job):
        from webapp.lab.views import export_file

        return export_file(_job(request, slug, job))
