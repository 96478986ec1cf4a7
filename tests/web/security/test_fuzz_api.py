"""Schemathesis against the researcher API's own OpenAPI schema (``/api/schema/``), with a real token.

Positive and negative cases for every operation go through the real WSGI application; each must pass
schemathesis' checks (no 5xx, documented content types and response schemas, schema-invalid input
rejected) and leave the database unchanged. Unsafe methods, hostile ``format``/``Accept`` values and
anonymous or foreign callers are tried on every path as well.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from tests.web.conftest import enter
from tests.web.security.hostile import HTML_INJECTION, SQL_INJECTION, assert_clean, probe

CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance, negative_data_rejection]
PATHS = ["/api/experiments/", "/api/experiments/{slug}/", "/api/experiments/{slug}/judgments/",
         "/api/experiments/{slug}/qc/", "/api/experiments/{slug}/export/"]  # the paths with a GET
ERASE_PATHS = ["/api/experiments/{slug}/participants/erase/",  # POST and DELETE only
               "/api/experiments/{slug}/participants/{participant}/"]


@contextmanager
def same_connection():
    """Keep Django from closing the test transaction's connection around in-process WSGI requests
    (what django.test.Client does for its own requests)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_world(client, experiment_factory, django_user_model):
    """Two researchers' experiments with judgments; a token for the first researcher."""
    from webapp.experiments.models import Experiment

    exp = experiment_factory()
    other = experiment_factory()
    bob = django_user_model.objects.create_user("bob-sec", password="pw-bob")
    Experiment.objects.filter(pk=other.pk).update(owner=bob)
    a = enter(client, exp)
    for item in a.items.order_by("position")[:3]:
        body = {"uuid": f"00000000-0000-4000-8000-{item.position:012d}", "position": item.position,
                "choice": "left", "response_ms": 700}
        r = client.post(f"/a/{a.token}/judge", json.dumps(body), content_type="application/json",
                        headers={"X-Assignment-Token": str(a.token)})
        assert r.status_code == 201
    key = Token.objects.create(user=exp.owner).key
    return {"exp": exp, "other": other, "auth": {"Authorization": f"Token {key}"}}


EXPORT_WRITES = ("lab_exportjob", "django_tasks_database_dbtaskresult")


def out_ok(case) -> bool:
    """Whether ``case`` is the export POST (the API's only write endpoint)."""
    return case.path == "/api/experiments/{slug}/export/"


