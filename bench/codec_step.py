"""Benchmark: one codec training step with DPL distortion against the same step with MSE.

Same model, batch, crops and optimizer recipe as ``train-codec``; the only change is the distortion.
Run: .venv/bin/python bench/codec_step.py [--arch bmshj2018-hyperprior --N 128 --M 192 --batch 4 --crop 128]
The DPL uses a weight file written by ``learning.dpl.weightfile.save_weights`` on a seeded random
AlexNet backbone (no pretrained download here; the cost does not depend on the weight values).
Target: DPL step ≤ 2× the MSE step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from learning.training.loop import rate  # noqa: E402
from learning.training.losses import build_distortion  # noqa: E402
from learning.training.models import build_model  # noqa: E402


def make_dpl_file(net: str, directory: str) -> str:
    from learning.dpl import DPL
    from learning.dpl.weightfile import save_weights

    path = str(Path(directory) / "dpl.pt")
    save_weights(DPL(net=net, weights=None, backbone=None, seed=0), path, {"note": "bench, random backbone"})
    return path


def make_step(arch, N, M, x, distortion):
    """One train-codec step (forward, rate + λ·D, backward, clip, Adam, aux loss + its Adam)."""
    torch.manual_seed(0)
    model = build_model(arch, N, M)
    model.train()
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(main, 1e-4), torch.optim.Adam(aux, 1e-3)

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad()
        aux_opt.zero_grad()
        out = model(x)
        bpp = rate(out["likelihoods"], x.shape[0] * x.shape[-2] * x.shape[-1])
        loss = bpp + 0.01 * distortion(out["x_hat"], x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        model.aux_loss().backward()
        aux_opt.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="bmshj2018-hyperprior")
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--M", type=int, default=192)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--net", default="alex")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, args.crop, args.crop, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as d:
        dpl = build_distortion(f"dpl:{make_dpl_file(args.net, d)}")
        mse = build_distortion("mse")
        step_mse = make_step(args.arch, args.N, args.M, x, mse)
        step_dpl = make_step(args.arch, args.N, args.M, x, dpl)
        t_mse, t_dpl = [], []
        for i in range(args.warmup + args.steps):  # interleaved, so load changes hit both alike
            a, b = step_mse(), step_dpl()
            if i >= args.warmup:
                t_mse.append(a)
                t_dpl.append(b)
    m, d_ = statistics.median(t_mse), statistics.median(t_dpl)
    print(
        f"{args.arch} N={args.N} M={args.M}, batch {args.batch}x{args.crop}², {args.threads} threads, "
        f"DPL net {args.net}"
    )
    print(f"MSE step  median {m * 1000:8.1f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in t_mse)})")
    print(f"DPL step  median {d_ * 1000:8.1f} ms  (runs: {', '.join(f'{t * 1000:.0f}' for t in t_dpl)})")
    print(f"ratio DPL/MSE = {d_ / m:.2f}x  (target <= 2x)")


if __name__ == "__main__":
    main()
