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
from tests.learning.kodak import KODAK_DIR, require_kodak

KODAK = KODAK_DIR

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
    require_kodak()
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


# --- learned codecs: several checkpoints (one per λ) make one curve --------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Three tiny real train-codec checkpoints (2 steps each; seeds differ so the points differ)."""
    require_kodak()
    root = tmp_path_factory.mktemp("learned")
    data = root / "train"
    data.mkdir()
    for i in (1, 2, 4, 5):
        Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB").resize((96, 64)).save(data / f"k{i}.png")
    torch.set_num_threads(2)
    for k, lmbda in enumerate(("0.002", "0.02", "0.2")):
        args = ["train-codec", "--arch", "bmshj2018-factorized", "--N", "16", "--M", "16"]
        args += ["--data", str(data), "--crop", "32", "--batch", "4", "--lr", "1e-3", "--lmbda", lmbda]
        args += ["--steps", "2", "--seed", str(k), "--no-progress", "--out", str(root / f"mse_{lmbda}.pt")]
        assert main(args) == 0
    return root


def _rd(images, out, codecs, metric, *extra) -> int:
    args = ["rd", "--images", str(images), "--codecs", codecs, "--bpp", "0.5,1,2", "--metrics", metric]
    return main([*args, "--no-progress", "--out", str(out), *extra])


def test_rd_learned_curve_from_several_checkpoints(images, checkpoints, tmp_path, psnr_metric, capsys):
    from learning.codecs import get_codec

    paths = sorted(str(p) for p in checkpoints.glob("mse_*.pt"))
    out = tmp_path / "rd"
    plus = "ckpt:" + "+".join(paths)
    glob = f"ckpt:{checkpoints}/mse_*.pt"
    label = "learned:bmshj2018-factorized/mse"
    # the same three checkpoints twice (joined with + and as a glob): two curves, the second "#2"
    rc = _rd(images, out, f"jpeg,{plus},{glob}", psnr_metric, "--limit", "2", "--anchor", label)
    assert rc == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(out / "rd.csv")))
    learned = [r for r in rows if r["codec"] == label]
    assert len(learned) == 2 * 3 and {r["checkpoint"] for r in learned} == set(paths)
    assert len([r for r in rows if r["codec"] == f"{label} #2"]) == 2 * 3
    ref = {}
    for r in learned:
        assert r["target_bpp"] == "" and r["quality"] == "" and "no bpp target" in r["note"]
        # the row is the real bitstream of that checkpoint on that image
        img = Image.open(images / r["image"]).convert("RGB")
        codec = get_codec(f"ckpt:{r['checkpoint']}")
        enc = codec.encode(img, 0)
        assert float(r["achieved_bpp"]) == pytest.approx(8 * len(enc.data) / (192 * 128), abs=1e-5)
        ref_t = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]
        dec_t = torch.from_numpy(np.asarray(codec.decode(enc.data), np.float32) / 255).permute(2, 0, 1)[None]
        assert float(r[psnr_metric]) == pytest.approx(float(_psnr(ref_t, dec_t)[0]), abs=1e-5)
        ref.setdefault(r["checkpoint"], []).append((float(r["achieved_bpp"]), float(r[psnr_metric])))
    assert all(r["checkpoint"] == "" and r["target_bpp"] for r in rows if r["codec"] == "jpeg")
    bd = {r["codec"]: r for r in csv.DictReader(open(out / "bd_rate.csv"))}
    # an identical curve has a BD-rate of exactly 0 against it; jpeg is compared over the overlap only
    assert float(bd[f"{label} #2"]["bd_rate_test-psnr_pct"]) == pytest.approx(0, abs=1e-9)
    lq = [np.mean([p[1] for p in v]) for v in ref.values()]
    jq = [float(r[psnr_metric]) for r in rows if r["codec"] == "jpeg"]
    if max(min(lq), min(jq)) < min(max(lq), max(jq)):  # overlap (rare for 2-step models): a number
        float(bd["jpeg"]["bd_rate_test-psnr_pct"])
        assert bd["jpeg"]["overlap_test-psnr"]
    else:
        assert "do not overlap" in bd["jpeg"]["bd_rate_test-psnr_pct"]
    assert "Quality range" in (out / "bd_rate.md").read_text()
    # re-plotting from the CSV keeps each checkpoint a point of the learned curve
    again = tmp_path / "again"
    assert main(["rd", "--from-csv", str(out / "rd.csv"), "--anchor", label, "--out", str(again)]) == 0
    assert (again / "bd_rate.csv").read_text() == (out / "bd_rate.csv").read_text()