class _Status:
    """Adapter so ``probe`` can record a schemathesis response."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.content = response.content or b""


def _fuzz_operation(strategy, mode: GenerationMode, auth: dict, foreign_slug: str):
    """A hypothesis test sending each generated case once and checking it (schemathesis + database)."""

    @hsettings(max_examples=25, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        failures = []

        def send():
            response = case.call(headers=auth)
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
            except AssertionError as exc:  # schemathesis' FailureGroup is one
                failures.append(str(exc)[:600])
            return _Status(response)

        label = f"{case.method} {case.formatted_path} query={case.query}"
        # the one write of the API: a valid POST to export/ queues a background export (a job and its task)
        writes = EXPORT_WRITES if case.method == "POST" and out_ok(case) else ()
        out = probe(f"api.schemathesis.{mode.value}", label, send, expect=range(200, 500), writes=writes)
        assert not failures, failures[0]
        if (case.path_parameters or {}).get("slug") == foreign_slug:  # another researcher's experiment
            assert out.status in (400, 404), out.status

    return run


def test_schemathesis_openapi(api_world):
    app = get_wsgi_application()
    auth = api_world["auth"]
    with same_connection():
        schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
        operations = [r.ok() for r in schema.get_all_operations()]
        assert sorted({op.path for op in operations}) == sorted(PATHS + ERASE_PATHS)
        for op in operations:
            # any string is a valid ``slug``: only typed query parameters have schema-invalid values
            modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * bool(op.query)
            for mode in modes:
                strategy = op.as_strategy(generation_mode=mode)
                # Most generated slugs are unknown (404); pin half of the cases to real slugs so the
                # query parameters are exercised on experiments that exist, the caller's and another's.
                if "slug" in op.path:
                    pinned = [op.as_strategy(generation_mode=mode, path_parameters={"slug": e.slug})
                              for e in (api_world["exp"], api_world["other"])]
                    strategy = strategy | pinned[0] | pinned[1]
                _fuzz_operation(strategy, mode, auth, api_world["other"].slug)()
    assert_clean("api.schemathesis", 150)


def test_unsafe_methods_formats_and_callers(client, api_world):
    """Every path x (POST, PUT, PATCH, DELETE) with hostile bodies and content types, hostile ``format``
    and ``Accept``, anonymous and bogus tokens: 4xx, nothing changes."""
    from django.test import Client

    exp, other = api_world["exp"], api_world["other"]
    auth = {"HTTP_AUTHORIZATION": api_world["auth"]["Authorization"]}
    c = Client(raise_request_exception=False)
    urls = [p.replace("{slug}", exp.slug) for p in PATHS] + ["/api/schema/"]
    bodies = [("application/json", json.dumps({"status": "closed", "slug": "x"})),
              ("application/x-www-form-urlencoded", "status=closed"),
              ("text/plain", "' OR 1=1 --"),
              ("application/xml", "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>"),
              ("application/json", "[" * 3000)]
    for url in urls:
        for method in ("post", "put", "patch", "delete"):
            for ctype, body in bodies:
                probe("api.methods", f"{method} {url} {ctype}", getattr(c, method), url, body,
                      content_type=ctype, **auth)
        for fmt in ["xml", "yaml", "../../etc/passwd", "<script>", "%00"]:
            probe("api.format", f"{url}?format={fmt}", c.get, url, {"format": fmt}, **auth,
                  expect={200, 404} if url == "/api/schema/" else {404})
        for accept in ["application/xml", "text/html", "*/*;q=abc", "application/json; version=<x>"]:
            probe("api.accept", f"{url} Accept={accept}", c.get, url, HTTP_ACCEPT=accept, **auth,
                  expect={200, 406})
    callers = {"anonymous": {}, "bogus token": {"HTTP_AUTHORIZATION": "Token 0000"},
               "SQL token": {"HTTP_AUTHORIZATION": "Token ' OR '1'='1"},
               "HTML token": {"HTTP_AUTHORIZATION": f"Token {HTML_INJECTION[0]}"},
               "bearer scheme": {"HTTP_AUTHORIZATION": "Bearer x"},
               "token with spaces": {"HTTP_AUTHORIZATION": "Token a b c"},
               "empty token": {"HTTP_AUTHORIZATION": "Token "}}
    for who, hdr in callers.items():
        for url in urls[:-1]:
            probe("api.auth", f"{who} {url}", c.get, url, **hdr, expect={401})
    for url in [p.replace("{slug}", other.slug) for p in PATHS[1:]]:
        probe("api.auth", f"foreign {url}", c.get, url, **auth, expect={404})
    # the erasure endpoints, with a participant that exists (the caller's own, and one of another study)
    from webapp.crowd.models import Participant
    from webapp.lab.export import opaque_id

    mine = opaque_id("participant", str(Participant.objects.get(experiment=exp).pk))
    erase_urls = [p.replace("{participant}", mine).replace("{slug}", s) for p in ERASE_PATHS
                  for s in (exp.slug, other.slug)]
    for url in erase_urls:
        for method in ("get", "put", "patch"):
            probe("api.erase", f"{method} {url}", getattr(c, method), url, **auth, expect={404, 405})
        for ctype, body in bodies:  # a body that is not a JSON object of the fields, or a foreign study
            send = c.delete if url.endswith(f"{mine}/") else c.post
            probe("api.erase", f"{send.__name__} {url} {ctype}", send, url, body, content_type=ctype, **auth,
                  expect={400, 404, 415})
        for who, hdr in callers.items():
            probe("api.erase", f"{who} delete {url}", c.delete, url, **hdr, expect={401})
    for payload in SQL_INJECTION + HTML_INJECTION:
        judgments, export = f"/api/experiments/{exp.slug}/judgments/", f"/api/experiments/{exp.slug}/export/"
        probe("api.params", f"page_size={payload}", c.get, judgments, {"page_size": payload}, **auth,
              expect={400})
        probe("api.params", f"cursor={payload}", c.get, judgments, {"cursor": payload}, **auth, expect={404})
        probe("api.params", f"exclude_flagged={payload}", c.get, export, {"exclude_flagged": payload}, **auth,
              expect={400})
    assert_clean("api.", 240)
