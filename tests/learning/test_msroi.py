"""Kodak checks of the DCC 2018 reproduction: JPEG q50 row, equal-size saliency JPEG, the table CLI."""

from __future__ import annotations

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
from tests.learning.kodak import KODAK_DIR

torch.set_num_threads(2)

KODAK = KODAK_DIR
needs_kodak = pytest.mark.skipif(len(list(KODAK.glob("kodim*.png"))) < 24,
                                 reason=f"Kodak images not found in {KODAK}")


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
    for q in (10, 50, 75):
        buf = io.BytesIO()
        im.save(buf, "JPEG", qtables=qtables_for(q), subsampling=2)
        assert buf.getvalue() == encode_jpeg(im, q)
    assert len(encode_jpeg(im, 50.5)) >= len(encode_jpeg(im, 50)) - 50  # the knob is continuous


def _check_equal_size(files: list[Path]) -> None:
    model = get_saliency_model("spectral")
    for f in files:
        im = load_rgb(f)
        sal = model.map(im)
        std = encode_jpeg(im, 50)
        for method in ("msroi-composite", "dct-prune"):
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


@needs_kodak
def test_msroi_table_cli_writes_outputs(tmp_path, capsys):
    out = tmp_path / "msroi"
    assert main(["msroi-table", "--images", str(KODAK), "--out", str(out), "--limit", "1",
                 "--examples", "1"]) == 0
    text = capsys.readouterr().out
    assert "saliency model: spectral" in text and "PSNR-S = PSNR on Y over the pixels" in text
    assert "paper: MSROI JPEG" in text and "(msroi-composite)" in text and "(dct-prune variant)" in text
    for p in ["maps/kodim01.png", "overlays/kodim01.png", "jpeg/kodim01_saliency.jpg",
              "jpeg/kodim01_dct_prune.jpg", "decoded/kodim01_dct_prune.png",
              "decoded/kodim01_standard_q50.png", "decoded/kodim01_saliency.png", "msroi_examples.png",
              "msroi_examples.svg", "table.md", "results.json"]:
        assert (out / p).is_file(), p
    with Image.open(out / "maps/kodim01.png") as m:
        assert m.mode.startswith("I;16") or m.mode == "I"
