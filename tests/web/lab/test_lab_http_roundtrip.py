"""Judgments made through the worker's HTTP API come out of the export with the right judge fractions.

Black box on the worker side: each simulated worker enters by the Prolific link, consents, reads its
assignment from ``/a/<token>/state``, fetches both images of every item and recognises the stimuli by their
bytes (as a person recognises the pictures), then chooses by its own rule and POSTs the side. The expected
(n, n choosing p1) per trial is counted on the client from what it chose, never read from the database.
"""

import csv
import hashlib
import io
import json
import uuid
import zipfile
from collections import defaultdict

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def _bytes(resp) -> bytes:
    return b"".join(resp.streaming_content) if resp.streaming else resp.content


def _pixels_digest(png: bytes) -> str:
    """sha256 of the decoded pixels: the served copies are re-encoded (uncompressed), the pixels the same."""
    with Image.open(io.BytesIO(png)) as im:
        return hashlib.sha256(im.convert("RGB").tobytes()).hexdigest()


def _digest(f) -> str:
    with f.open("rb") as fh:
        return _pixels_digest(fh.read())


def _work(exp, workers: int, prolific: bool) -> tuple[dict[int, list[int]], int]:
    """Simulated workers judge whole assignments over HTTP; returns client-side counts and POSTs stored."""
    from webapp.experiments.models import Trial
    from webapp.stimuli.models import Stimulus

    by_digest = {_digest(s.decoded): s for s in Stimulus.objects.filter(reference__in=exp.references.all())}
    trials = Trial.objects.filter(experiment=exp, kind="normal")
    normal = {(t.stimulus_a_id, t.stimulus_b_id): t for t in trials}
    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # trial pk -> [n, n chose b]
    made = 0
    for k in range(workers):
        c = Client()
        ids = {"PROLIFIC_PID": f"W{k}", "STUDY_ID": "S", "SESSION_ID": f"s{k}"} if prolific else {}
        r = c.post(f"/p/{exp.slug}/", {**ids, "consent": "yes"})
        assert r.status_code == 302, r.content[:300]
        token = r["Location"].rstrip("/").split("/")[-1]
        state = c.get(f"/a/{token}/state").json()
        hdr = {"X-Assignment-Token": token}
        for item in state["items"]:
            pos = item["position"]
            left = by_digest[_pixels_digest(_bytes(c.get(item["left"])))]
            right = by_digest[_pixels_digest(_bytes(c.get(item["right"])))]
            # the worker's rule: prefer the higher-quality picture, except worker 0 who always picks left
            if k == 0:
                pick = left
            else:
                pick = max((left, right), key=lambda s: (s.codec == "original", s.quality or 0, s.codec))
            side = "left" if pick == left else "right"
            body = {"uuid": str(uuid.uuid4()), "position": pos, "choice": side, "response_ms": 700 + pos}
            r = c.post(f"/a/{token}/judge", json.dumps(body), content_type="application/json", headers=hdr)
            assert r.status_code == 201, r.content
            made += 1
            # a retried POST (lost response) is answered from storage and stores nothing new
            r = c.post(f"/a/{token}/judge", json.dumps(body), content_type="application/json", headers=hdr)
            assert r.status_code == 200 and r.json()["status"] == "duplicate"
            key = (left.pk, right.pk) if (left.pk, right.pk) in normal else (right.pk, left.pk)
            if not item["practice"] and key in normal:
                t = normal[key]
                expected[t.pk][0] += 1
                expected[t.pk][1] += int(pick.pk == t.stimulus_b_id)
        r = c.post(f"/a/{token}/complete", "{}", content_type="application/json", headers=hdr)
        assert r.status_code == 200
    return expected, made


