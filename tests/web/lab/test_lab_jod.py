"""JOD scales on the dashboard, in the export and in plan_study; the sampling setting (issue 18)."""

import csv
import io
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from learning.scaling import scale_pairs
from webapp.experiments.sampling import sampling_mode
from webapp.experiments.spec import SpecError, validate
from webapp.lab import jod_scales
from webapp.lab.export import export_experiment

LABEL = {"jpeg10": "jpeg q=10", "jpeg50": "jpeg q=50", "webp30": "webp q=30"}


def _many(world, participants: int = 12, seed: int = 0) -> list[tuple]:
    """Every participant judges all 6 normal trials once, webp30 > jpeg50 > jpeg10 with noise; returns the
    rows as setting labels (what the per-setting scale must equal)."""
    rng = np.random.default_rng(seed)
    rank = {"jpeg10": 0, "jpeg50": 1, "webp30": 2}
    inv = {v.pk: k for (r, k), v in world.stim.items()}
    rows = []
    for i in range(participants):
        p = world.participant(f"m{i}")
        for t in world.normal:
            a, b = inv[t.stimulus_a_id], inv[t.stimulus_b_id]
            better = a if rank[a] > rank[b] else b
            pick = better if rng.random() < 0.8 else (b if better == a else a)
            world.judge(p, t, "a" if pick == a else "b")
            rows.append((p.pk, LABEL[a], LABEL[b], LABEL[pick]))
    return rows


@pytest.mark.django_db
def test_per_setting_scale_equals_learning_fit_on_the_same_rows(world):
    rows = _many(world)
    res = jod_scales.per_setting(world.exp, n_boot=200)
    assert res["error"] is None
    ref = scale_pairs(rows, n_boot=200, seed=0)
    got = {r["label"]: r for r in res["rows"]}
    for k, c in enumerate(ref.conditions):
        assert got[c]["jod"] == pytest.approx(ref.jod[k], abs=1e-9)
        assert got[c]["ci_low"] <= got[c]["jod"] <= got[c]["ci_high"]
    assert got["webp q=30"]["jod"] > got["jpeg q=50"]["jod"] > got["jpeg q=10"]["jod"]
    assert got["jpeg q=10"]["mean_bpp"] == pytest.approx(0.4)
    # per stimulus: each reference on its own, mean 0 within the reference
    st = jod_scales.per_stimulus(world.exp, n_boot=100)
    assert st["errors"] == [] and len(st["rows"]) == 6
    for sha in {r["reference_sha256"] for r in st["rows"]}:
        assert sum(r["jod"] for r in st["rows"] if r["reference_sha256"] == sha) == pytest.approx(0, abs=1e-9)


@pytest.mark.django_db
def test_no_scale_without_enough_data_says_why(world):
    assert "no judgments" in jod_scales.per_setting(world.exp)["error"]
    p = world.participant("solo")
    world.judge(p, world.normal[0], "a")  # jpeg10 vs jpeg50 only: webp30 is not connected
    q = world.participant("duo")
    world.judge(q, world.normal[3], "b")
    err = jod_scales.per_setting(world.exp)["error"]
    assert "not connected" in err and "webp q=30" in err
    st = jod_scales.per_stimulus(world.exp, n_boot=50)
    assert len(st["errors"]) == 2 and all("not connected" in e for e in st["errors"])


@pytest.mark.django_db
def test_dashboard_shows_jod_table_plot_and_plan(client, world, users):
    _many(world)
    client.force_login(users["alice"])
    html = client.get("/lab/e/exp1/?ci_width=0.3").content.decode()
    assert "JOD" in html and "95 % interval" in html and "for 95 % intervals at most 0.3 JOD" in html
    for fmt in ("png", "svg"):
        assert client.get(f"/lab/e/exp1/plot/scale.{fmt}").status_code == 200
    assert client.get("/lab/e/exp1/?ci_width=abc").status_code == 400
    # switching the sampling
    assert sampling_mode(world.exp) == "balanced"
    assert client.post("/lab/e/exp1/sampling/", {"sampling": "active"}).status_code == 302
    world.exp.refresh_from_db()
    assert sampling_mode(world.exp) == "active"
    assert client.post("/lab/e/exp1/sampling/", {"sampling": "bogus"}).status_code == 400


@pytest.mark.django_db
def test_dashboard_without_scale_shows_the_reason(client, world, users):
    client.force_login(users["alice"])
    html = client.get("/lab/e/exp1/").content.decode()
    assert "No scale: no judgments" in html


@pytest.mark.django_db
def test_export_writes_scale_files_listed_in_manifest(world, tmp_path):
    _many(world)
    m = export_experiment(world.exp, tmp_path / "out")
    assert {"scale.csv", "scale.json"} <= set(m["files"])
    assert m["scale"]["settings"] == 3 and m["scale"]["stimuli"] == 6
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "scale.csv").read_text())))
    levels = [r["level"] for r in rows]
    assert levels.count("setting") == 3 and levels.count("stimulus") == 6
    for r in rows:
        assert float(r["ci_low"]) <= float(r["jod"]) <= float(r["ci_high"])
    doc = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert doc["method"]["n_boot"] == jod_scales.EXPORT_BOOT and doc["per_setting_error"] is None


@pytest.mark.django_db
def test_plan_study_command(world):
    _many(world)
    out = io.StringIO()
    call_command("plan_study", "exp1", "--ci-width", "0.5", "--n-boot", "200", stdout=out)
    text = out.getvalue()
    assert "at most 0.5 JOD wide" in text and "webp q=30" in text
    need = [int(line.split()[-1]) for line in text.splitlines() if line.startswith(("jpeg", "webp"))]
    assert len(need) == 3 and all(n > 0 for n in need)
    with pytest.raises(CommandError, match="unknown experiment"):
        call_command("plan_study", "nope", stdout=io.StringIO())


def test_spec_accepts_sampling():
    base = {"slug": "s", "title": "t"}
    validate({**base, "sampling": "active"})
    with pytest.raises(SpecError, match="sampling"):
        validate({**base, "sampling": "smart"})
