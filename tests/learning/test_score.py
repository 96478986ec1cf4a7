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
from learning.dpl.weightfile import save_weights
from learning.fitting.synthetic import judge, make_triplets, write_bapps
from tests.learning.kodak import KODAK_PNGS

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
