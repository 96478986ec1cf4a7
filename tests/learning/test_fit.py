"""Recovery: fit on a synthetic observer's judgments (BAPPS layout on disk) approaches the true weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learning import DPL, twoafc
from learning.__main__ import main
from learning.data.bapps import to_tensor
from learning.data.shared import KODAK_PNGS
from learning.dpl.weightfile import load_weights
from learning.fitting.synthetic import make_dataset

KODAK = KODAK_PNGS


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    if not KODAK:
        pytest.skip("Kodak images not found")
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("synth")
    info = make_dataset(root, KODAK, net="alex", backbone_seed=0, n_train=1000, n_val=400, seed=0)
    return root, info


def _val_score(weights: torch.Tensor, root: Path, info) -> float:
    dpl = info["observer"]
    if "val_m" not in info:
        r, a, b = (to_tensor([t[j] for t in info["val"]]) for j in range(3))
        info["val_m"] = dpl.triplet_channel_distances(r, a, b)
    m0, m1 = info["val_m"]
    d = torch.stack([m0 @ weights, m1 @ weights], 1).numpy()
    return twoafc.score(d[:, 0], d[:, 1], info["val_h"])


@pytest.mark.slow
def test_fit_recovers_synthetic_observer(synth, capsys) -> None:
    root, info = synth
    out = root / "fit.dpl"
    cache = root / "cache"
    args = ["fit", "--data", str(root / "train"), "--val", str(root / "val"), "--net", "alex",
            "--backbone", "random:0", "--out", str(out), "--cache", str(cache), "--quiet"]
    assert main(args) == 0
    assert "val 2AFC" in capsys.readouterr().out
    ceiling = twoafc.score(info["val_dist"][:, 0], info["val_dist"][:, 1], info["val_h"])
    fitted = torch.cat(load_weights(out)["weights"])
    truth = info["observer"].flat_weights()
    with torch.inference_mode():
        fit_score = _val_score(fitted, root, info)
        uniform_score = _val_score(torch.ones_like(truth), root, info)
    assert fit_score >= 0.97 * ceiling, (fit_score, ceiling)
    assert fit_score > uniform_score + 0.005, (fit_score, uniform_score)
    # the weights themselves move toward the truth (cosine similarity), far beyond uniform's
    cos = torch.nn.functional.cosine_similarity
    assert cos(fitted, truth, 0) > cos(torch.ones_like(truth), truth, 0) + 0.2
    # the model loads and gives the same scores through DPL(weights=FILE)
    model = DPL("alex", weights=out, backbone=None, seed=0)
    assert torch.allclose(model.flat_weights(), fitted)
    meta = load_weights(out)["metadata"]
    assert meta["n_train"] == 1000 and abs(meta["val_2afc"] - fit_score) < 1e-6

    # refit: every vector comes from the cache, the result is identical
    assert main(args[:-1] + ["--out", str(root / "refit.dpl")]) == 0
    err = capsys.readouterr().err
    assert "train features: 1000 cached, 0 computed" in err and "val features: 400 cached, 0 computed" in err
    assert torch.equal(torch.cat(load_weights(root / "refit.dpl")["weights"]), fitted)


def test_cache_runs_each_unique_image_once(tmp_path) -> None:
    """References and stimuli repeat across triplets (as in the site's exports): the backbone sees each
    unique image once, the vectors equal the per-triplet computation, and a refit computes only new pairs."""
    if not KODAK:
        pytest.skip("Kodak images not found")
    from learning.data.bapps import load_2afc
    from learning.fitting.cache import channel_vectors
    from learning.fitting.synthetic import make_triplets, write_bapps

    torch.set_num_threads(2)
    trip = make_triplets(KODAK[:2], 18, 64, seed=3, mix=False, distortions=4, pairs_per_ref=6)
    assert len({id(t[0]) for t in trip}) == 3 and len(trip) == 18
    write_bapps(tmp_path / "a", trip[:12], [0.5] * 12)
    write_bapps(tmp_path / "b", trip, [0.5] * 18)
    model = DPL("alex", backbone=None, seed=0)
    seen = []
    model.backbone.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))

    def unique_images(ts):
        return len({id(img) for t in ts for img in t})

    first = load_2afc(tmp_path / "a")[0].triplets
    m0, m1, n_new = channel_vectors(model, first, tmp_path / "cache", batch_size=2, progress=False)
    assert n_new == 12 and sum(seen) == unique_images(trip[:12]) < 3 * 12
    with torch.inference_mode():
        r0, r1 = model.triplet_channel_distances(*(to_tensor([t[j] for t in trip[:12]]) for j in range(3)))
    assert torch.allclose(m0, r0, atol=1e-6) and torch.allclose(m1, r1, atol=1e-6)

    seen.clear()  # the same images under other paths: the 12 cached triplets are found by content
    allt = load_2afc(tmp_path / "b")[0].triplets
    a0, a1, n_new = channel_vectors(model, allt, tmp_path / "cache", batch_size=2, progress=False)
    assert torch.equal(a0[:12], m0) and torch.equal(a1[:12], m1)
    assert n_new == 6 and sum(seen) == unique_images(trip[12:])  # the third reference's 6 triplets


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture()
def no_tf32():
    """Full float32 on CUDA: TF32 (on by default for cuDNN convolutions) keeps 10 mantissa bits."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small synthetic 2AFC set for the --device runs (observer on random:1, fitted on random:0)."""
    if not KODAK:
        pytest.skip("Kodak images not found")
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("device")
    make_dataset(root, KODAK[:4], net="alex", backbone_seed=1, n_train=32, n_val=16, size=64, seed=0)
    return root


def _fit_args(root: Path, out: Path, device: str, *extra: str) -> list[str]:
    return ["fit", "--data", str(root / "train"), "--val", str(root / "val"), "--backbone", "random:0",
            "--out", str(out), "--cache", "none", "--rounds", "3", "--patience", "3", "--batch-size", "8",
            "--device", device, "--quiet", *extra]


def _assert_cpu_file(path: Path) -> dict:
    data = torch.load(path, weights_only=True)  # no map_location: tensors come back where they were saved
    tensors = [*data["weights"], *data.get("backbone_state", {}).values()]
    assert tensors and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    return data


def test_fit_device_cpu_and_refusals(tiny, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "cpu.dpl"
    assert main(_fit_args(tiny, out, "cpu")) == 0
    _assert_cpu_file(out)
    tuned = tmp_path / "tuned.dpl"
    assert main(_fit_args(tiny, tuned, "cpu", "--tune", "--tune-epochs", "1")) == 0
    assert "backbone_state" in _assert_cpu_file(tuned)
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                            ("nope", "unknown device")]:
        bad = tmp_path / f"{device}.dpl"
        assert main(_fit_args(tiny, bad, device)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert not bad.exists()


@CUDA
def test_fit_on_cuda_equals_cpu(tiny, tmp_path, no_tf32) -> None:
    """Features, the L-BFGS fit and the whole command (and --tune) give the CPU's numbers on CUDA."""
    from learning.data.bapps import load_2afc
    from learning.fitting.cache import channel_vectors
    from learning.fitting.fit import fit_weights

    triplets = load_2afc([str(tiny / "train")])[0].triplets
    model = DPL("alex", backbone=None, seed=0)
    m0, m1, _ = channel_vectors(model, triplets, None, progress=False)
    c0, c1, _ = channel_vectors(model.to("cuda"), triplets, None, progress=False)
    assert c0.device.type == "cpu"
    for got, want in ((c0, m0), (c1, m1)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    h = torch.tensor([t.judge for t in triplets], dtype=torch.float32)
    n = len(h) // 2
    args = (m0[:n], m1[:n], h[:n], m0[n:], m1[n:], h[n:])
    cpu, gpu = fit_weights(*args, max_rounds=3), fit_weights(*args, max_rounds=3, device=torch.device("cuda"))
    assert gpu.weights.device.type == "cpu"
    torch.testing.assert_close(gpu.weights, cpu.weights, rtol=1e-4, atol=1e-4 * float(cpu.weights.max()))
    assert gpu.head_c == pytest.approx(cpu.head_c, rel=1e-4, abs=1e-6)

    files = {}
    for device in ("cpu", "cuda"):
        files[device] = tmp_path / f"{device}.dpl"
        assert main(_fit_args(tiny, files[device], device)) == 0
    want, got = (torch.cat(_assert_cpu_file(files[d])["weights"]) for d in ("cpu", "cuda"))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.max()))
    tuned = tmp_path / "tuned.dpl"
    assert main(_fit_args(tiny, tuned, "cuda", "--tune", "--tune-epochs", "1")) == 0
    meta = _assert_cpu_file(tuned)["metadata"]
    # cache batches and tuning batches differ in layout: equal up to a near-tie flip (one of 16 triplets)
    assert meta["tune_val_2afc_before"] == pytest.approx(meta["val_2afc_linear"], abs=1 / 16 + 1e-9)


def test_fit_dpl_library_equals_cli(tiny, tmp_path, capsys) -> None:
    """``fit_dpl`` called directly writes the CLI's weight file (same arguments and seed), with and
    without a validation set, and reports the figures the file's metadata holds."""
    from learning.fitting import FitReport, fit_dpl

    for name, with_val in (("val", True), ("holdout", False)):
        cli_out, lib_out = tmp_path / f"cli_{name}.dpl", tmp_path / f"lib_{name}.dpl"
        args = _fit_args(tiny, cli_out, "cpu", "--seed", "3")
        if not with_val:
            args = [a for i, a in enumerate(args) if a != "--val" and args[i - 1] != "--val"]
        assert main(args) == 0
        printed = capsys.readouterr().out
        rep = fit_dpl([str(tiny / "train")], lib_out, val=[tiny / "val"] if with_val else None,
                      backbone="random:0", cache=None, rounds=3, patience=3, batch_size=8, seed=3,
                      device=torch.device("cpu"), progress=False)
        assert isinstance(rep, FitReport) and rep.out == lib_out and rep.tune is None
        cli, lib = load_weights(cli_out), load_weights(lib_out)
        torch.testing.assert_close(torch.cat(lib["weights"]), torch.cat(cli["weights"]), rtol=0, atol=1e-6)
        assert lib["head"]["c"] == pytest.approx(cli["head"]["c"], abs=1e-6)
        meta = lib["metadata"]
        assert {k: v for k, v in meta.items() if k != "date"} == \
            {k: v for k, v in cli["metadata"].items() if k != "date"}
        assert (rep.train_2afc, rep.val_2afc, rep.rounds) == \
            (meta["train_2afc"], meta["val_2afc"], meta["rounds"])
        assert (rep.n_train, rep.n_val) == (meta["n_train"], meta["n_val"])
        assert (rep.n_train, rep.n_val) == ((32, 16) if with_val else (29, 3))
        assert f"val 2AFC {rep.val_2afc:.4f} (uniform weights {rep.val_2afc_uniform:.4f})" in printed
        assert f"best round {rep.rounds}" in printed


def test_fit_start_and_prior(tiny, tmp_path, capsys) -> None:
    """``--start lpips --prior P``: a strong prior keeps the weights at LPIPS's (up to scale), a weak one
    lets the judgments move them further; a bad start or prior is a one-line error, nothing written."""
    from learning.dpl.weightfile import lpips_shipped_weights

    lp = torch.cat([w.reshape(-1) for w in lpips_shipped_weights("alex")])
    cos = {}
    for prior in ("0", "1000"):
        out = tmp_path / f"p{prior}.dpl"
        assert main(_fit_args(tiny, out, "cpu", "--start", "lpips", "--prior", prior)) == 0
        data = load_weights(out)
        assert data["metadata"]["start"] == "lpips" and data["metadata"]["prior"] == float(prior)
        cos[prior] = float(torch.nn.functional.cosine_similarity(torch.cat(data["weights"]), lp, 0))
    assert cos["1000"] > 0.999 and cos["1000"] > cos["0"], cos
    # a weight file as the start: the strong prior keeps its weights
    again = tmp_path / "again.dpl"
    assert main(_fit_args(tiny, again, "cpu", "--start", str(tmp_path / "p1000.dpl"), "--prior", "1000")) == 0
    got = torch.cat(load_weights(again)["weights"])
    assert float(torch.nn.functional.cosine_similarity(got, lp, 0)) > 0.999
    capsys.readouterr()
    for extra, message in ((["--start", "nope"], "use uniform, lpips or"), (["--prior", "-1"], "prior -1"),
                           (["--prior", "nan"], "prior nan")):
        bad = tmp_path / "bad.dpl"
        assert main(_fit_args(tiny, bad, "cpu", *extra)) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
        assert not bad.exists()
