"""Export round trip: BAPPS files, judge fractions, log rows, manifest checksums, exclusion, refusals."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from lab_factories import ALL, WITHOUT_BAD

pytestmark = pytest.mark.django_db


def _read_export(out: Path, slug: str = "exp1"):
    manifest = json.loads((out / "manifest.json").read_text())
    with open(out / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    return manifest, trials


def _decoded(stim) -> bytes:
    with stim.decoded.open("rb") as f:
        return f.read()


def test_round_trip(judged, tmp_path):
    w = judged["world"]
    out = tmp_path / "ds"
    call_command("export_dataset", "exp1", "--out", str(out), verbosity=0)
    manifest, trials = _read_export(out)

    # every normal trial with a judgment is a triplet; train = ref0 trials, test = ref1 trials, in pk order
    assert [(r["split"], int(r["trial"])) for r in trials] == (
        [("test", t.pk) for t in w.normal[3:]] + [("train", t.pk) for t in w.normal[:3]]
    )
    expected = {t.pk: nk for t, nk in zip(w.normal, ALL)}
    by_pk = {t.pk: t for t in w.normal}
    for r in trials:
        base = out / r["split"] / "exp1"
        name = r["index"]
        n, k = expected[int(r["trial"])]
        judge = np.load(base / "judge" / f"{name}.npy")
        assert judge.dtype == np.float32 and judge.shape == (1,)
        assert judge[0] == pytest.approx(k / n)
        assert np.load(base / "judge_n" / f"{name}.npy")[0] == n
        t = by_pk[int(r["trial"])]
        assert (base / "p0" / f"{name}.png").read_bytes() == _decoded(t.stimulus_a)
        assert (base / "p1" / f"{name}.png").read_bytes() == _decoded(t.stimulus_b)
        with t.reference.file.open("rb") as f:
            assert (base / "ref" / f"{name}.png").read_bytes() == f.read()
    assert sorted(p.name for p in (out / "train" / "exp1" / "ref").iterdir()) == [
        "000000.png", "000001.png", "000002.png"]

    # checksums: every file but the manifest is listed, and each hash matches
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest

    # log: one row per judgment (practice included, marked), CSV and JSONL agree
    from webapp.crowd.models import Judgment

    with open(out / "judgments.csv") as f:
        rows = list(csv.DictReader(f))
    jl = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == len(jl) == Judgment.objects.count() == 22
    uuids = {str(u) for u in Judgment.objects.values_list("client_uuid", flat=True)}
    assert {r["judgment"] for r in rows} == uuids
    assert [r["judgment"] for r in rows] == [r["judgment"] for r in jl]
    assert sum(r["kind"] == "practice" for r in jl) == 1
    assert sum(r["is_repeat"] for r in jl) == 3
    bad_rows = [r for r in jl if r["platform"] == "mturk"]
    assert len(bad_rows) == 8 and all(r["qc_flagged"] and "sentinel" in r["qc_reasons"] for r in bad_rows)
    assert "PID-bad" not in (out / "judgments.csv").read_text()
    # chosen a/b agrees with the stored choice
    j = Judgment.objects.select_related("trial", "chosen", "left_stimulus").get(client_uuid=jl[0]["judgment"])
    assert jl[0]["chosen"] == ("a" if j.chosen_id == j.trial.stimulus_a_id else "b")
    assert jl[0]["stimulus_a_codec"] in ("jpeg", "webp", "original")

    c = manifest["counts"]
    assert c["triplets"] == {"train": 3, "test": 3} and c["judgments_in_triplets"] == 16
    assert c["participants_flagged"] == 1 and c["participants_excluded"] == 0
    assert {x["codec"] for x in manifest["codecs"]} == {"jpeg", "webp", "original"}
    assert manifest["qc"]["rules"]["min_response_ms"] == 300
    assert manifest["experiment"]["slug"] == "exp1"


def test_exclude_flagged(judged, tmp_path):
    w = judged["world"]
    out = tmp_path / "ds"
    call_command("export_dataset", "exp1", "--out", str(out), "--exclude-flagged", verbosity=0)
    manifest, trials = _read_export(out)
    expected = {t.pk: nk for t, nk in zip(w.normal, WITHOUT_BAD)}
    for r in trials:
        n, k = expected[int(r["trial"])]
        base = out / r["split"] / "exp1"
        assert np.load(base / "judge" / f"{r['index']}.npy")[0] == pytest.approx(k / n)
        assert np.load(base / "judge_n" / f"{r['index']}.npy")[0] == n
    jl = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(jl) == 22 - 8 and not any(r["platform"] == "mturk" for r in jl)
    assert manifest["counts"]["participants_excluded"] == 1
    assert manifest["qc"]["exclude_flagged"] is True
    assert [f["excluded"] for f in manifest["qc"]["flagged"]] == [True]


def test_refuses_non_empty_dir_and_force(judged, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CommandError, match="not empty"):
        call_command("export_dataset", "exp1", "--out", str(out), verbosity=0)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # nothing written
    call_command("export_dataset", "exp1", "--out", str(out), "--force", verbosity=0)
    assert (out / "manifest.json").exists() and (out / "keep.txt").exists()
    # a second forced export replaces the first one's files (no stale triplets)
    call_command("export_dataset", "exp1", "--out", str(out), "--force", "--exclude-flagged", verbosity=0)
    manifest, _ = _read_export(out)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files - {"manifest.json", "keep.txt"} == set(manifest["files"])


def test_unknown_experiment(db, tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(CommandError, match="unknown experiment 'nope'"):
        call_command("export_dataset", "nope", "--out", str(out), verbosity=0)
    assert not out.exists()


def test_empty_experiment_exports_manifest_only(world, tmp_path):
    out = tmp_path / "ds"
    call_command("export_dataset", "exp1", "--out", str(out), verbosity=0)
    manifest, trials = _read_export(out)
    assert trials == [] and manifest["counts"]["triplets_total"] == 0
    assert manifest["counts"]["judgments_in_log"] == 0


@pytest.mark.django_db(transaction=True)
def test_snapshot_transaction_on_postgres(media, users, tmp_path):
    """Outside a test transaction the export runs in its own REPEATABLE READ read-only transaction."""
    from django.db import connection
    from lab_factories import build_world

    w = build_world(users["alice"])
    p = w.participant("x")
    for t in w.normal:
        w.judge(p, t, "b")
    out = tmp_path / "ds"
    call_command("export_dataset", "exp1", "--out", str(out), verbosity=0)
    manifest, trials = _read_export(out)
    assert len(trials) == 6 and all(float(r["judge"]) == 1.0 for r in trials)
    if connection.vendor != "postgresql":
        pytest.skip("REPEATABLE READ check needs PostgreSQL")
    # the read-only snapshot really is read-only: a write inside it fails
    from django.db import DatabaseError

    from webapp.lab.export import snapshot

    with pytest.raises(DatabaseError, match="read-only"), snapshot():
        w.exp.title = "changed"
        w.exp.save()


def test_bapps_reader_reads_export(judged, tmp_path):
    """The learning side's BAPPS reader loads the exported folder."""
    from learning.data import bapps
    out = tmp_path / "ds"
    call_command("export_dataset", "exp1", "--out", str(out), verbosity=0)
    sets = bapps.load_2afc([out / "train", out / "test"])  # each split is a folder of sets
    by_split = {s.root.parent.name: s for s in sets}
    assert sorted(s.name for s in sets) == ["test/exp1", "train/exp1"]
    train = by_split["train"]
    assert len(train) == 3
    w = judged["world"]
    expected = [k / n for n, k in ALL[:3]]  # train = ref0 = the first three normal trials
    assert np.allclose(train.judges, expected)
    assert list(train.n_judges) == [n for n, _ in ALL[:3]]
    ref, p0, p1, _ = bapps.load_triplet(train.triplets[0])
    assert ref.shape == p0.shape == p1.shape == (32, 32, 3)
    assert train.triplets[0].p0.read_bytes() == _decoded(w.normal[0].stimulus_a)
