"""The training loop: ``loss = bpp + λ·D`` with CompressAI's auxiliary loss, DDP-ready, exactly resumable.

Recipe (CompressAI's example): Adam (lr 1e-4) on the network, a second Adam (lr 1e-3) on the entropy
bottleneck quantiles driven by ``aux_loss()``, gradient clipping at norm 1, random crops. bpp in the
loss is the rate estimated from the likelihoods; every reported *evaluation* rate comes from real
``compress`` bitstreams after ``update(force=True)``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from learning.errors import LearningError
from learning.training import checkpoint, ddp, noise
from learning.training.data import CropDataset, center_crop, list_images, load_rgb
from learning.training.losses import build_distortion
from learning.training.models import ARCHS, PAD_MULTIPLE, build_model


@dataclass
class TrainConfig:
    arch: str
    data: str
    out: str
    N: int = 128
    M: int = 192
    val: str | None = None
    loss: str = "mse"
    lmbda: float = 0.01
    saliency: str | None = None
    saliency_alpha: float = 3.0
    dpl_backbone: str | None = None
    crop: int = 256
    batch: int = 8
    epochs: int | None = None
    steps: int | None = None
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    val_crop: int = 256
    val_every: int = 1
    resume: bool = False
    progress: bool = True


def log_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".log.json")


def rate(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    total = sum(torch.log(lik).sum() for lik in likelihoods.values())
    return total / (-math.log(2) * num_pixels)


def _check(cfg: TrainConfig, world: int) -> None:
    if cfg.arch not in ARCHS:
        raise LearningError(f"unknown architecture {cfg.arch!r}; known: {', '.join(ARCHS)}")
    if (cfg.epochs is None) == (cfg.steps is None):
        raise LearningError("give exactly one of --epochs and --steps")
    if (cfg.epochs or cfg.steps) <= 0:
        raise LearningError("--epochs/--steps must be positive")
    if cfg.batch <= 0 or cfg.batch % world:
        raise LearningError(f"--batch {cfg.batch} must be a positive multiple of the {world} processes")
    mult = PAD_MULTIPLE[cfg.arch]
    if cfg.crop <= 0 or cfg.crop % mult:
        raise LearningError(f"--crop must be a positive multiple of {mult} for {cfg.arch}")
    if cfg.lmbda <= 0:
        raise LearningError("--lmbda must be positive")
    if cfg.resume and not Path(cfg.out).is_file():
        raise LearningError(f"--resume: no checkpoint at {cfg.out!r}")


@torch.no_grad()
def validate(model, distortion, images: list[torch.Tensor], lmbda: float, mult: int) -> dict:
    """Estimated-rate validation (eval mode: rounding, likelihood rate) on centre crops."""
    model.eval()
    tot = {"loss": 0.0, "bpp_est": 0.0, "distortion": 0.0, "psnr": 0.0}
    for x in images:
        x = x.unsqueeze(0)
        _, _, h, w = x.shape
        x = x[..., : h - h % mult, : w - w % mult]
        out = model(x)
        bpp = float(rate(out["likelihoods"], x.shape[-2] * x.shape[-1]))
        x_hat = out["x_hat"].clamp(0, 1)
        d = float(distortion(x_hat, x))
        mse = float(((x_hat - x) ** 2).mean())
        tot["bpp_est"] += bpp
        tot["distortion"] += d
        tot["loss"] += bpp + lmbda * d
        tot["psnr"] += 10 * math.log10(1 / max(mse, 1e-12))
    model.train()
    return {f"val_{k}": v / len(images) for k, v in tot.items()}


@torch.no_grad()
def evaluate_bitstreams(model, images: list[torch.Tensor], mult: int) -> dict:
    """Real entropy coding: bpp from the compressed bytes, PSNR of the decoded image."""
    from learning.codecs.learned import compress_tensor, decompress_bytes

    model.eval()
    model.update(force=True)
    bpps, psnrs = [], []
    for x in images:
        x = x.unsqueeze(0)
        data = compress_tensor(model, x, mult)
        x_hat = decompress_bytes(model, data)
        if x_hat.shape != x.shape:
            raise RuntimeError(f"decoded shape {tuple(x_hat.shape)} != {tuple(x.shape)}")
        bpps.append(8 * len(data) / (x.shape[-1] * x.shape[-2]))
        psnrs.append(10 * math.log10(1 / max(float(((x_hat - x) ** 2).mean()), 1e-12)))
    model.train()
    return {
        "bitstream_bpp": float(np.mean(bpps)),
        "bitstream_psnr": float(np.mean(psnrs)),
        "n_images": len(images),
    }


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) and return the final record; rank 0 writes the checkpoint and the JSON log."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    rank, world = ddp.init()
    try:
        return _train(cfg, rank, world)
    finally:
        ddp.finish(world)


def _train(cfg: TrainConfig, rank: int, world: int) -> dict:
    _check(cfg, world)
    distortion = build_distortion(cfg.loss, cfg.dpl_backbone)
    if cfg.saliency and not distortion.spatial:
        raise LearningError(f"--saliency needs a spatial distortion (mse or dpl), not {cfg.loss}")
    dataset = CropDataset(cfg.data, cfg.crop, cfg.seed, cfg.saliency, cfg.saliency_alpha)
    val_images = [center_crop(load_rgb(p), cfg.val_crop) for p in list_images(cfg.val)] if cfg.val else []
    model = build_model(cfg.arch, cfg.N, cfg.M)
    mult = PAD_MULTIPLE[cfg.arch]
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    step, epoch, start_batch, history = 0, 0, 0, []
    if cfg.resume:
        blob = checkpoint.load(cfg.out)
        if (blob["arch"], blob["N"], blob["M"]) != (cfg.arch, cfg.N, cfg.M):
            raise LearningError(f"--resume: checkpoint is {blob['arch']} N={blob['N']} M={blob['M']}")
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        aux_optimizer.load_state_dict(blob["aux_optimizer"])
        # the learning rates asked for now win over the stored ones (a later stage may decay them);
        # the same --lr as before leaves the resume exact
        for opt, lr in ((optimizer, cfg.lr), (aux_optimizer, cfg.aux_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        step, epoch, start_batch = blob["step"], blob["epoch"], blob["batch_in_epoch"]
        history = blob["history"]
        checkpoint.restore_rng(blob)
    source = noise.NoiseSource(cfg.seed, rank, world)
    noise.install(model, source)
    net = ddp.wrap(model, world)
    model.train()
    sampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    local_b = cfg.batch // world
    n_batches = len(sampler) // local_b
    if n_batches == 0:
        raise LearningError(f"{len(dataset)} training images are fewer than one batch of {cfg.batch}")
    total = cfg.steps if cfg.steps is not None else cfg.epochs * n_batches
    config = asdict(cfg)
    bar = tqdm(total=total, initial=step, desc="train-codec", disable=not (cfg.progress and rank == 0))
    record: dict = {}

    def save(batch_in_epoch: int, finished: bool = False) -> None:
        if rank == 0:
            checkpoint.save(
                cfg.out,
                model=model,
                optimizer=optimizer,
                aux_optimizer=aux_optimizer,
                config=config,
                step=step,
                epoch=epoch,
                batch_in_epoch=batch_in_epoch,
                history=history,
                finished=finished,
            )
            log_path(cfg.out).write_text(json.dumps(history, indent=1))
        ddp.barrier(world)

    while step < total:
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        sums = np.zeros(4)
        count = 0
        for k in range(start_batch, n_batches):
            items = [dataset[i] for i in indices[k * local_b : (k + 1) * local_b]]
            x = torch.stack([it[0] for it in items])
            w = torch.stack([it[1] for it in items]) if cfg.saliency else None
            source.start_step(step, local_b)
            optimizer.zero_grad(set_to_none=True)
            aux_optimizer.zero_grad(set_to_none=True)
            out = net(x)
            bpp = rate(out["likelihoods"], x.shape[0] * x.shape[-2] * x.shape[-1])
            dist = distortion(out["x_hat"], x, w)
            loss = bpp + cfg.lmbda * dist
            loss.backward()
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
            optimizer.step()
            aux = model.aux_loss()
            aux.backward()
            aux_optimizer.step()
            step += 1
            sums += [loss.item(), bpp.item(), dist.item(), aux.item()]
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{bpp.item():.3f}")
            if step >= total and k + 1 < n_batches:  # stopped mid-epoch: remember where
                save(k + 1, finished=True)
                bar.close()
                return _final(record, cfg, model, val_images, mult, rank, world, step)
        start_batch = 0
        means = ddp.mean_across(list(sums / max(count, 1)), world)
        record = {
            "epoch": epoch,
            "step": step,
            "loss": means[0],
            "bpp": means[1],
            "distortion": means[2],
            "aux_loss": means[3],
            "lmbda": cfg.lmbda,
            "loss_kind": cfg.loss,
        }
        if val_images and rank == 0 and (epoch % max(cfg.val_every, 1) == 0 or step >= total):
            record.update(validate(model, distortion, val_images, cfg.lmbda, mult))
        history.append(record)
        epoch += 1
        save(0, finished=step >= total)
    bar.close()
    return _final(record, cfg, model, val_images, mult, rank, world, step)


def _final(record, cfg, model, val_images, mult, rank, world, step) -> dict:
    result = {"step": step, "last_epoch": record, "checkpoint": cfg.out}
    if rank == 0 and val_images:
        result["bitstream_eval"] = evaluate_bitstreams(model, val_images, mult)
        log = json.loads(log_path(cfg.out).read_text()) if log_path(cfg.out).exists() else []
        log.append({"final_bitstream_eval": result["bitstream_eval"], "step": step})
        log_path(cfg.out).write_text(json.dumps(log, indent=1))
    return result
