"""DPL forward speed against ``lpips.LPIPS`` (same random backbone, same lin weights, same inputs).

Prints pairs/s for each and the ratio, at 64×64 and 256×256, both under ``torch.inference_mode``.
Usage: python -m bench.inference [--net alex] [--threads 2] [--batch 32] [--seconds 1] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from learning import DPL
from learning.compat import ensure_torchvision


def rate(fn, x, y, seconds: float) -> float:
    with torch.inference_mode():
        fn(x, y)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(x, y)
            n += 1
        return n * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="alex")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sizes", default="64,256")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ensure_torchvision()
    import lpips

    dpl = DPL(args.net, weights="lpips", backbone=None, seed=0)
    lp = lpips.LPIPS(net=args.net, pretrained=True, pnet_rand=True, verbose=False)
    lp.net.load_state_dict(dpl.backbone.state_dict())
    print(f"net {args.net}, batch {args.batch}, {args.threads} threads, torch {torch.__version__}")
    for size in [int(s) for s in args.sizes.split(",")]:
        batch = args.batch if size <= 64 else max(1, args.batch // 8)
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(batch, 3, size, size, generator=g), torch.rand(batch, 3, size, size, generator=g)
        with torch.inference_mode():
            err = float((dpl(x, y) - lp(x, y, normalize=True).flatten()).abs().max())
        # interleaved short rounds, median of each: the load of a shared machine drifts
        lps, dpls = [], []
        for _ in range(args.rounds):
            lps.append(rate(lambda a, b: lp(a, b, normalize=True), x, y, args.seconds))
            dpls.append(rate(dpl, x, y, args.seconds))
        r_lp, r_dpl = statistics.median(lps), statistics.median(dpls)
        print(f"{size}x{size}: lpips.LPIPS {r_lp:8.1f} pairs/s   DPL {r_dpl:8.1f} pairs/s   "
              f"ratio {r_dpl / r_lp:.2f}x   (max |diff| {err:.1e})")


if __name__ == "__main__":
    main()
