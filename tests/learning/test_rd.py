"""BD-rate against reference values, and the ``rd`` command end to end on real codecs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learning.__main__ import main
from learning.errors import LearningError
from learning.rd.bdrate import bd_rate

KODAK = Path("/work/shared/data/kodak")

# FAU-LMS/bjontegaard README data (x265 presets). Reference values computed with the `bjontegaard`
# package 1.3 (which matches the JCT-VC Excel sheet): pchip -4.417485 %, cubic -4.420463 %.
RA = [9487.76, 4593.60, 2486.44, 1358.24]
PA = [40.037, 38.615, 36.845, 34.851]
RT = [9787.80, 4469.00, 2451.52, 1356.24]
PT = [40.121, 38.651, 36.970, 34.987]


def test_bd_rate_matches_reference_implementation():
    assert bd_rate(RA, PA, RT, PT, "pchip") == pytest.approx(-4.417485, abs=1e-5)
    assert bd_rate(RA, PA, RT, PT, "cubic") == pytest.approx(-4.420463, abs=1e-5)
    # Anserw/Bjontegaard_metric README data; same package: pchip 31.379878 %, cubic 31.397374 %
    r1, p1 = [686.76, 309.58, 157.11, 85.95], [40.28, 37.18, 34.24, 31.42]
    r2, p2 = [893.34, 407.8, 204.93, 112.75], [40.39, 37.21, 34.17, 31.24]
    assert bd_rate(r1, p1, r2, p2, "pchip") == pytest.approx(31.379878, abs=1e-4)
    assert bd_rate(r1, p1, r2, p2, "cubic") == pytest.approx(31.397374, abs=1e-4)


def test_bd_rate_analytic_cases():
    q = np.array([30.0, 33.0, 36.0, 40.0])
    r = np.array([0.1, 0.2, 0.4, 0.8])
    for method in ("pchip", "cubic"):
        assert bd_rate(r, q, r * 0.8, q, method) == pytest.approx(-20.0, abs=1e-9)
        assert bd_rate(r, q, r, q, method) == pytest.approx(0.0, abs=1e-12)
    # straight lines in (quality, log rate): the mean log-rate gap over the overlap is exact
    qa = np.linspace(30, 40, 5)
    qt = np.linspace(32, 42, 5)
    la, lt = 0.2 * qa - 8, 0.25 * qt - 9.5
    lo, hi = 32, 40
    gap = np.mean([(0.25 * x - 9.5) - (0.2 * x - 8) for x in np.linspace(lo, hi, 100001)])
    assert bd_rate(np.exp(la), qa, np.exp(lt), qt, "pchip") == pytest.approx(
        (math.exp(gap) - 1) * 100, rel=1e-6
    )
    with pytest.raises(LearningError, match="overlap"):
        bd_rate(r, q, r, q + 20)


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in (3, 19, 8):
        Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB").resize((192, 128), Image.LANCZOS).save(
            d / f"kodim{i:02d}.png"
        )
    return d


def _psnr(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    mse = ((ref - dist) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


@pytest.fixture()
def psnr_metric():
    from learning.metrics import registry

    registry.register("test-psnr", higher_is_better=True, implementation="test")(_psnr)
    yield "test-psnr"
    registry._REGISTRY.pop("test-psnr", None)


def test_rd_command_end_to_end(images, tmp_path, psnr_metric, capsys):
    out = tmp_path / "rd"
    rc = main(
        [
            "rd",
            "--images",
            str(images),
            "--codecs",
            "jpeg,webp,jpeg2000",
            "--bpp",
            "0.5,1,2,3",
            "--metrics",
            psnr_metric,
            "--limit",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(open(out / "rd.csv")))
    assert len(rows) == 2 * 3 * 4
    assert {r["image"] for r in rows} == {"kodim03.png", "kodim08.png"}  # first two by name
    for r in rows:
        assert abs(float(r["achieved_bpp"]) - float(r["target_bpp"])) / float(r["target_bpp"]) < 0.1
        assert float(r[psnr_metric]) > 15
    for im in ("kodim03.png", "kodim08.png"):
        for c in ("jpeg", "webp", "jpeg2000"):
            ps = [float(r[psnr_metric]) for r in rows if r["image"] == im and r["codec"] == c]
            assert ps == sorted(ps), (im, c, ps)  # more bits, higher PSNR
    assert (out / "rd_test-psnr.png").stat().st_size > 1000 and (out / "rd_test-psnr.svg").exists()
    bd = {r["codec"]: r for r in csv.DictReader(open(out / "bd_rate.csv"))}
    assert set(bd) == {"webp", "jpeg2000"}
    assert float(bd["webp"]["bd_rate_test-psnr_pct"]) < 0  # webp beats jpeg at equal PSNR
    assert "BD-rate" in (out / "bd_rate.md").read_text()


def test_rd_bad_input_writes_nothing(images, tmp_path, psnr_metric, capsys):
    out = tmp_path / "rd"
    assert (
        main(
            [
                "rd",
                "--images",
                str(images),
                "--codecs",
                "jpeg,nope",
                "--metrics",
                psnr_metric,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "unknown codec" in capsys.readouterr().err
    assert (
        main(["rd", "--images", str(images), "--codecs", "jpeg", "--metrics", "no-metric", "--out", str(out)])
        == 2
    )
    assert "unknown metric" in capsys.readouterr().err
    assert (
        main(
            [
                "rd",
                "--images",
                str(tmp_path / "none"),
                "--codecs",
                "jpeg",
                "--metrics",
                psnr_metric,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert not out.exists()


def test_rd_unreachable_targets_are_noted(images, tmp_path, psnr_metric):
    out = tmp_path / "rd"
    assert (
        main(
            [
                "rd",
                "--images",
                str(images),
                "--codecs",
                "jpeg",
                "--bpp",
                "0.01,1",
                "--metrics",
                psnr_metric,
                "--limit",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(out / "rd.csv")))
    low = next(r for r in rows if float(r["target_bpp"]) == 0.01)
    assert low["achieved_bpp"] == "" and "below the lowest" in low["note"]


def test_rd_from_csv_merges_runs(images, tmp_path, psnr_metric):
    a, b, merged = tmp_path / "a", tmp_path / "b", tmp_path / "m"
    common = [
        "--images",
        str(images),
        "--bpp",
        "0.5,1,2",
        "--metrics",
        psnr_metric,
        "--limit",
        "2",
        "--no-progress",
    ]
    assert main(["rd", *common, "--codecs", "jpeg,webp", "--out", str(a)]) == 0
    assert main(["rd", *common, "--codecs", "jpeg2000", "--out", str(b)]) == 0
    assert main(["rd", "--from-csv", str(a / "rd.csv"), str(b / "rd.csv"), "--out", str(merged)]) == 0
    rows = list(csv.DictReader(open(merged / "rd.csv")))
    assert len(rows) == 2 * 3 * 3
    bd = {r["codec"] for r in csv.DictReader(open(merged / "bd_rate.csv"))}
    assert bd == {"webp", "jpeg2000"}
