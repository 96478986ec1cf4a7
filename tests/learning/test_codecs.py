"""Codec registry: every codec round-trips, bpp counts real bytes, unavailable codecs are reported."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from learning.codecs import registry
from learning.codecs.base import Codec, bits_per_pixel
from learning.codecs.registry import describe_codecs, get_codec, register, registered_names
from learning.codecs.spec import parse_codec_spec
from learning.data.shared import KODAK_DIR
from learning.errors import LearningError

KODAK = KODAK_DIR
CLASSICAL = ["jpeg", "jpeg444", "jpeg2000", "webp", "avif", "heic", "jxl"]
REPO = Path(__file__).resolve().parents[2]


def small_image(w: int = 96, h: int = 64) -> Image.Image:
    if (KODAK / "kodim05.png").exists():
        return Image.open(KODAK / "kodim05.png").convert("RGB").crop((200, 150, 200 + w, 150 + h))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 2, yy * 3, (xx + yy)], -1) + rng.integers(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def test_all_families_registered():
    assert set(CLASSICAL + ["learned"]) <= set(registered_names())


@pytest.mark.parametrize("name", CLASSICAL)
def test_round_trip_and_bpp_from_bytes(name):
    codec = get_codec(name)
    img = small_image()
    lo, hi = codec.quality_range
    enc = codec.encode(img, lo + 0.85 * (hi - lo))
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (img.width * img.height))
    assert enc.bpp == bits_per_pixel(enc.data, img.size)
    out = codec.decode(enc.data)
    assert out.size == img.size and out.mode == "RGB"
    a, b = np.asarray(img, float), np.asarray(out, float)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr > 25, f"{name} decoded far from the input (PSNR {psnr:.1f})"
    low = codec.encode(img, lo)
    assert low.bpp < enc.bpp  # quality is monotone in bits


@pytest.mark.parametrize("name", CLASSICAL)
def test_corrupt_bitstream_is_a_clear_error(name):
    codec = get_codec(name)
    with pytest.raises(LearningError, match="corrupt|unreadable"):
        codec.decode(b"\x00garbage" * 10)


def test_unavailable_codec_reported_registry_intact():
    @register  # the registry's key is the class's name
    class Missing(Codec):
        name = "test-missing"

        def available(self) -> bool:
            return False

    try:
        rows = {r["name"]: r for r in describe_codecs()}
        assert rows["test-missing"]["available"] is False
        assert rows["jpeg"]["available"] is True
        with pytest.raises(LearningError, match="not available"):
            get_codec("test-missing")
        assert get_codec("jpeg").encode(small_image(), 50).bpp > 0
    finally:
        registry._REGISTRY.pop("test-missing")


def test_missing_library_module_makes_codec_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # what `import pillow_heif` sees where it is absent
    assert {r["name"]: r for r in describe_codecs()}["heic"]["available"] is False
    assert "jpeg" in registered_names()
    with pytest.raises(LearningError, match="not available on this machine: it needs pillow-heif"):
        get_codec("heic")
    with pytest.raises(LearningError, match="it needs pillow-heif"):
        get_codec("heic", require_available=False).encode(small_image(), 50)


def test_unknown_codec_and_specs():
    with pytest.raises(LearningError, match="unknown codec"):
        get_codec("nope")
    with pytest.raises(LearningError, match="unknown codec"):
        parse_codec_spec("nope@0.5")
    s = parse_codec_spec("avif@0.25,0.5,1.0")
    assert [x.value for x in s] == [0.25, 0.5, 1.0] and s[0].kind == "bpp"
    with pytest.raises(LearningError, match="quality"):
        get_codec("jpeg").encode(small_image(), 200)


def test_codecs_cli_lists_versions():
    out = subprocess.run(
        [sys.executable, "-m", "learning", "codecs"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for name in CLASSICAL:
        line = next(ln for ln in out.splitlines() if ln.split()[0] == name)
        assert " yes " in line
    assert "Pillow" in out and "pillow-heif" in out


def _run_encode(*argv):
    return subprocess.run(
        [sys.executable, "-m", "learning", "encode", *argv], cwd=REPO, capture_output=True, text=True
    )


def test_encode_cli_writes_bitstream_and_png(tmp_path):
    src = tmp_path / "in.png"
    small_image(128, 96).save(src)
    out = tmp_path / "x.webp"
    r = _run_encode("--codec", "webp", "--bpp", "1.0", str(src), str(out))
    assert r.returncode == 0, r.stderr
    bpp = 8 * out.stat().st_size / (128 * 96)
    assert f"{bpp:.4f} bpp" in r.stdout
    assert abs(bpp - 1.0) < 0.05
    assert Image.open(str(out) + ".png").size == (128, 96)
    dec = tmp_path / "dec.png"
    r = _run_encode("--codec", "webp", "--decode", str(out), str(dec))
    assert r.returncode == 0 and Image.open(dec).size == (128, 96)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--codec", "nope", "--quality", "5"], "unknown codec"),
        (["--codec", "jpeg", "--bpp", "0.001"], "below the lowest"),
        (["--codec", "jpeg", "--bpp", "500"], "above the highest"),
    ],
)
def test_encode_cli_bad_input_writes_nothing(tmp_path, argv, message):
    src = tmp_path / "in.png"
    small_image().save(src)
    out = tmp_path / "o.bin"
    r = _run_encode(*argv, str(src), str(out))
    assert r.returncode == 2 and message in r.stderr and r.stderr.startswith("error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_encode_cli_unreadable_image_and_corrupt_bitstream(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = _run_encode("--codec", "jpeg", "--quality", "50", str(bad), str(tmp_path / "o.jpg"))
    assert r.returncode == 2 and "cannot read image" in r.stderr
    r = _run_encode("--codec", "jpeg", "--decode", str(bad), str(tmp_path / "o.png"))
    assert r.returncode == 2 and "corrupt" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]


def test_jpeg444_differs_from_420():
    img = small_image()
    a, b = get_codec("jpeg").encode(img, 90), get_codec("jpeg444").encode(img, 90)
    assert a.data != b.data
    assert Image.open(io.BytesIO(b.data)).layer[0][1:3] == Image.open(io.BytesIO(b.data)).layer[1][1:3]


def test_encode_cli_device(tmp_path, capsys, monkeypatch):
    """``--device cpu`` works for any codec; an absent or unknown device is refused before anything is
    written, whatever the codec."""
    import torch

    from learning.__main__ import main

    src = tmp_path / "in.png"
    small_image().save(src)
    out = tmp_path / "o.jpg"
    assert main(["encode", "--codec", "jpeg", "--quality", "50", "--device", "cpu", str(src), str(out)]) == 0
    assert out.is_file() and Path(str(out) + ".png").is_file()
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [("cuda", "CUDA is not available"), ("cuda:0", "CUDA is not available"),
                            ("nope", "unknown device")]:
        bad = tmp_path / f"bad-{device}.jpg"
        argv = ["encode", "--codec", "jpeg", "--quality", "50", "--device", device, str(src), str(bad)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "o.jpg", "o.jpg.png"]


def test_classical_codecs_do_not_import_torch():
    """The web app imports the registry in every process: a classical codec must not load torch."""
    code = "\n".join([
        "import sys",
        "from PIL import Image",
        "from learning.codecs import get_codec",
        "from learning.codecs.spec import parse_codec_spec",
        "parse_codec_spec('jpeg:50')",
        "jpeg = get_codec('jpeg')",
        "image = jpeg.decode(jpeg.encode(Image.new('RGB', (16, 16)), 50).data)",
        "get_codec('avif').encode(image, 50)",
        "print('torch' in sys.modules)",
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
