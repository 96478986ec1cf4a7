"""train-codec as researchers use it: devices, fine-tuning (--init), schedules, DataLoader workers."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from PIL import Image

from learning import checkpoint
from learning.__main__ import main
from learning.architectures import build_model
from learning.device import resolve_device
from learning.errors import LearningError
from learning.training.initial_weights import load_zoo, zoo_file
from tests.learning.kodak import KODAK_DIR, require_kodak

torch.set_num_threads(2)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    require_kodak()
    root = tmp_path_factory.mktemp("ft-data")
    for split, ids in (("train", range(1, 7)), ("val", (23,))):
        (root / split).mkdir()
        for i in ids:
            Image.open(KODAK_DIR / f"kodim{i:02d}.png").convert("RGB").resize((160, 128), Image.LANCZOS).save(
                root / split / f"k{i:02d}.png")
    return {"train": str(root / "train"), "val": str(root / "val")}


def argv(data, out, *extra, arch=("--arch", "bmshj2018-factorized", "--N", "32", "--M", "32")) -> list[str]:
    return ["train-codec", *arch, "--data", data["train"], "--crop", "64", "--batch", "2", "--lr", "1e-3",
            "--lmbda", "0.01", "--no-progress", "--workers", "0", "--out", str(out), *extra]


def test_init_from_a_checkpoint_fine_tunes_its_weights(data, tmp_path, capsys):
    base, ft = tmp_path / "base.pt", tmp_path / "ft.pt"
    assert main(argv(data, base, "--steps", "3")) == 0
    # arch, N and M come from the checkpoint; the weights are its weights, the optimizer starts afresh
    assert main(["train-codec", "--init", str(base), "--data", data["train"], "--crop", "64", "--batch", "2",
                 "--lmbda", "0.05", "--steps", "1", "--lr", "0", "--aux-lr", "0", "--no-progress",
                 "--workers", "0", "--out", str(ft)]) == 0
    a, b = checkpoint.load(base), checkpoint.load(ft)
    assert (b["arch"], b["N"], b["M"], b["step"]) == ("bmshj2018-factorized", 32, 32, 1)
    assert b["config"]["init_source"] == f"checkpoint:{base}"
    for k, v in a["model"].items():
        if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length")):
            assert torch.equal(v, b["model"][k]), k  # lr 0: nothing moved
    capsys.readouterr()
    # another architecture or size than the checkpoint's: one line, nothing written
    bad = tmp_path / "bad.pt"
    for extra in (("--arch", "bmshj2018-hyperprior"), ("--N", "64")):
        args = ["train-codec", "--init", str(base), *extra, "--data", data["train"], "--crop", "64",
                "--lmbda", "0.01", "--steps", "1", "--no-progress", "--out", str(bad)]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "is bmshj2018-factorized N=32 M=32, but" in err and err.count("\n") == 1
        assert not bad.exists()


def test_zoo_init_offline_names_the_file_and_folder(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):  # nothing listens on port 9
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    out = tmp_path / "z.pt"
    assert main(["train-codec", "--init", "zoo:bmshj2018-hyperprior:3", "--data", data["train"],
                 "--crop", "64", "--lmbda", "0.01", "--steps", "1", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _, path = zoo_file("bmshj2018-hyperprior", 3, "mse")
    assert "bmshj2018-hyperprior-3-6d87be32.pth.tar" in err and str(path.parent) in err
    assert err.count("\n") == 1 and not out.exists()
    for spec, msg in (("zoo:nope:3", "unknown zoo architecture"), ("zoo:bmshj2018-hyperprior:9", "quality"),
                      ("zoo:bmshj2018-hyperprior:3:psnr", "mse or ms-ssim"), ("zoo:x", "zoo:ARCH:QUALITY")):
        with pytest.raises(LearningError, match=msg):
            load_zoo(spec)


def test_zoo_init_reads_the_cached_file(data, tmp_path, monkeypatch):
    """A file in torch.hub's cache under the zoo's name is what --init zoo: loads (here our own weights in
    CompressAI's layout, since the real download needs internet)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    _, path = zoo_file("bmshj2018-factorized", 1, "mse")
    path.parent.mkdir(parents=True)
    torch.manual_seed(7)
    published = build_model("bmshj2018-factorized", 128, 192).state_dict()
    torch.save(published, path)
    out = tmp_path / "z.pt"
    assert main(["train-codec", "--init", "zoo:bmshj2018-factorized:1", "--data", data["train"],
                 "--crop", "64", "--batch", "2", "--lmbda", "0.01", "--steps", "1", "--lr", "0",
                 "--aux-lr", "0", "--no-progress", "--workers", "0", "--out", str(out)]) == 0
    blob = checkpoint.load(out)
    assert (blob["N"], blob["M"]) == (128, 192)
    assert torch.equal(blob["model"]["g_a.0.weight"], published["g_a.0.weight"])


def test_dataloader_workers_do_not_change_the_run(data, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    assert main(argv(data, a, "--steps", "4")) == 0
    assert main(argv(data, b, "--steps", "4")[:-4] + ["--workers", "2", "--out", str(b), "--steps", "4"]) == 0
    ma, mb = checkpoint.load(a)["model"], checkpoint.load(b)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_cosine_and_plateau_schedules(data, tmp_path, capsys):
    cos = tmp_path / "cos.pt"
    assert main(argv(data, cos, "--steps", "6", "--lr-schedule", "cosine", "--log-every", "1")) == 0
    lrs = [r["lr"] for r in json.loads((tmp_path / "cos.pt.log.json").read_text()) if "lr" in r]
    assert lrs[0] == pytest.approx(1e-3) and all(x > y for x, y in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 5 / 6))))
    # a resumed cosine run gets the same rates: the rate is a function of (step, total) only
    from learning.training.schedule import Schedule

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched, fresh = Schedule("cosine", opt, 1e-3, 6), Schedule("cosine", opt, 1e-3, 6)
    fresh.load_state_dict(sched.state_dict())
    for step, want in enumerate(lrs):
        fresh.at_step(step)
        assert opt.param_groups[0]["lr"] == pytest.approx(want)
    pl = tmp_path / "pl.pt"
    assert main(argv(data, pl, "--steps", "6", "--lr-schedule", "plateau", "--val", data["val"],
                     "--val-every", "1", "--val-crop", "64")) == 0
    assert checkpoint.load(pl)["schedule"]["name"] == "plateau"
    capsys.readouterr()
    assert main(argv(data, tmp_path / "x.pt", "--steps", "2", "--lr-schedule", "plateau")) == 2
    assert "plateau needs --val" in capsys.readouterr().err


