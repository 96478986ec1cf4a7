"""2AFC scoring: formula, human ceiling, bootstrap, and the score command end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from learning import DPL, twoafc
from learning.__main__ import main
from learning.data.shared import KODAK_PNGS
from learning.dpl.weightfile import save_weights
from learning.fitting.synthetic import judge, make_triplets, write_bapps

KODAK = KODAK_PNGS


def test_score_formula_and_ties() -> None:
    d0 = np.array([1.0, 2.0, 3.0, 1.0])
    d1 = np.array([2.0, 1.0, 3.0, 0.5])
    h = np.array([0.2, 0.75, 0.4, 1.0])
    assert twoafc.per_triplet(d0, d1, h).tolist() == [0.8, 0.75, 0.5, 1.0]


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_human_ceiling_is_held_out_judge_agreement(n: int) -> None:
    # brute force: over ordered pairs of distinct judges, how often do they agree?
    for k in range(n + 1):
        votes = [1] * k + [0] * (n - k)
        pairs = list(itertools.permutations(range(n), 2))
        agree = sum(votes[i] == votes[j] for i, j in pairs) / len(pairs)
        assert twoafc.human_ceiling(np.array([k / n]), np.array([n]))[0] == pytest.approx(agree)
    assert np.isnan(twoafc.human_ceiling(np.array([1.0]), np.array([1]))[0])
    assert twoafc.human_ceiling(np.array([0.5]), None) is None


def test_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(500)
    lo, hi = twoafc.bootstrap_ci(values, 2000)
    assert lo < values.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * values.std() / np.sqrt(500), rel=0.15)


def test_score_command(tmp_path: Path, capsys) -> None:
    if not KODAK:
        pytest.skip("Kodak images not found")
    torch.set_num_threads(2)
    observer = DPL("alex", backbone=None, seed=4)
    triplets = make_triplets(KODAK[:4], 40, 64, seed=1)
    h, dist, _ = judge(observer, triplets, n_judges=3, seed=1)
    write_bapps(tmp_path / "data" / "val" / "synth", triplets, h, n_judges=3)
    weights = tmp_path / "w.dpl"
    save_weights(observer, weights)
    out_json, out_png = tmp_path / "s.json", tmp_path / "plots" / "s.png"
    rc = main(["score", "--data", str(tmp_path / "data" / "val"), "--metrics", f"psnr,dpl:{weights}",
               "--json", str(out_json), "--plot", str(out_png), "--bootstrap", "200"])
    assert rc == 0
    res = {r["metric"]: r for r in json.loads(out_json.read_text())["results"]}
    # the observer's own weights give its noise-free ranking: same score as computed directly
    assert res[f"dpl:{weights}"]["score"] == pytest.approx(twoafc.score(dist[:, 0], dist[:, 1], h), abs=1e-9)
    ref = torch.from_numpy(np.stack([t[0] for t in triplets])).permute(0, 3, 1, 2).double() / 255
    mse = [((ref - torch.from_numpy(np.stack([t[j] for t in triplets])).permute(0, 3, 1, 2).double() / 255)
            ** 2).mean((1, 2, 3)).numpy() for j in (1, 2)]
    assert res["psnr"]["score"] == pytest.approx(twoafc.score(mse[0], mse[1], h), abs=1e-9)
    for r in res.values():
        assert r["ci"][0] <= r["score"] <= r["ci"][1] and r["n"] == 40
        assert r["human_ceiling"] == pytest.approx(float(np.mean(twoafc.human_ceiling(h, np.full(40, 3)))))
    assert out_png.stat().st_size > 1000 and out_png.with_suffix(".svg").is_file()
    assert "val/synth" in capsys.readouterr().out


def test_score_bad_input(tmp_path: Path, capsys) -> None:
    (tmp_path / "set" / "ref").mkdir(parents=True)
    for args, msg in [(["--metrics", "nope"], "unknown metric"),
                      (["--metrics", "dpl:" + str(tmp_path / "missing.dpl")], "weight file not found"),
                      (["--metrics", "psnr"], "missing subfolder")]:
        assert main(["score", "--data", str(tmp_path / "set"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and "\n" not in err, err


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture()
def small_set(tmp_path: Path):
    """A 2AFC set of 16 triplets judged by a DPL observer, and the observer's weight file."""
    if not KODAK:
        pytest.skip("Kodak images not found")
    torch.set_num_threads(2)
    observer = DPL("alex", backbone=None, seed=4)
    triplets = make_triplets(KODAK[:2], 16, 64, seed=1)
    h, dist, _ = judge(observer, triplets, n_judges=3, seed=1)
    write_bapps(tmp_path / "data" / "synth", triplets, h, n_judges=3)
    weights = tmp_path / "w.dpl"
    save_weights(observer, weights)
    return tmp_path / "data", weights, triplets, twoafc.score(dist[:, 0], dist[:, 1], h)