def test_learned_curve_points_are_checkpoints_and_bd_rate_uses_the_overlap(tmp_path):
    from learning.rd.evaluate import Row, curves
    from learning.rd.report import write_report

    jpeg = {0.25: (0.26, 26), 0.5: (0.5, 29), 1.0: (1.0, 32), 2.0: (2.1, 35)}
    # learned rows come in a different checkpoint order per image; c.pt lacks image b
    learned = {
        "a.png": [("b.pt", 0.6, 31), ("a.pt", 0.3, 28), ("c.pt", 0.9, 40)],
        "b.png": [("a.pt", 0.3, 28), ("b.pt", 0.6, 31)],
    }
    rows = []
    for im, shift in (("a.png", 0.0), ("b.png", 1.0)):
        for t, (b, q) in jpeg.items():
            rows.append(Row(im, "jpeg", t, b, 50, 3, {"psnr": q + shift}))
        for ck, b, q in learned[im]:
            rows.append(Row(im, "learned:x/mse", None, b, None, 1, {"psnr": q + shift}, "", ck))
    cv = curves(rows, "psnr")
    assert cv["learned:x/mse"][0] == pytest.approx([0.3, 0.6])  # c.pt dropped: not on every image
    assert cv["learned:x/mse"][1] == pytest.approx([28.5, 31.5])
    write_report(rows, ["psnr"], {"psnr": True}, "jpeg", "pchip", tmp_path)
    bd = next(csv.DictReader(open(tmp_path / "bd_rate.csv")))
    ja, jq = cv["jpeg"]
    assert float(bd["bd_rate_psnr_pct"]) == pytest.approx(bd_rate(ja, jq, [0.3, 0.6], [28.5, 31.5]), abs=0.05)
    assert bd["overlap_psnr"] == "28.5..31.5"
    assert float(bd["bd_rate_psnr_pct"]) < 0  # at 28.5 dB: 0.3 bpp against JPEG's ~0.45


def test_rd_learned_bad_specs_are_clear_errors(images, checkpoints, tmp_path, psnr_metric, capsys):
    from learning.codecs import get_codec
    from learning.codecs.spec import parse_codec_spec

    a, b = checkpoints / "mse_0.002.pt", checkpoints / "mse_0.02.pt"
    other = tmp_path / "hyper.pt"
    args = ["train-codec", "--arch", "bmshj2018-hyperprior", "--N", "16", "--M", "16", "--data"]
    args += [str(checkpoints / "train"), "--crop", "64", "--batch", "4", "--lmbda", "0.01", "--steps", "1"]
    assert main([*args, "--no-progress", "--out", str(other)]) == 0
    out = tmp_path / "rd"
    cases = [
        (f"ckpt:{checkpoints}/*.nothing", "matches no checkpoint"),
        (f"ckpt:{a}+{tmp_path}/missing.pt", "does not exist"),
        (f"ckpt:{a}+{checkpoints}/mse_0.00*.pt", "listed twice"),
        (f"ckpt:{a}+", "empty path"),
        ("ckpt:", "needs a checkpoint path"),
        (f"ckpt:{a}+{other}", "must share architecture and loss"),
        ("jpeg,webp,jpeg", "listed twice"),
    ]
    for spec, message in cases:
        assert _rd(images, out, spec, psnr_metric) == 2, spec
        assert message in capsys.readouterr().err, spec
    assert not out.exists()
    with pytest.raises(LearningError, match="names several checkpoints"):
        get_codec(f"ckpt:{a}+{b}")  # `encode` takes one checkpoint
    assert [s.codec for s in parse_codec_spec(f"ckpt:{a}+{b}")] == [f"ckpt:{a}", f"ckpt:{b}"]


def test_device_for_learned_codecs_and_rd(images, checkpoints, tmp_path, psnr_metric, capsys, monkeypatch):
    """``ckpt:`` coding runs on the CPU unless a device is given (``auto`` resolved as everywhere else);
    ``encode`` and ``rd`` run with ``--device cpu`` and refuse an absent or unknown device before writing
    anything."""
    from learning.codecs import get_codec
    from learning.device import resolve_device

    ckpt = checkpoints / "mse_0.02.pt"
    auto = resolve_device("auto")
    assert get_codec(f"ckpt:{ckpt}", device=auto).device.type == auto.type
    assert get_codec(f"ckpt:{ckpt}").device.type == "cpu"
    codec = get_codec(f"ckpt:{ckpt}", device=torch.device("cpu"))
    assert {p.device.type for p in codec.model.parameters()} == {"cpu"}
    src = images / "kodim03.png"
    bits, png = tmp_path / "x.lrn", tmp_path / "x.png"
    assert main(["encode", "--codec", f"ckpt:{ckpt}", "--quality", "0", "--device", "cpu", str(src),
                 str(bits), "--decoded", str(png)]) == 0
    expected = codec.encode(Image.open(src).convert("RGB"), 0).data
    assert bits.read_bytes() == expected  # the same bitstream as the library's CPU codec
    again = tmp_path / "again.png"
    argv = ["encode", "--codec", f"ckpt:{ckpt}", "--decode", "--device", "cpu", str(bits), str(again)]
    assert main(argv) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))
    out = tmp_path / "rd"
    assert _rd(images, out, f"jpeg,ckpt:{ckpt}", f"{psnr_metric},lpips-alex:random:0", "--limit", "1",
               "--device", "cpu") == 0
    rows = list(csv.DictReader(open(out / "rd.csv")))
    assert len(rows) == 3 + 1 and all(float(r["lpips-alex:random:0"]) >= 0 for r in rows if r["achieved_bpp"])
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [("cuda", "CUDA is not available"), ("nope", "unknown device")]:
        with pytest.raises(LearningError, match=message):
            get_codec(f"ckpt:{ckpt}", device=resolve_device(device))
        bad = tmp_path / f"rd-{device}"
        assert _rd(images, bad, f"jpeg,ckpt:{ckpt}", psnr_metric, "--device", device) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert not bad.exists()
        enc = tmp_path / f"enc-{device}.lrn"
        assert main(["encode", "--codec", f"ckpt:{ckpt}", "--quality", "0", "--device", device, str(src),
                     str(enc)]) == 2
        assert message in capsys.readouterr().err and not enc.exists()
