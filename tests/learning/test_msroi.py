"""Kodak checks of the DCC 2018 reproduction: JPEG q50 row, equal-size saliency JPEG, the table CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learning.__main__ import main
from learning.metrics import get_metric
from learning.metrics.color import rgb_to_y_uint8
from learning.saliency import get_saliency_model, load_rgb
from learning.saliency.jpeg import decode_jpeg, encode_jpeg, qtables_for, saliency_jpeg
from tests.learning.kodak import KODAK_DIR, needs_kodak

torch.set_num_threads(2)

KODAK = KODAK_DIR


def _luma(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(rgb_to_y_uint8(np.asarray(im)).astype(np.float32) / 255)[None, None]


def _kodak(n: int | None = None) -> list[Path]:
    files = sorted(KODAK.glob("kodim*.png"))
    return files[:n] if n else files


@needs_kodak
@pytest.mark.slow  # ~20 s: all 24 images, MS-SSIM at full size
def test_standard_jpeg_q50_matches_paper_row():
    """Paper (Prakash et al. 2018), standard JPEG q50 on Kodak luma: PSNR 34.70, MS-SSIM 0.991."""
    psnrs, msssims, bpps = [], [], []
    for f in _kodak():
        im = load_rgb(f)
        data = encode_jpeg(im, 50)
        y = _luma(im)
        yd = _luma(decode_jpeg(data))
        psnrs.append(get_metric("psnr")(y, yd).item())
        msssims.append(get_metric("ms-ssim")(y, yd).item())
        bpps.append(len(data) * 8 / (im.size[0] * im.size[1]))
    assert np.mean(psnrs) == pytest.approx(34.70, abs=0.1)
    assert np.mean(msssims) == pytest.approx(0.991, abs=0.002)
    assert 0.8 < np.mean(bpps) < 1.0


def test_unknown_method_is_an_error():
    from learning.errors import LearningError

    im = Image.new("RGB", (64, 64))
    with pytest.raises(LearningError, match="unknown saliency JPEG method"):
        saliency_jpeg(im, np.zeros((64, 64), np.float32), 1000, method="nope")


def test_fractional_quality_tables_match_pillow_at_integers():
    im = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8))
    for q in (1, 10, 30, 49, 50, 75, 100):
        buf = io.BytesIO()
        im.save(buf, "JPEG", qtables=qtables_for(q), subsampling=2)
        assert buf.getvalue() == encode_jpeg(im, q)
        pil = io.BytesIO()
        im.save(pil, "JPEG", quality=q, subsampling=2)
        assert pil.getvalue() == buf.getvalue(), q  # integer qualities are exactly libjpeg's tables
    assert len(encode_jpeg(im, 50.5)) >= len(encode_jpeg(im, 50)) - 50  # the knob is continuous


def test_fractional_tables_move_one_unit_at_a_time():
    """Between integer qualities every entry moves monotonically towards the next table, in unit steps."""
    for n in (3, 30, 50, 87):
        lo, hi = qtables_for(n), qtables_for(n + 1)
        total = sum(abs(a - b) for t in (0, 1) for a, b in zip(lo[t], hi[t]))
        prev = lo
        for k in range(1, 41):
            cur = qtables_for(n + k / 40)
            for t in (0, 1):
                for a, b, c, d in zip(prev[t], cur[t], lo[t], hi[t]):
                    assert min(c, d) <= b <= max(c, d) and abs(b - d) <= abs(a - d)
            moved = sum(abs(a - b) for t in (0, 1) for a, b in zip(lo[t], cur[t]))
            assert abs(moved - k / 40 * total) <= 1
            prev = cur


def _check_equal_size(files: list[Path]) -> None:
    model = get_saliency_model("spectral")
    for f in files:
        im = load_rgb(f)
        sal = model.map(im)
        std = encode_jpeg(im, 50)
        for method in ("ours-block-composite", "ours-dct-prune"):
            res = saliency_jpeg(im, sal, len(std), method=method)
            assert res.method == method
            assert abs(len(res.data) / len(std) - 1) <= 0.01, (f.name, method)
            with Image.open(io.BytesIO(res.data)) as dec:  # a standard decoder opens it
                assert dec.format == "JPEG" and dec.size == im.size
                dec.load()
            assert len(np.unique(res.level_map)) > 1  # the map really drove the choice


@needs_kodak
def test_saliency_jpeg_same_size_on_four_kodak_images():
    _check_equal_size(_kodak(4))


@needs_kodak
@pytest.mark.slow
def test_saliency_jpeg_same_size_on_all_kodak_images():
    _check_equal_size(_kodak())


def test_old_method_names_still_accepted():
    im = Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8))
    sal = np.zeros((64, 64), np.float32)
    sal[16:48, 16:48] = 1
    target = len(encode_jpeg(im, 50))
    assert saliency_jpeg(im, sal, target, method="dct-prune", tolerance=0.05).method == "ours-dct-prune"


@needs_kodak
def test_msroi_table_cli_writes_outputs(tmp_path, capsys):
    out = tmp_path / "msroi"
    assert main(["msroi-table", "--images", str(KODAK), "--out", str(out), "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert "saliency map: spectral" in text and "PSNR-S = PSNR of the correctly read luma" in text
    for part in ("Metric check", "(a) reference-model-6@2%", "(b) reference-model-6@0%",
                 "(c) ours-block-composite", "(c) ours-dct-prune", "log: composite (model 6)",
                 "PSNR-S sensitivity"):
        assert part in text, part
    for p in ["maps/kodim01.png", "overlays/kodim01.png", "jpeg/kodim01_standard-q50.jpg",
              "jpeg/kodim01_reference-model-6@2pct.jpg", "jpeg/kodim01_reference-model-6@0pct.jpg",
              "jpeg/kodim01_ours-dct-prune.jpg", "msroi_table.png", "msroi_table.svg", "table.md",
              "results.csv"]:
        assert (out / p).is_file(), p
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["way"] for r in rows] == ["standard", "a", "b", "c", "c"]
    std = rows[0]
    assert float(std["published:PSNR"]) == pytest.approx(float(std["log:PSNR"]), abs=0.02)
    assert float(rows[2]["size_excess"]) <= 0 < float(rows[1]["size_excess"]) <= 0.02
    with Image.open(out / "maps/kodim01.png") as m:
        assert m.mode.startswith("I;16") or m.mode == "I"
