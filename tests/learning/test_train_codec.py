"""Learned-codec training: loss falls, exact resume, real bitstreams, DDP == one process, DPL distortion."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learning import checkpoint
from learning.__main__ import main
from learning.codecs import get_codec
from learning.device import native_bf16
from learning.errors import LearningError
from learning.training.data import CropDataset, saliency_weights
from learning.training.loop import TrainConfig, train
from tests.learning.kodak import KODAK_DIR, require_kodak

KODAK = KODAK_DIR
REPO = Path(__file__).resolve().parents[2]
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    require_kodak()
    root = tmp_path_factory.mktemp("codec-data")
    (root / "train").mkdir()
    (root / "val").mkdir()
    (root / "sal").mkdir()
    for i in range(1, 9):
        im = Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB").resize((144, 96), Image.LANCZOS)
        im.save(root / "train" / f"k{i:02d}.png")
        # a 16-bit saliency map: a bright disc off centre
        yy, xx = np.mgrid[0:96, 0:144]
        sal = (np.hypot(xx - 40 - 5 * i, yy - 50) < 30).astype(np.float64) * 65535
        Image.fromarray(sal.astype(np.uint16)).save(root / "sal" / f"k{i:02d}.png")
    for i in (23, 24):
        Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB").resize((144, 96)).save(
            root / "val" / f"v{i}.png"
        )
    return {"train": str(root / "train"), "val": str(root / "val"), "sal": str(root / "sal"), "root": root}


def common(data, out, *extra) -> list[str]:
    return [
        "train-codec",
        "--arch",
        "bmshj2018-factorized",
        "--N",
        "32",
        "--M",
        "32",
        "--data",
        data["train"],
        "--crop",
        "64",
        "--batch",
        "4",
        "--lr",
        "1e-3",
        "--lmbda",
        "0.01",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_trains_loss_falls_and_real_bitstreams_decode(data, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    argv = common(data, ckpt, "--steps", "40", "--loss", "mse", "--val", data["val"], "--log-every", "2",
                  "--val-every", "20", "--workers", "0")
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    log = json.loads((tmp_path / "m.pt.log.json").read_text())
    trains = [r for r in log if "loss" in r]
    vals = [r for r in log if "val_loss" in r]
    assert len(trains) == 20 and trains[-1]["step"] == 40
    first, last = np.mean([r["loss"] for r in trains[:3]]), np.mean([r["loss"] for r in trains[-3:]])
    assert last < 0.8 * first, (first, last)
    assert [r["step"] for r in vals] == [20, 40] and "val_psnr" in vals[-1]
    # the best validation point is kept beside the last checkpoint
    best = checkpoint.load(tmp_path / "m.best.pt")
    assert best["best_val_loss"] == min(r["val_loss"] for r in vals)
    assert result["best_val_loss"] == best["best_val_loss"]
    ev = result["bitstream_eval"]
    assert ev["n_images"] == 2 and ev["bitstream_bpp"] > 0
    # the checkpoint is a codec: real rANS bitstream, odd image size, bpp from bytes
    codec = get_codec(f"ckpt:{ckpt}")
    img = Image.open(KODAK / "kodim03.png").convert("RGB").crop((0, 0, 100, 70))
    enc = codec.encode(img, 0)
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (100 * 70))
    dec = codec.decode(enc.data)
    assert dec.size == (100, 70)
    assert codec.encode(img, 0).data == enc.data  # deterministic
    from learning.codecs.spec import encode_setting, parse_codec_spec

    (setting,) = parse_codec_spec(f"ckpt:{ckpt}")
    assert encode_setting(img, setting).data == enc.data  # make_stimuli's path
    with pytest.raises(LearningError, match="corrupt"):
        codec.decode(enc.data[:-5])
    with pytest.raises(LearningError, match="corrupt"):
        codec.decode(b"JUNK" + enc.data[4:])


def _state(path) -> dict:
    return checkpoint.load(path)  # weights_only=True: a checkpoint is plain data and tensors


def test_resume_is_exact(data, tmp_path):
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert main(common(data, full, "--steps", "9", "--loss", "mse")) == 0
    assert main(common(data, part, "--steps", "5", "--loss", "mse")) == 0  # stops mid-epoch (2 batches/epoch)
    assert main(common(data, part, "--steps", "9", "--loss", "mse", "--resume")) == 0
    a, b = _state(full), _state(part)
    assert a["step"] == b["step"] == 9
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for opt in ("optimizer", "aux_optimizer"):
        for sa, sb in zip(a[opt]["state"].values(), b[opt]["state"].values()):
            assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(
                sa["exp_avg_sq"], sb["exp_avg_sq"]
            )
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # a later stage with a decayed learning rate: the new --lr applies, the Adam moments carry over
    assert main(common(data, part, "--steps", "11", "--loss", "mse", "--resume", "--lr", "1e-4")) == 0
    c = _state(part)
    assert c["step"] == 11 and [g["lr"] for g in c["optimizer"]["param_groups"]] == [1e-4]
    assert c["config"]["lr"] == 1e-4 and a["optimizer"]["param_groups"][0]["lr"] == 1e-3


def test_checkpoint_is_plain_data_and_loads_weights_only(data, tmp_path):
    ckpt = tmp_path / "m.pt"
    assert main(common(data, ckpt, "--steps", "2", "--loss", "mse")) == 0
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)  # no allow-listed globals needed
    assert blob["format"] == checkpoint.FORMAT and blob["step"] == 2
    assert all(type(v) is float for r in blob["history"] for k, v in r.items() if k in ("loss", "bpp"))
    # the stored RNG states restore exactly what was saved
    before = np.random.get_state(), random.getstate(), torch.get_rng_state()
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    try:
        checkpoint.restore_rng(blob)
        assert torch.equal(torch.get_rng_state(), blob["rng"]["torch"])
        state = np.random.get_state()
        assert state[1].tolist() == blob["rng"]["numpy"]["keys"].tolist()
        assert state[2] == blob["rng"]["numpy"]["pos"]
        assert random.getstate() == blob["rng"]["python"]
    finally:
        np.random.set_state(before[0])
        random.setstate(before[1])
        torch.set_rng_state(before[2])


class _TouchOnUnpickle:
    """Unpickling this calls Path.touch(marker): a stand-in for a payload like os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    blob = {"format": checkpoint.FORMAT, "arch": "bmshj2018-factorized", "N": 32, "M": 32,
            "model": _TouchOnUnpickle(marker)}  # fmt: skip
    if writer == "torch.save":
        torch.save(blob, evil)
    else:
        evil.write_bytes(pickle.dumps(blob, protocol=4))
    with pytest.raises(LearningError, match="not a safe checkpoint") as err:
        checkpoint.load(evil)
    assert "\n" not in str(err.value) and "could run code" in str(err.value)
    with pytest.raises(LearningError, match="not a safe checkpoint"):
        get_codec(f"ckpt:{evil}")
    # the CLI: one line on stderr, exit 2, no traceback, nothing run
    out, img = tmp_path / "x.lrn", tmp_path / "in.png"
    Image.fromarray(np.full((32, 48, 3), 128, np.uint8)).save(img)
    argv = ["encode", "--codec", f"ckpt:{evil}", "--quality", "0", str(img), str(out)]
    assert main(argv) == 2
    err_text = capsys.readouterr().err
    assert "not a safe checkpoint" in err_text and "Traceback" not in err_text
    assert not marker.exists() and not out.exists()
    # the payload is real: an unguarded load runs it
    torch.load(evil, weights_only=False) if writer == "torch.save" else pickle.loads(evil.read_bytes())
    assert marker.exists()


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    junk, cut = tmp_path / "junk.pt", tmp_path / "cut.pt"
    junk.write_text("root:x:0:0\n")
    torch.save({"format": checkpoint.FORMAT, "x": torch.zeros(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    for p in (junk, cut):
        with pytest.raises(LearningError, match="cannot read checkpoint") as err:
            checkpoint.load(p)
        assert "\n" not in str(err.value)
    # the old format stored numpy's RNG state (numpy objects): refused, with the reason
    old = tmp_path / "old.pt"
    torch.save({"format": checkpoint.FORMAT, "rng": {"numpy": np.random.get_state()}}, old)
    with pytest.raises(LearningError, match=r"not a safe checkpoint: it needs the Python object numpy\."):
        checkpoint.load(old)
    partial = tmp_path / "partial.pt"
    torch.save({"format": checkpoint.FORMAT, "arch": "bmshj2018-factorized"}, partial)
    with pytest.raises(LearningError, match="not a complete train-codec checkpoint"):
        get_codec(f"ckpt:{partial}")


def test_saliency_weights_follow_the_crop(data):
    ds = CropDataset(data["train"], 64, seed=3, saliency_dir=data["sal"], alpha=3.0)
    full = torch.from_numpy(np.asarray(Image.open(ds.files[1]).convert("RGB"), np.float32) / 255).permute(
        2, 0, 1
    )
    sal = torch.from_numpy(np.asarray(Image.open(ds.saliency[1]), np.float32) / 65535)[None]
    flips = set()
    for key in range(6):
        x, w = ds[(1, key)]
        assert w.shape == (1, 64, 64) and float(w.mean()) == pytest.approx(1.0, abs=1e-5)
        # recover the crop position (and flip) from the image; the weights come from the same window
        windows = {(t, s): full[:, t : t + 64, s : s + 64] for t in range(0, 33) for s in range(0, 81)}
        hits = [(t, s, f) for (t, s), win in windows.items() for f in (False, True)
                if torch.equal(win.flip(-1) if f else win, x)]
        assert len(hits) == 1
        t, s, f = hits[0]
        window = sal[:, t : t + 64, s : s + 64]
        assert torch.allclose(w, saliency_weights(window.flip(-1) if f else window, 3.0), atol=1e-5)
        flips.add(f)
        ds2 = CropDataset(data["train"], 64, seed=3)
        assert torch.equal(ds2[(1, key)][0], x)  # the crop depends only on (seed, image, key)
    assert flips == {False, True}


def test_saliency_training_runs(data, tmp_path):
    assert (
        main(common(data, tmp_path / "s.pt", "--steps", "4", "--loss", "mse", "--saliency", data["sal"])) == 0
    )


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--loss", "nope", "--steps", "2"], "unknown loss"),
        (["--loss", "mse+nope", "--steps", "2"], "unknown loss"),
        (["--loss", "mse+0*mse", "--steps", "2"], "positive finite"),
        (["--loss", "mse+x*mse", "--steps", "2"], "must be a number"),
        (["--loss", "ms-ssim", "--steps", "2"], "larger than 160"),
        (["--loss", "mse", "--steps", "2", "--resume"], "no checkpoint"),
        (["--loss", "dpl:/nonexistent.pt", "--steps", "2"], "does not exist"),
        (["--loss", "mse", "--steps", "2", "--batch", "64"], "fewer than one batch"),
    ],
)
def test_bad_arguments_are_clear_errors(data, tmp_path, capsys, extra, message):
    out = tmp_path / "x.pt"
    assert main(common(data, out, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_checkpoint_codec():
    with pytest.raises(LearningError, match="does not exist"):
        get_codec("ckpt:/nonexistent/model.pt")


def _dpl_weight_file(tmp_path) -> str:
    pytest.importorskip("learning.dpl", reason="helper L1's DPL module is not in the tree yet")
    from learning.dpl import DPL
    from learning.dpl.weightfile import save_weights

    model = DPL(net="alex", weights=None, backbone=None, seed=0)
    with torch.no_grad():  # non-uniform, nonnegative weights: a "fitted" file on a random backbone
        for w in model.weights:
            w.copy_(torch.rand(w.shape, generator=torch.Generator().manual_seed(w.numel())))
    path = tmp_path / "dpl.pt"
    save_weights(model, path, {"note": "random backbone, test"})
    return str(path)


@pytest.mark.slow  # ~10 s alone, up to a minute on a loaded 2-core machine
def test_trains_with_dpl_distortion(data, tmp_path, capsys):
    weights = _dpl_weight_file(tmp_path)
    ckpt = tmp_path / "dpl.ckpt"
    # backbone read from the file's metadata (random:0), saliency-weighted spatial DPL map
    argv = common(data, ckpt, "--steps", "30", "--loss", f"dpl:{weights}", "--lmbda", "1.0",
                  "--saliency", data["sal"], "--val", data["val"], "--log-every", "3")
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    log = [r for r in json.loads((tmp_path / "dpl.ckpt.log.json").read_text()) if "loss" in r]
    assert log[-1]["loss_kind"].startswith("dpl:")
    first, last = np.mean([r["loss"] for r in log[:3]]), np.mean([r["loss"] for r in log[-3:]])
    assert last < first, (first, last)
    assert result["bitstream_eval"]["bitstream_bpp"] > 0
    codec = get_codec(f"ckpt:{ckpt}")
    img = Image.open(KODAK / "kodim04.png").convert("RGB").crop((0, 0, 80, 64))
    assert codec.decode(codec.encode(img, 0).data).size == (80, 64)


def test_weighted_sum_loss(data, tmp_path, capsys):
    """``dpl:FILE+0.5*mse`` is the DPL plus half the MSE term, saliency-weighted too; a run with it
    trains, and its checkpoints form a curve of their own (``learned:…/dpl+0.5*mse``)."""
    from learning.training.losses import build_distortion

    weights = _dpl_weight_file(tmp_path)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    sal = torch.rand(2, 1, 64, 64, generator=g) + 0.5
    dpl, mse, both = (build_distortion(s) for s in (f"dpl:{weights}", "mse", f"dpl:{weights}+0.5*mse"))
    assert both.spatial and not build_distortion("ms-ssim+mse").spatial
    for w in (None, sal):
        torch.testing.assert_close(both(y, x, w), dpl(y, x, w) + 0.5 * mse(y, x, w))
    ckpt = tmp_path / "mix.pt"
    assert main(common(data, ckpt, "--steps", "2", "--loss", f"dpl:{weights}+0.5*mse", "--lmbda", "1")) == 0
    assert json.loads(capsys.readouterr().out)["last_train"]["loss"] > 0
    assert get_codec(f"ckpt:{ckpt}").curve_label() == "learned:bmshj2018-factorized/dpl+0.5*mse"


def test_dpl_backbone_mismatch_is_an_error(data, tmp_path, capsys):
    weights = _dpl_weight_file(tmp_path)
    from learning.training.losses import load_dpl

    assert load_dpl(weights).backbone.source == "random:0"
    assert load_dpl(weights, "random:5").backbone.source == "random:5"  # explicit override
    blob = torch.load(weights, weights_only=True)
    blob["metadata"]["backbone_sha256"] = "0" * 64
    torch.save(blob, weights)
    assert main(common(data, tmp_path / "x.pt", "--steps", "2", "--loss", f"dpl:{weights}")) == 2
    assert "sha256 mismatch" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_processes_match_one(data, tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    steps = ["--steps", "8", "--loss", "mse", "--threads", "1"]
    assert main(common(data, one, *steps)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port",
        "29571",
        "-m",
        "learning",
    ]
    r = subprocess.run(
        torchrun + common(data, two, *steps), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _state(one), _state(two)
    init = None
    torch.manual_seed(0)
    from learning.architectures import build_model

    init = build_model("bmshj2018-factorized", 32, 32).state_dict()
    moved = sum(
        float(((a["model"][k] - init[k]) ** 2).sum())
        for k in init
        if init[k].is_floating_point() and init[k].shape == a["model"][k].shape
    )
    diff = sum(
        float(((a["model"][k] - b["model"][k]) ** 2).sum())
        for k in init
        if init[k].is_floating_point() and init[k].shape == a["model"][k].shape
    )
    assert moved > 0
    assert (diff / moved) ** 0.5 < 0.02, (diff, moved)  # same model up to float reduction order
    la = [r["loss"] for r in a["history"]]
    lb = [r["loss"] for r in b["history"]]
    assert np.allclose(la, lb, rtol=1e-4)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor"])
def test_other_architectures_train_and_code_real_bitstreams(data, tmp_path, arch):
    ckpt = tmp_path / f"{arch}.pt"
    argv = common(data, ckpt, "--steps", "2", "--loss", "mse")
    argv[argv.index("bmshj2018-factorized")] = arch
    argv[argv.index("--M") + 1] = "48"
    assert main(argv) == 0
    codec = get_codec(f"ckpt:{ckpt}")
    img = Image.open(KODAK / "kodim06.png").convert("RGB").crop((0, 0, 70, 60))
    enc = codec.encode(img, 0)
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (70 * 60))
    assert codec.decode(enc.data).size == (70, 60)


def _twelve_steps_each(data, tmp_path, option: str, *values: str) -> list[list[dict]]:
    """The per-step training records of one 12-step MSE run per value of ``option`` (``VALUE.pt``)."""
    runs = []
    for value in values:
        out = tmp_path / f"{value}.pt"
        assert main(common(data, out, "--steps", "12", "--log-every", "1", "--loss", "mse", "--workers", "0",
                           option, value)) == 0
        runs.append([r for r in _state(out)["history"] if "loss" in r])
        assert [r["step"] for r in runs[-1]] == list(range(1, 13))
    return runs


def test_channels_last_keeps_the_losses(data, tmp_path):
    """The default channels-last layout (faster convolutions) trains the same model as CompressAI's contiguous
    one: equal losses and rates at equal steps, up to the order of float additions."""
    a, b = _twelve_steps_each(data, tmp_path, "--memory-format", "channels_last", "contiguous")
    # the first step runs identical weights on identical data and noise
    assert a[0]["loss"] == pytest.approx(b[0]["loss"], rel=1e-5)
    assert a[0]["bpp"] == pytest.approx(b[0]["bpp"], rel=1e-5)
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=0.01), (ra, rb)
        assert ra["bpp"] == pytest.approx(rb["bpp"], rel=0.01), (ra, rb)
    assert _state(tmp_path / "channels_last.pt")["config"]["memory_format"] == "channels_last"


def test_unknown_memory_format_is_refused(data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(common(data, tmp_path / "x.pt", "--steps", "2", "--memory-format", "nhwc"))
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(LearningError, match="--memory-format 'nhwc'"):
        train(TrainConfig(data=data["train"], out=str(tmp_path / "y.pt"), arch="bmshj2018-factorized", N=32,
                          M=32, crop=64, batch=4, steps=2, memory_format="nhwc"))
    assert not (tmp_path / "y.pt").exists()


def test_bf16_keeps_the_losses(data, tmp_path):
    """bf16 autocast (twice the steps/s on a CPU with AMX, bench/README.md) trains the same model: losses
    and rates at equal steps close to full precision (entropy models stay fp32); ``auto`` picks bf16
    exactly where the device multiplies bf16 in hardware."""
    a, b = _twelve_steps_each(data, tmp_path, "--amp", "bf16", "off")
    rel = [(ra["loss"] / rb["loss"] - 1, ra["bpp"] / rb["bpp"] - 1) for ra, rb in zip(a, b)]
    # step 1: the same weights, data and noise, so only bf16's rounding (8 bits of mantissa) differs; later
    # the trajectories drift apart as any two float orders do: each step within 5 %, on average within 1.5 %
    assert abs(rel[0][0]) < 0.005 and abs(rel[0][1]) < 0.005, rel[0]
    assert max(max(abs(x), abs(y)) for x, y in rel) < 0.05, rel
    assert abs(np.mean([x for x, _ in rel])) < 0.015 and abs(np.mean([y for _, y in rel])) < 0.015, rel
    assert 0 < abs(a[0]["loss"] - b[0]["loss"])  # bf16 really ran (its rounding shows in the distortion)
    assert _state(tmp_path / "bf16.pt")["config"]["amp_used"] == "bf16"
    out = tmp_path / "auto.pt"
    assert main(common(data, out, "--steps", "1", "--workers", "0", "--amp", "auto")) == 0
    assert _state(out)["config"]["amp_used"] == ("bf16" if native_bf16(torch.device("cpu")) else "off")