@pytest.mark.parametrize("device,message", [("cuda:7", "CUDA"), ("tpu", "unknown device"), ("cuda", "CUDA")])
def test_unusable_devices_are_one_line_errors(data, tmp_path, capsys, device, message):
    if torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has CUDA")
    out = tmp_path / "d.pt"
    assert main(argv(data, out, "--steps", "1", "--device", device)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()
    assert main(argv(data, out, "--steps", "1", "--device", "cpu", "--amp", "fp16")) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err


def test_auto_device_and_bf16_on_cpu_keep_likelihoods_fp32(data, tmp_path):
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    want = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto").type == want
    out = tmp_path / "bf.pt"
    assert main(argv(data, out, "--steps", "2", "--device", "cpu", "--amp", "bf16")) == 0
    from learning.training import noise

    model = build_model("bmshj2018-factorized", 32, 32)
    noise.keep_entropy_models_fp32(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 64, 64))
    assert out["x_hat"].dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())


@CUDA
def test_cuda_training_matches_the_checkpoint_format_and_resumes_on_cpu(data, tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(argv(data, out, "--steps", "3", "--device", "cuda", "--amp", "bf16", "--workers", "2",
                     "--val", data["val"], "--val-crop", "64")) == 0
    blob = checkpoint.load(out)
    assert all(t.device.type == "cpu" for t in blob["model"].values())
    capsys.readouterr()
    assert main(argv(data, out, "--steps", "4", "--device", "cpu", "--resume")) == 0
    assert "not bit for bit" in capsys.readouterr().err


@CUDA
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs for NCCL DDP")
def test_ddp_nccl_two_gpus(data, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "learning",
                        *argv(data, out, "--steps", "2", "--device", "cuda")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert checkpoint.load(out)["step"] == 2
