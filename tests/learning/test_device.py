"""One device policy: every command resolves ``--device`` once (``learning.device.resolve_device``) and
hands a ``torch.device`` to the library; ``auto`` means the same everywhere; validation metrics run on the
training device."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from learning.__main__ import main
from learning.cli import encode, fit, rd, score, train_codec
from learning.device import device_or_cpu, resolve_device
from learning.metrics import deep
from learning.training.loop import log_path
from tests.learning.kodak import KODAK_DIR, require_kodak

torch.set_num_threads(2)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


class Reached(Exception):
    """Raised by a spy in place of the library call a command makes."""


def _spy(monkeypatch, module, name: str, position: int) -> dict:
    """Replace ``module.name`` by a function that records the device it is given and stops the command."""
    seen: dict = {}

    def fake(*args, **kwargs):
        seen["device"] = kwargs["device"] if "device" in kwargs else args[position]
        raise Reached

    monkeypatch.setattr(module, name, fake)
    return seen


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    require_kodak()
    root = tmp_path_factory.mktemp("device-data")
    for split, ids in (("train", (1, 2)), ("val", (23,))):
        (root / split).mkdir()
        for i in ids:
            Image.open(KODAK_DIR / f"kodim{i:02d}.png").convert("RGB").resize((96, 64), Image.LANCZOS).save(
                root / split / f"k{i:02d}.png")
    return {"train": str(root / "train"), "val": str(root / "val")}


def _commands(images: dict, tmp) -> list[tuple[list[str], object, str, int]]:
    """(argv without --device, CLI module, the library function it calls, that call's device position)."""
    src = f"{images['train']}/k01.png"
    return [
        (["score", "--data", images["val"]], score, "score_metrics", -1),
        (["fit", "--data", images["train"], "--out", str(tmp / "w.dpl")], fit, "fit_dpl", -1),
        (["encode", "--codec", "jpeg", "--quality", "50", src, str(tmp / "x.jpg")], encode, "get_codec", -1),
        (["rd", "--images", images["train"], "--codecs", "jpeg", "--out", str(tmp / "rd")], rd,
         "resolve_curves", 1),
        (["train-codec", "--arch", "bmshj2018-factorized", "--data", images["train"], "--lmbda", "0.01",
          "--steps", "1", "--out", str(tmp / "c.pt")], train_codec, "train_codec", -1),
    ]


def test_auto_means_the_same_device_in_every_command(images, tmp_path, monkeypatch) -> None:
    """``--device auto`` reaches every library entry point as ``resolve_device("auto")``, a torch.device,
    and ``--device cpu`` as the CPU; the ``ckpt:`` codec path included (encode's ``get_codec``, rd's
    ``resolve_curves``)."""
    auto = resolve_device("auto")
    for argv, module, name, position in _commands(images, tmp_path):
        for word, want in (("auto", auto), ("cpu", torch.device("cpu"))):
            seen = _spy(monkeypatch, module, name, position)
            with pytest.raises(Reached):
                main([*argv, "--device", word])
            assert isinstance(seen["device"], torch.device), (argv[0], seen)
            assert seen["device"] == want, (argv[0], word, seen["device"])


def test_library_takes_a_device_not_a_word() -> None:
    assert device_or_cpu(None) == torch.device("cpu")
    assert device_or_cpu(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(TypeError, match="resolve_device"):
        device_or_cpu("auto")


def test_torchrun_gives_each_process_its_gpu(monkeypatch) -> None:
    """Under torchrun a CUDA device is the process's ``LOCAL_RANK`` GPU (what NCCL needs), decided in
    ``resolve_device``; a single process keeps the device it named."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == torch.device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


def _val_metric_devices(images: dict, tmp_path, monkeypatch, device: str) -> list[torch.device]:
    """Train one step on ``device`` with ``--val-metrics lpips-alex:random:0``; the devices its network
    was asked for."""
    asked: list[torch.device] = []
    real = deep._model

    def model(net, weights, backbone, dev):
        asked.append(dev)
        return real(net, weights, backbone, dev)

    monkeypatch.setattr(deep, "_model", model)
    out = tmp_path / f"{device}.pt"
    assert main(["train-codec", "--arch", "bmshj2018-factorized", "--N", "32", "--M", "32", "--data",
                 images["train"], "--val", images["val"], "--val-crop", "64", "--crop", "64", "--batch", "2",
                 "--steps", "1", "--lmbda", "0.01", "--val-metrics", "lpips-alex:random:0", "--no-progress",
                 "--workers", "0",
                 "--device", device, "--out", str(out)]) == 0
    vals = [r for r in json.loads(log_path(out).read_text()) if "val_loss" in r]
    assert vals and "val_lpips_alex:random:0" in vals[-1]
    return asked


def test_validation_metrics_run_on_the_training_device_cpu(images, tmp_path, monkeypatch) -> None:
    asked = _val_metric_devices(images, tmp_path, monkeypatch, "cpu")
    assert asked and {d.type for d in asked} == {"cpu"}


@CUDA
def test_validation_metrics_run_on_the_training_device_cuda(images, tmp_path, monkeypatch) -> None:
    asked = _val_metric_devices(images, tmp_path, monkeypatch, "cuda")
    assert asked and {d.type for d in asked} == {"cuda"}
