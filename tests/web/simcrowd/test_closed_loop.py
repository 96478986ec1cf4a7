"""The closed loop, reduced (``manage.py closed_loop --small``): a simulated crowd judges study 1 on the real
site, the fitted DPL scores near the hidden observer, the MSE and DPL codecs land on the same rate, and
study 2 prefers the DPL codec under the hidden observer and the MSE codec under a PSNR observer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learning.data.shared import data_dir

REPO = Path(__file__).resolve().parents[3]
ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # as long as the subprocess may take: 5-7 min alone, far more on a shared machine
def test_closed_loop_small(tmp_path):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("the loop makes a scratch PostgreSQL database: set DATABASE_URL=postgres://...")
    if not ALEX.is_file():
        pytest.skip(f"needs the real AlexNet weights at {ALEX}")
    out = tmp_path / "loop"
    r = subprocess.run([sys.executable, "manage.py", "closed_loop", "--small", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    print(r.stdout[-4000:])  # the stage figures, shown when an assertion below fails
    # stage 1: the crowd's judgments all arrived
    assert report["stage1"]["judgments"] >= report["stage1"]["trials"] * report["config"]["study1_judgments"]
    # stage 2: the fitted DPL comes close to the observer it was fitted to. Whether it also beats PSNR is the
    # full bench's verdict: on the ~80 held-out trials of the small study even the observer's own metric
    # does not always score above PSNR (the answers' noise), so the test asserts what this data can show.
    by = {s["metric_label"]: s["score"] for s in report["stage2"]["scores"]}
    assert report["stage2"]["fitted_over_observer"] >= 0.93, by
    agree = report["stage2"]["agreement_with_observer"]
    assert agree["fitted DPL"] >= 0.8, agree
    # stage 3: the rate controller brought both codecs to about the same rate
    assert abs(report["stage3"]["bpp_ratio"] - 1) <= 0.15, report["stage3"]
    # stage 3, noise-free: the observer's own metric rates the DPL codec's decodes closer to the originals
    # than the MSE codec's, and PSNR the reverse (what the crowd's answers in stage 5 are drawn around)
    dist = report["stage3"]["distances"]
    assert dist["dpl"]["observer"] < dist["mse"]["observer"], dist
    assert dist["dpl"]["PSNR"] < dist["mse"]["PSNR"], dist
    # stage 5: study 2 prefers the DPL codec under the hidden observer and the MSE codec under a PSNR
    # observer (the control), each with its 95 % interval on its side of 50 %, and so does the pair-mode
    # copy. Reduced runs with this configuration (seeds 0-3, bench/README.md "The loop closed") gave
    # 0.69-0.88 (interval lows 0.63-0.84) and 0.09-0.14 (highs 0.13-0.19).
    hidden = report["stage5"]["dpl_observer"]["dpl_over_mse"]
    psnr = report["stage5"]["psnr_observer"]["dpl_over_mse"]
    pair = report["stage5"]["dpl_observer_pair"]["dpl_over_mse"]
    assert hidden["ci"][0] > 0.5 and pair["ci"][0] > 0.5, (hidden, pair)
    assert psnr["ci"][1] < 0.5, psnr
    for key in ("dpl_observer", "psnr_observer", "dpl_observer_pair"):
        pref = report["stage5"][key]["dpl_over_mse"]
        assert pref["ci"][0] <= pref["p"] <= pref["ci"][1] and pref["participants"] >= 2, pref
        scale = {r["condition"]: r for r in report["stage5"][key]["scale"]}
        assert set(scale) == {"DPL codec", "MSE codec", "jpeg"}, scale
        assert all(r["ci_low"] <= r["jod"] <= r["ci_high"] for r in scale.values()), scale
    assert (out / "closed_loop.png").stat().st_size > 10_000 and (out / "closed_loop.svg").is_file()
