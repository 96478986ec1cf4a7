"""``python -m learning codec-recipe``: base → MSE fine-tunes per λ → R–D against JPEG and HEIC, resuming by
skipping finished stages; ``--base-init`` starts the base from a checkpoint."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from learning import checkpoint
from learning.__main__ import main
from learning.codecs import get_codec
from tests.learning.kodak import KODAK_DIR, require_kodak


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    require_kodak()
    root = tmp_path_factory.mktemp("recipe")
    for name, ids, size in (("train", range(1, 7), (128, 96)), ("val", (7,), (96, 64)),
                            ("test", (17, 18), (176, 176))):
        (root / name).mkdir()
        for i in ids:
            Image.open(KODAK_DIR / f"kodim{i:02d}.png").convert("RGB").resize(size, Image.LANCZOS).save(
                root / name / f"kodim{i:02d}.png")
    return {k: str(root / k) for k in ("train", "val", "test")} | {"root": root}


def recipe(folders, out, *extra) -> list[str]:
    return ["codec-recipe", "--train", folders["train"], "--val", folders["val"], "--test", folders["test"],
            "--test-glob", "kodim*.png", "--out", str(out), "--N", "32", "--M", "32", "--crop", "64",
            "--batch", "2", "--base-steps", "3", "--lmbdas", "0.002,0.02", "--ft-steps", "2", "--val-every",
            "2", "--amp", "off", *extra]


def test_recipe_trains_base_and_fine_tunes_and_reports_rd(folders, tmp_path):
    out = tmp_path / "codec"
    assert main(recipe(folders, out, "--stages", "base,mse,rd")) == 0
    base = checkpoint.load(out / "mse_base.pt")
    assert base["finished"] and base["step"] == 3 and base["config"]["amp_used"] == "off"
    for lm in ("0.002", "0.02"):
        blob = checkpoint.load(out / "mse" / f"mse_{lm}.pt")
        assert blob["finished"] and blob["step"] == 2
        assert blob["config"]["init_source"] == f"checkpoint:{out / 'mse_base.pt'}"
        assert blob["config"]["lmbda"] == float(lm)
    with open(out / "rd" / "rd.csv") as f:
        rows = list(csv.DictReader(f))
    codecs = {r["codec"] for r in rows}
    assert {"jpeg", "learned:bmshj2018-hyperprior/mse"} <= codecs, codecs
    assert len([r for r in rows if r["codec"].startswith("learned:")]) == 2 * 2  # 2 checkpoints × 2 images
    if get_codec("heic", require_available=False).available():
        assert "heic" in codecs
    assert (out / "rd" / "bd_rate.md").is_file()
    report = json.loads((out / "report_base_mse_rd.json").read_text())
    assert set(report["stages"]) == {"base", "mse", "rd"}
    # a second run finds every checkpoint finished and trains nothing
    assert main(recipe(folders, out, "--stages", "base,mse")) == 0
    again = json.loads((out / "report_base_mse.json").read_text())
    assert again["stages"]["base"] == {"out": str(out / "mse_base.pt"), "skipped": True}
    assert all(r["skipped"] for r in again["stages"]["mse"])


def test_base_init_continues_from_a_checkpoint(folders, tmp_path):
    first = tmp_path / "first"
    assert main(recipe(folders, first, "--stages", "base")) == 0
    out = tmp_path / "second"
    assert main(recipe(folders, out, "--stages", "base", "--base-init", str(first / "mse_base.pt"))) == 0
    source = checkpoint.load(out / "mse_base.pt")["config"]["init_source"]
    assert source == f"checkpoint:{first / 'mse_base.pt'}"