def _score(data: Path, weights: Path, out: Path, device: str) -> int:
    return main(["score", "--data", str(data), "--metrics", f"psnr,dpl:{weights},lpips-alex:random:0",
                 "--bootstrap", "0", "--json", str(out), "--device", device])


def test_score_device_cpu_and_refusals(small_set, tmp_path: Path, capsys, monkeypatch) -> None:
    from learning.metrics import registry

    data, weights, _, want = small_set
    out = tmp_path / "cpu.json"
    assert _score(data, weights, out, "cpu") == 0
    res = {r["metric"]: r["score"] for r in json.loads(out.read_text())["results"]}
    assert res[f"dpl:{weights}"] == pytest.approx(want, abs=1e-6)
    # the command's device is not left behind: there is no process-wide one, a metric is on the CPU
    # unless its caller names a device
    assert not hasattr(registry, "set_device") and not hasattr(registry, "_DEVICE")
    assert registry.get_metric(f"dpl:{weights}").device.type == "cpu"
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [("cuda", "CUDA is not available"), ("nope", "unknown device")]:
        bad = tmp_path / f"{device}.json"
        assert _score(data, weights, bad, device) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert not bad.exists()


def test_metric_registry_device() -> None:
    """A metric runs on the device its caller gives (None: the CPU); only ``resolve_device`` reads words."""
    from learning.device import resolve_device
    from learning.errors import LearningError
    from learning.metrics.registry import get_metric

    with pytest.raises(LearningError, match="unknown device"):
        resolve_device("nope")
    with pytest.raises(TypeError, match="torch.device"):
        get_metric("lpips-alex:random:0", "cuda")  # a word is not re-read by the library
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    metric = get_metric("lpips-alex:random:0")
    assert metric.device.type == "cpu" and get_metric("psnr").device.type == "cpu"
    on_cpu = get_metric("lpips-alex:random:0", torch.device("cpu"))
    assert on_cpu.device.type == "cpu" and on_cpu(x, y).device.type == "cpu"
    torch.testing.assert_close(on_cpu(x, y), metric(x, y))
    assert metric.to(None).device.type == "cpu"


@CUDA
def test_score_on_cuda_equals_cpu(small_set, tmp_path: Path) -> None:
    """Deep metrics on CUDA give the CPU's distances (to 1e-4 relative, TF32 off) and the same scores."""
    from learning.data.bapps import to_tensor
    from learning.metrics.registry import get_metric

    data, weights, triplets, want = small_set
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref, dist = (to_tensor([t[j] for t in triplets]) for j in (0, 1))
        for name in (f"dpl:{weights}", "lpips-alex:random:0"):
            metric = get_metric(name)
            cpu = metric(ref, dist)
            cuda = get_metric(name, torch.device("cuda"))
            assert cuda.device.type == "cuda" and metric.device.type == "cpu"
            gpu = cuda(ref, dist)
            assert gpu.device.type == "cpu"
            torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=0)
            on_gpu = metric.to(torch.device("cuda"))(ref.cuda(), dist.cuda())
            assert on_gpu.device.type == "cuda"
            torch.testing.assert_close(on_gpu.cpu(), cpu, rtol=1e-4, atol=0)
        files = {d: tmp_path / f"{d}.json" for d in ("cpu", "cuda")}
        for device, out in files.items():
            assert _score(data, weights, out, device) == 0
        cpu_res, gpu_res = ({r["metric"]: r["score"] for r in json.loads(files[d].read_text())["results"]}
                            for d in ("cpu", "cuda"))
        assert gpu_res[f"dpl:{weights}"] == pytest.approx(want, abs=1e-6)
        for name, score in cpu_res.items():  # equal distances: a flip needs a near-tie (one triplet)
            assert gpu_res[name] == pytest.approx(score, abs=1 / len(triplets) + 1e-9), name
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_score_metrics_library_equals_cli(small_set, tmp_path: Path, capsys) -> None:
    """``score_metrics`` called directly gives the rows the command writes, each passed to ``on_row``."""
    from learning.scoring import score_metrics

    data, weights, _, want = small_set
    out = tmp_path / "cli.json"
    names = ["psnr", f"dpl:{weights}"]
    assert main(["score", "--data", str(data), "--metrics", ",".join(names), "--bootstrap", "50",
                 "--json", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    seen: list[dict] = []
    rows = score_metrics(data, names, bootstrap=50, device=torch.device("cpu"), progress=False,
                         on_row=seen.append)
    assert rows == seen and [r["metric"] for r in rows] == names
    assert json.loads(json.dumps(rows)) == json.loads(out.read_text())["results"]
    assert rows[1]["score"] == pytest.approx(want, abs=1e-6)
    assert printed[0].split() == ["set", "metric", "2AFC", "95%", "CI", "ceiling", "n"] and len(printed) == 4
