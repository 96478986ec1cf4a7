"""The closed loop, reduced (``bench/closed_loop.py --small``): a simulated crowd judges study 1 on the real
site, the fitted DPL scores near the hidden observer, the codec fine-tuned with it wins study 2 against
the MSE codec at matched rate, and loses it under a PSNR observer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learning.data.shared import data_dir

REPO = Path(__file__).resolve().parents[2]
ALEX = data_dir() / "backbones/alexnet-imagenet-features.pth"


@pytest.mark.slow
def test_closed_loop_small(tmp_path):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("the loop makes a scratch PostgreSQL database: set DATABASE_URL=postgres://...")
    if not ALEX.is_file():
        pytest.skip(f"needs the real AlexNet weights at {ALEX}")
    out = tmp_path / "loop"
    r = subprocess.run([sys.executable, "bench/closed_loop.py", "--small", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    # stage 1: the crowd's judgments all arrived
    assert report["stage1"]["judgments"] >= report["stage1"]["trials"] * report["config"]["study1_judgments"]
    # stage 2: the fitted DPL beats PSNR and comes close to the observer it was fitted to
    by = {s["metric_label"]: s["score"] for s in report["stage2"]["scores"]}
    assert by["fitted DPL"] > by["PSNR"], by
    assert report["stage2"]["fitted_over_observer"] >= 0.93, by
    # stage 3: the rate controller brought both codecs to about the same rate
    assert abs(report["stage3"]["bpp_ratio"] - 1) <= 0.15, report["stage3"]
    # stage 5: the preference follows the loss, in both directions
    dpl_obs = report["stage5"]["dpl_observer"]["dpl_over_mse"]["p"]
    psnr_obs = report["stage5"]["psnr_observer"]["dpl_over_mse"]["p"]
    assert dpl_obs > 0.5 > psnr_obs, (dpl_obs, psnr_obs)
    assert (out / "closed_loop.png").stat().st_size > 10_000 and (out / "closed_loop.svg").is_file()
    scale = {r["condition"]: r for r in report["stage5"]["dpl_observer"]["scale"]}
    assert scale["DPL codec"]["jod"] > scale["MSE codec"]["jod"]