def _check_export(exp, out, expected, made, participants) -> dict:
    call_command("export_dataset", exp.slug, "--out", str(out), verbosity=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["judgments_in_log"] == made
    assert manifest["counts"]["participants"] == participants
    assert manifest["counts"]["judgments_in_triplets"] == sum(n for n, _ in expected.values())
    assert sum(1 for _ in open(out / "judgments.jsonl")) == made
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert {int(r["trial"]) for r in rows} == set(expected)
    for r in rows:
        n, nb = expected[int(r["trial"])]
        base = out / r["split"] / exp.slug
        assert np.load(base / "judge" / f"{r['index']}.npy")[0] == pytest.approx(nb / n)
        assert np.load(base / "judge_n" / f"{r['index']}.npy")[0] == n
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    return manifest


def test_http_judgments_export_round_trip(transactional_db, world, settings, tmp_path, users):
    settings.CROWD_RATE_LIMIT = 0  # the entry rate limit is tested elsewhere
    exp = world.exp
    exp.platform = "prolific"
    exp.save()
    expected, made = _work(exp, 5, prolific=True)
    out = tmp_path / "ds"
    manifest = _check_export(exp, out, expected, made, participants=5)

    # the same export through the token API
    api = Client(headers={"Authorization": f"Token {Token.objects.create(user=users['alice']).key}"})
    from lab_factories import run_tasks

    job = api.post(f"/api/experiments/{exp.slug}/export/").json()
    run_tasks()  # the background export, by the task worker
    r = api.get(api.get(job["url"]).json()["download"])
    assert r.status_code == 200
    z = zipfile.ZipFile(io.BytesIO(_bytes(r)))
    assert json.loads(z.read(f"{exp.slug}/manifest.json"))["counts"] == manifest["counts"]
    assert z.read(f"{exp.slug}/trials.csv") == (out / "trials.csv").read_bytes()


def test_real_pipeline_http_export_bapps(live_experiment, settings, tmp_path):
    """Real stimuli (import_images + make_stimuli, JPEG), open-link workers over HTTP, export, BAPPS."""
    settings.CROWD_RATE_LIMIT = 0
    exp = live_experiment
    expected, made = _work(exp, 6, prolific=False)
    out = tmp_path / "ds"
    manifest = _check_export(exp, out, expected, made, participants=6)
    assert {c["codec"] for c in manifest["codecs"]} >= {"jpeg"}
    from learning.data import bapps
    splits = [out / s for s in ("train", "val", "test") if (out / s).is_dir()]
    sets = bapps.load_2afc(splits)
    assert sum(len(s) for s in sets) == len(expected)
    got = sorted(float(j) for s in sets for j in s.judges)
    assert np.allclose(got, sorted(nb / n for n, nb in expected.values()))
    # The hand-off to the learning side: fit DPL weights on the export with one command, score them
    # against PSNR on the same folders, and load the weight file with DPL(weights=FILE).
    import torch

    from learning import DPL
    from learning.__main__ import main as learning_main

    weights, scores = tmp_path / "dpl.pt", tmp_path / "scores.json"
    assert len(splits) >= 2  # references are split by reference: fit on one split, validate on the rest
    assert learning_main(["fit", "--data", str(splits[0]), "--val", *map(str, splits[1:]),
                          "--backbone", "random:0", "--out", str(weights),
                          "--cache", str(tmp_path / "cache"), "--rounds", "3", "--quiet"]) == 0
    assert learning_main(["score", "--data", *map(str, splits), "--metrics", f"psnr,dpl:{weights}",
                          "--bootstrap", "0", "--json", str(scores)]) == 0
    rows = json.loads(scores.read_text())["results"]
    assert {r["metric"] for r in rows} == {"psnr", f"dpl:{weights}"}
    assert all(0.0 <= r["score"] <= 1.0 and r["n"] > 0 for r in rows)
    assert sum(r["n"] for r in rows if r["metric"] == "psnr") == len(expected)
    dpl = DPL(weights=str(weights), backbone=None, seed=0)
    x = torch.rand(1, 3, 64, 64)
    assert dpl(x, x).abs().max() < 1e-6 and dpl(x, x.flip(-1)).item() > 0
