"""Saliency models, map I/O and bad-input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from learning.__main__ import main
from learning.errors import LearningError
from learning.saliency import get_saliency_model, load_map, load_rgb, save_map

torch.set_num_threads(2)


def _object_scene(seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """Flat grey background with one textured, coloured object off centre; returns image and object mask."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    img = np.full((h, w, 3), 128, np.float64)
    mask = np.zeros((h, w), bool)
    y0, x0, s = 40, 190, 80
    mask[y0 : y0 + s, x0 : x0 + s] = True
    texture = rng.random((s, s, 1)) * 120 + np.array([100.0, 40.0, 30.0])
    img[mask] = texture.reshape(-1, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), mask


def test_spectral_map_concentrates_on_the_object():
    image, mask = _object_scene()
    sal = get_saliency_model("spectral").map(image)
    assert sal.shape == (240, 320) and sal.dtype == np.float32
    assert 0.0 <= sal.min() and sal.max() <= 1.0 and sal.max() > 0.9
    grown = np.zeros_like(mask)  # allow the map's blur a 12-px margin around the object
    ys, xs = np.nonzero(mask)
    grown[max(0, ys.min() - 12) : ys.max() + 13, max(0, xs.min() - 12) : xs.max() + 13] = True
    frac = sal[grown].sum() / sal.sum()
    assert frac > 0.5, f"only {frac:.2f} of the saliency mass on the object ({grown.mean():.2f} of the area)"
    assert sal[mask].mean() > 3 * sal[~grown].mean()


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_1"])
def test_msroi_random_weights_shapes_and_threshold(arch):
    image, _ = _object_scene()
    model = get_saliency_model("msroi", arch=arch, random_seed=0, threshold=0.002)
    sal = model.map(image)
    assert sal.shape == (240, 320) and sal.dtype == np.float32
    assert sal.min() >= 0.0 and sal.max() <= 1.0 and sal.max() > 0.9
    cams, probs = model.class_maps(image)
    assert cams.shape[0] == probs.shape[0] == 1000 and (cams >= 0).all()
    many = model.select(probs)
    assert many == sorted(int(i) for i in torch.nonzero(probs >= 0.002).flatten()) or len(many) == 1
    model.threshold = 1.0  # nothing passes: the top class alone
    assert model.select(probs) == [int(torch.argmax(probs))]
    fake = torch.tensor([0.5, 0.3, 0.15, 0.05])
    model.threshold = 0.1
    assert model.select(fake) == [0, 1, 2]  # every class over the threshold, not only the top one


def test_msroi_pretrained_download_or_clear_error(tmp_path, monkeypatch):
    """Real torchvision weight loading: offline (here) it must fail with a hint to --msroi-weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights
    try:
        model = get_saliency_model("msroi", arch="squeezenet1_1")
    except LearningError as exc:
        assert "--msroi-weights" in str(exc) and "\n" not in str(exc)
    else:  # a machine with internet got the real weights
        assert model.map(_object_scene()[0]).shape == (240, 320)


def test_msroi_local_weights_file(tmp_path):
    from learning.compat import models

    torch.manual_seed(3)
    net = models().get_model("squeezenet1_1", weights=None)
    path = tmp_path / "sq.pth"
    torch.save(net.state_dict(), path)
    image, _ = _object_scene()
    a = get_saliency_model("msroi", arch="squeezenet1_1", msroi_weights=str(path)).map(image)
    b = get_saliency_model("msroi", arch="squeezenet1_1", random_seed=3).map(image)
    assert np.allclose(a, b, atol=1e-5)
    with pytest.raises(LearningError, match="cannot load"):
        get_saliency_model("msroi", arch="resnet18", msroi_weights=str(path))
    with pytest.raises(LearningError, match="not found"):
        get_saliency_model("msroi", msroi_weights=str(tmp_path / "missing.pth"))


def test_map_roundtrip_16bit(tmp_path):
    sal = np.linspace(0, 1, 60 * 80, dtype=np.float32).reshape(60, 80)
    save_map(sal, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode in ("I;16", "I")
    back = load_map(tmp_path / "m.png")
    assert back.dtype == np.float32 and np.abs(back - sal).max() < 1e-4
    small = load_map(tmp_path / "m.png", (40, 30))
    assert small.shape == (30, 40) and 0 <= small.min() and small.max() <= 1
    Image.fromarray((sal * 255).astype(np.uint8)).save(tmp_path / "m8.png")
    assert np.abs(load_map(tmp_path / "m8.png") - sal).max() < 1 / 255 + 1e-6


def test_bad_inputs_are_learning_errors(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    Image.new("L", (64, 64)).save(tmp_path / "gray.png")
    Image.new("RGB", (16, 64)).save(tmp_path / "tiny.png")
    with pytest.raises(LearningError, match="unreadable"):
        load_rgb(tmp_path / "junk.png")
    with pytest.raises(LearningError, match="grayscale"):
        load_rgb(tmp_path / "gray.png")
    with pytest.raises(LearningError, match="too small"):
        load_rgb(tmp_path / "tiny.png")
    with pytest.raises(LearningError, match="unknown saliency model"):
        get_saliency_model("nope")
    with pytest.raises(LearningError, match="no such saliency map"):
        load_map(tmp_path / "none.png")


@pytest.mark.parametrize("bad", ["junk", "gray", "tiny"])
def test_cli_bad_image_is_one_line_error_and_writes_nothing(tmp_path, capsys, bad):
    src = tmp_path / "in"
    src.mkdir()
    _object_scene()[0].save(src / "a_good.png")
    if bad == "junk":
        (src / "b.png").write_bytes(b"\x89PNG garbage")
    elif bad == "gray":
        Image.new("L", (64, 64)).save(src / "b.png")
    else:
        Image.new("RGB", (20, 20)).save(src / "b.png")
    for cmd in (["saliency"], ["msroi-table"]):
        out = tmp_path / f"out_{cmd[0]}"
        assert main(cmd + ["--images", str(src), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "b.png" in err and "\n" not in err
        assert not out.exists()


def test_saliency_cli_writes_maps(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _object_scene()[0].save(src / "scene.png")
    assert main(["saliency", "--images", str(src), "--out", str(tmp_path / "maps")]) == 0
    assert "saliency model: spectral" in capsys.readouterr().out
    m = load_map(tmp_path / "maps" / "scene.png", (320, 240))
    assert m.shape == (240, 320) and m.max() > 0.9
    assert main(["saliency", "--images", str(src), "--out", str(src)]) == 2  # would overwrite images
