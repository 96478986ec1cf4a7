"""The closed loop, reduced (``manage.py closed_loop --small``) with its default hidden observer outside the
fitted family (LPIPS-vgg + CIEDE2000 + MS-SSIM): a simulated crowd judges study 1 on the real site, the
fitted DPL scores near the observer, μ of DPL + μ·MSE comes from study 1 alone, the fine-tunes of the shared
base codec land on the same rate, and study 2 says which codec the observer prefers, with the PSNR control
reversed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learning.data.shared import backbone_file, data_dir

REPO = Path(__file__).resolve().parents[3]
ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"
BASE = data_dir() / "codecs/hyperprior-n96-m128-mse-base.pt"


@pytest.mark.slow
@pytest.mark.timeout(2400)  # as long as the subprocess may take: ~12 min alone, far more on a shared machine
def test_closed_loop_small(tmp_path):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("the loop makes a scratch PostgreSQL database: set DATABASE_URL=postgres://...")
    if not ALEX.is_file():
        pytest.skip(f"needs the real AlexNet weights at {ALEX}")
    if not BASE.is_file():
        pytest.skip(f"needs the shared base codec at {BASE} (../shared/data/codecs)")
    if backbone_file("vgg16") is None:
        pytest.skip("needs the real VGG16 weights for the out-of-family observer: run `make backbones`")
    out = tmp_path / "loop"
    r = subprocess.run([sys.executable, "manage.py", "closed_loop", "--small", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=2400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    print(r.stdout)  # every stage's figures (μ, rates, distances), shown when an assertion below fails
    # stage 1: the crowd's judgments all arrived
    assert report["stage1"]["judgments"] >= report["stage1"]["trials"] * report["config"]["study1_judgments"]
    # stage 2: the fitted DPL comes close to the observer's own 2AFC score (the ceiling on these judgments)
    # and orders most held-out triplets as the observer does, though it is not of the observer's family
    by = {s["metric_label"]: s["score"] for s in report["stage2"]["scores"]}
    assert report["stage2"]["fitted_over_observer"] >= 0.93, by
    agree = report["stage2"]["agreement_with_observer"]
    assert agree["fitted DPL"] >= 0.8, agree
    mix = report["stage2"]["mse_weight"]
    assert mix["mu"] in [c["mu"] for c in mix["candidates"]] and 0.0 in [c["mu"] for c in mix["candidates"]]
    # stage 3: the rate controller brought the fine-tunes to about the same rate; the loop codec is closer
    # to the originals under the fitted DPL it trained on than the MSE codec, and further under PSNR
    s3 = report["stage3"]
    assert abs(s3["bpp_ratio"] - 1) <= 0.15, s3
    dist = s3["distances"]
    assert dist["loop"]["fitted DPL"] < dist["mse"]["fitted DPL"], dist
    assert dist["loop"]["PSNR"] < dist["mse"]["PSNR"], dist
    # stage 5: the observer outside the fitted family prefers the loop codec (DPL + μ·MSE) to the MSE codec:
    # over both copies of study 2 it judged (triplet and pair mode, different participants) with the 95 %
    # interval above 50 %, and in each copy on its own. Seed 0 in the full suite gave 0.61 [0.56, 0.65]
    # pooled, 0.61 and 0.60 per copy, μ at r = 1 (bench/README.md "Session 13"; with μ's earlier one-SE
    # rule a run took r = 0.1 and the codecs came out level). The control: a PSNR observer prefers the MSE
    # codec to the pure-DPL one (the loop codec itself when μ = 0); with the loop's μ the two are about level.
    s5 = report["stage5"]
    both = s5["hidden_observer_both"]["loop_over_mse"]
    assert both["ci"][0] > 0.5, both
    for key in ("hidden_observer", "hidden_observer_pair"):
        assert s5[key]["loop_over_mse"]["p"] > 0.5, s5[key]["loop_over_mse"]
    control = s5["psnr_observer"].get("pure_dpl_over_mse", s5["psnr_observer"]["loop_over_mse"])
    assert control["ci"][1] < 0.5, control
    for key in ("hidden_observer", "psnr_observer", "hidden_observer_pair"):
        for pair in ("loop_over_mse", "loop_over_jpeg", "loop_over_heic"):
            pref = report["stage5"][key][pair]
            assert pref["ci"][0] <= pref["p"] <= pref["ci"][1] and pref["participants"] >= 2, pref
        scale = {r["condition"]: r for r in report["stage5"][key]["scale"]}
        assert {"loop codec", "MSE codec", "JPEG", "HEIC"} <= set(scale), scale
        assert all(r["ci_low"] <= r["jod"] <= r["ci_high"] for r in scale.values()), scale
    assert (out / "closed_loop.png").stat().st_size > 10_000 and (out / "closed_loop.svg").is_file()


def test_missing_base_checkpoint_is_refused_before_any_work(tmp_path):
    out = tmp_path / "loop"
    r = subprocess.run([sys.executable, "manage.py", "closed_loop", "--small", "--out", str(out), "--base",
                        str(tmp_path / "nope.pt")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"--base {tmp_path / 'nope.pt'}: no such checkpoint (or use shared | train)" in r.stderr
    assert not out.exists()
