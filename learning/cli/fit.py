"""``python -m learning fit``: fit nonnegative DPL channel weights to 2AFC judgments (BAPPS layout).

The backbone runs once per unique image (images are keyed by content, so a reference judged in many
triplets, or a stimulus shown in several, is computed once); the per-channel distance vectors of each
(reference, distorted) pair are cached on disk, keyed by backbone hash and image hashes, so refits skip
the backbone.

``--tune`` then fine-tunes the backbone end to end with the weights and head (the LPIPS "tune" variant,
``learning.fitting.tune``), keeping the epoch with the best val 2AFC; the weight file then carries the
tuned backbone.

``--device`` (auto | cpu | cuda | cuda:N | mps) runs the backbone, the weight fit and ``--tune`` there;
the weight file holds CPU tensors whatever the device.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from learning.device import add_device_argument


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit DPL weights to 2AFC judgments", description=__doc__)
    p.add_argument("--data", nargs="+", required=True, help="training set folders (BAPPS 2AFC layout)")
    p.add_argument("--val", nargs="+", help="validation set folders (default: hold out 10%% of --data)")
    p.add_argument("--net", default="alex", choices=["alex", "vgg", "squeeze"])
    p.add_argument("--backbone", default="imagenet",
                   help="imagenet | PATH (torchvision state dict) | random:SEED")
    p.add_argument("--out", required=True, help="weight file to write")
    p.add_argument("--cache", help="feature cache folder (default ~/.cache/dpl-lab; 'none' disables)")
    p.add_argument("--patch", default="full", help="'full' or a square crop size such as 64 (random, seeded)")
    p.add_argument("--rounds", "--epochs", dest="rounds", type=int, default=60,
                   help="max L-BFGS rounds (10 iterations each)")
    p.add_argument("--patience", type=int, default=5, help="rounds without val improvement before stopping")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--tune", action="store_true",
                   help="after the linear fit, fine-tune the backbone with weights and head (LPIPS 'tune')")
    p.add_argument("--tune-epochs", type=int, help="max tuning epochs (default 3; needs --tune)")
    p.add_argument("--tune-lr", type=float, help="Adam learning rate for tuning (default 1e-5; needs --tune)")
    add_device_argument(p)
    p.set_defaults(func=run)


def check_tune_args(args: argparse.Namespace) -> tuple[int, float]:
    """(epochs, lr) for --tune, defaults filled in; LearningError for bad values or use without --tune."""
    import math

    from learning.errors import LearningError

    if not args.tune:
        if args.tune_epochs is not None or args.tune_lr is not None:
            raise LearningError("--tune-epochs and --tune-lr need --tune")
        return 0, 0.0
    epochs = 3 if args.tune_epochs is None else args.tune_epochs
    lr = 1e-5 if args.tune_lr is None else args.tune_lr
    if epochs < 1:
        raise LearningError(f"--tune-epochs {epochs}: must be a positive integer")
    if not (math.isfinite(lr) and lr > 0):
        raise LearningError(f"--tune-lr {lr}: must be a positive number")
    return epochs, lr


def parse_patch(spec: str) -> int | None:
    from learning.errors import LearningError

    if spec == "full":
        return None
    if not spec.isdigit() or int(spec) < 16:
        raise LearningError(f"--patch {spec!r}: use 'full' or a size of at least 16")
    return int(spec)


def _manifests(dirs: list[str]) -> dict[str, str]:
    """sha256 of manifest.json files found in the data folders or up to two levels above them."""
    from learning.dpl.weightfile import file_sha256

    out = {}
    for d in dirs:
        p = Path(d).resolve()
        for cand in (p, p.parent, p.parent.parent):
            m = cand / "manifest.json"
            if m.is_file():
                out[str(m)] = file_sha256(m)
                break
    return out


def keep_freed_memory() -> None:
    """Ask glibc to reuse freed memory instead of returning it to the OS at once: the backbone allocates
    and frees tens of MB per batch, and fresh pages cost page faults, which on a busy VM took up to
    two thirds of a batch's time. Process-wide, so done by this command only, never on library import."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap top
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to 32 MiB from the (reused) heap
    except (OSError, AttributeError):
        pass


def run(args: argparse.Namespace) -> int:
    import torch

    from learning.data.bapps import load_2afc
    from learning.device import resolve_device
    from learning.dpl.backbones import parse_backbone_spec
    from learning.dpl.model import DPL
    from learning.dpl.weightfile import save_weights
    from learning.errors import LearningError
    from learning.fitting import cache as fcache
    from learning.fitting.fit import fit_weights, holdout, split_weights

    t_start = time.perf_counter()
    device = resolve_device(args.device)
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rounds < 1 or args.patience < 1 or args.batch_size < 1:
        raise LearningError("--rounds, --patience and --batch-size must be positive")
    tune_epochs, tune_lr = check_tune_args(args)
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise LearningError(f"--out {out} is a folder")
    backbone, seed = parse_backbone_spec(args.backbone, "--backbone")
    patch = parse_patch(args.patch)
    cache_dir = None if args.cache == "none" else Path(args.cache) if args.cache else fcache.DEFAULT_CACHE
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    train_sets = load_2afc(args.data)  # validates the layout before any heavy work
    val_sets = load_2afc(args.val) if args.val else None
    train = [t for s in train_sets for t in s.triplets]
    model = DPL(args.net, weights=None, backbone=backbone, seed=seed).to(device)
    log(f"backbone {model.backbone.source} ({args.net}) on {device}, {len(train)} training triplets")

    def vectors(triplets, desc):
        m0, m1, n_new = fcache.channel_vectors(model, triplets, cache_dir, patch, args.seed,
                                               args.batch_size, desc=desc, progress=not args.quiet)
        log(f"{desc}: {len(triplets) - n_new} cached, {n_new} computed")
        return m0, m1, torch.tensor([t.judge for t in triplets], dtype=torch.float32)

    m0, m1, h = vectors(train, "train features")
    if val_sets is not None:
        val = [t for s in val_sets for t in s.triplets]
        v0, v1, vh = vectors(val, "val features")
    else:
        if len(train) < 10:
            raise LearningError("need at least 10 triplets to hold out a validation part; pass --val")
        tr_idx, va_idx = holdout(len(train), 0.1, args.seed)
        log(f"no --val: holding out {len(va_idx)} random training triplets")
        val, train = [train[i] for i in va_idx], [train[i] for i in tr_idx]
        tr_idx, va_idx = torch.from_numpy(tr_idx), torch.from_numpy(va_idx)
        v0, v1, vh = m0[va_idx], m1[va_idx], h[va_idx]
        m0, m1, h = m0[tr_idx], m1[tr_idx], h[tr_idx]
    t_feat = time.perf_counter()
    res = fit_weights(m0, m1, h, v0, v1, vh, max_rounds=args.rounds, patience=args.patience,
                      log=None if args.quiet else log, device=device)
    t_fit = time.perf_counter()
    from learning import twoafc

    uniform = torch.ones(m0.shape[1])
    val_uniform = twoafc.score((v0 @ uniform).numpy(), (v1 @ uniform).numpy(), vh.numpy())
    model.set_weights(split_weights(res.weights, model.channels))
    model.weights_source = "fit"
    meta = {
        "train_sets": [s.name for s in train_sets], "val_sets": [s.name for s in val_sets or []],
        "n_train": int(len(h)), "n_val": int(len(vh)), "train_2afc": res.train_2afc,
        "val_2afc": res.val_2afc, "val_2afc_uniform": val_uniform, "val_loss": res.val_loss,
        "rounds": res.rounds, "patch": args.patch, "seed": args.seed,
        "dataset_manifests_sha256": _manifests(args.data + (args.val or [])),
    }
    print(f"train 2AFC {res.train_2afc:.4f}  val 2AFC {res.val_2afc:.4f} "
          f"(uniform weights {val_uniform:.4f})  best round {res.rounds}")
    head_c = res.head_c
    if args.tune:
        from learning.fitting.tune import tune

        tr = tune(model, res.head_c, train, val, epochs=tune_epochs, lr=tune_lr, patch=patch, seed=args.seed,
                  batch_size=args.batch_size, progress=not args.quiet, log=log)
        head_c = tr.head_c
        meta.update({"train_2afc": tr.train_2afc, "val_2afc": tr.val_2afc,
                     "train_2afc_linear": res.train_2afc, "val_2afc_linear": res.val_2afc,
                     "tune_train_2afc_before": tr.train_2afc_before,
                     "tune_val_2afc_before": tr.val_2afc_before,
                     "tune_epochs": tune_epochs, "tune_lr": tune_lr,
                     "tune_epochs_run": tr.epochs_run, "tune_best_epoch": tr.best_epoch,
                     "tune_history": [list(r) for r in tr.history]})
        per_epoch = sum(tr.epoch_seconds) / max(1, len(tr.epoch_seconds))
        print(f"tune: train 2AFC {tr.train_2afc_before:.4f} -> {tr.train_2afc:.4f}  val 2AFC "
              f"{tr.val_2afc_before:.4f} -> {tr.val_2afc:.4f}  best epoch {tr.best_epoch} of "
              f"{tr.epochs_run} ({per_epoch:.1f}s/epoch)")
    t_tune = time.perf_counter()
    save_weights(model, out, metadata=meta,
                 head={"form": "logit=(d0-d1)+c*(d0-d1)/(d0+d1+1e-8)", "c": head_c})
    print(f"features {t_feat - t_start:.1f}s, fit {t_fit - t_feat:.1f}s"
          + (f", tune {t_tune - t_fit:.1f}s" if args.tune else "") + f"; wrote {out}")
    return 0
