"""The training loop: ``loss = bpp + λ·D`` with CompressAI's auxiliary loss, on any device, DDP-ready,
exactly resumable at any step.

Recipe (CompressAI's example): Adam on the network, a second Adam (lr 1e-3) on the entropy bottleneck
quantiles driven by ``aux_loss()``, gradient clipping at norm 1, random crops (here also random flips).
Runs are counted in steps: a train record every ``log_every`` steps, a validation R–D point (estimated
bpp, PSNR, MS-SSIM, the training distortion and any ``val_metrics``) every ``val_every`` steps, the best
validation loss kept as ``OUT.best.pt`` beside the last checkpoint ``OUT``. bpp in the loss is the rate
estimated from the likelihoods; the final *evaluation* rate comes from real ``compress`` bitstreams
(on the CPU, as CompressAI's range coder requires).

Device: ``TrainConfig.device`` is a ``torch.device`` (None: the CPU), resolved by the caller
(``train-codec`` resolves ``--device``); the model, the distortion and the ``val_metrics`` all run on it.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from learning import checkpoint
from learning.architectures import PAD_MULTIPLE, build_model
from learning.codecs.learned import compress_tensor, decompress_bytes
from learning.device import autocast, check_amp, device_or_cpu
from learning.errors import LearningError
from learning.metrics import Metric, get_metric
from learning.training import ddp, initial_weights, noise, schedule, steered_lambda
from learning.training.data import CropDataset, StepBatches, center_crop, list_images, load_rgb
from learning.training.losses import build_distortion


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str | None = None
    N: int | None = None
    M: int | None = None
    init: str | None = None
    val: str | None = None
    loss: str = "mse"
    lmbda: float = 0.01
    target_bpp: float | None = None
    saliency: str | None = None
    saliency_alpha: float = 3.0
    dpl_backbone: str | None = None
    crop: int = 256
    batch: int = 8
    epochs: int | None = None
    steps: int | None = None
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_schedule: str = "none"
    clip: float = 1.0
    seed: int = 0
    val_crop: int = 256
    val_every: int = 1000
    val_metrics: str = ""
    log_every: int = 50
    save_every: int = 0
    device: torch.device | None = None  # None: the CPU
    amp: str = "off"
    # channels-last tensors: oneDNN's convolutions (CPU) and cuDNN's run without layout reorders, the same
    # arithmetic up to the order of float additions (tests/learning/test_train_codec.py checks the losses)
    memory_format: str = "channels_last"
    workers: int = 0
    resume: bool = False
    progress: bool = True


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def log_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".log.json")


def best_path(out: str | Path) -> Path:
    """The best-validation checkpoint kept beside ``out``: ``m.pt`` → ``m.best.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix or '.pt'}")


def rate(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    total = sum(torch.log(lik.float()).sum() for lik in likelihoods.values())
    return total / (-math.log(2) * num_pixels)


def _check(cfg: TrainConfig, arch: str, world: int) -> None:
    if (cfg.epochs is None) == (cfg.steps is None):
        raise LearningError("give exactly one of --epochs and --steps")
    if (cfg.epochs or cfg.steps) <= 0:
        raise LearningError("--epochs/--steps must be positive")
    if cfg.batch <= 0 or cfg.batch % world:
        raise LearningError(f"--batch {cfg.batch} must be a positive multiple of the {world} processes")
    mult = PAD_MULTIPLE[arch]
    if cfg.crop <= 0 or cfg.crop % mult:
        raise LearningError(f"--crop must be a positive multiple of {mult} for {arch}")
    if not (math.isfinite(cfg.lmbda) and cfg.lmbda > 0):
        raise LearningError("--lmbda must be positive")
    steered_lambda.check(cfg.target_bpp)
    if cfg.memory_format not in MEMORY_FORMATS:
        raise LearningError(f"--memory-format {cfg.memory_format!r}: use {' or '.join(MEMORY_FORMATS)}")
    if min(cfg.val_every, cfg.log_every) <= 0 or cfg.save_every < 0 or cfg.workers < 0:
        raise LearningError("--val-every and --log-every must be positive, --save-every and --workers >= 0")
    if cfg.resume and not Path(cfg.out).is_file():
        raise LearningError(f"--resume: no checkpoint at {cfg.out!r}")
    schedule.check(cfg.lr_schedule, bool(cfg.val))


def val_metrics(names: str, device: torch.device) -> list[Metric]:
    """``--val-metrics`` (a comma list of registry names) as metrics that run on ``device``, the training
    device."""
    return [get_metric(n.strip(), device) for n in names.split(",") if n.strip()]


@torch.no_grad()
def validate(model, distortion, images: list[torch.Tensor], lmbda: float, mult: int,
             device: torch.device, metrics: list[Metric] = ()) -> dict:
    """One validation R–D point (eval mode: rounding, likelihood rate) on ``images`` (CPU tensors)."""
    model.eval()
    tot: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        tot[key] = tot.get(key, 0.0) + value

    for x in images:
        x = x.unsqueeze(0)
        _, _, h, w = x.shape
        x = x[..., : h - h % mult, : w - w % mult].to(device)
        out = model(x)
        bpp = float(rate(out["likelihoods"], x.shape[-2] * x.shape[-1]))
        x_hat = out["x_hat"].float().clamp(0, 1)
        d = float(distortion(x_hat, x))
        mse = float(((x_hat - x) ** 2).mean())
        add("bpp_est", bpp)
        add("distortion", d)
        add("loss", bpp + lmbda * d)
        add("psnr", 10 * math.log10(1 / max(mse, 1e-12)))
        if min(x.shape[-2:]) > 160:
            add("ms_ssim", float(ms_ssim(x_hat, x, data_range=1.0)))
        for m in metrics:  # CPU inputs for the classical ones (some use numpy); a deep one runs on its device
            add(m.name.replace("-", "_"), float(m(x.cpu(), x_hat.cpu()).mean()))
    model.train()
    return {f"val_{k}": v / len(images) for k, v in tot.items()}


@torch.no_grad()
def evaluate_bitstreams(model, images: list[torch.Tensor], mult: int) -> dict:
    """Real entropy coding on a CPU copy of ``model``: bpp from the bytes, PSNR of the decoded image."""
    model = copy.deepcopy(model).cpu().float().eval()
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
    return {
        "bitstream_bpp": float(np.mean(bpps)),
        "bitstream_psnr": float(np.mean(psnrs)),
        "n_images": len(images),
    }


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) and return the final record; rank 0 writes the checkpoints and the JSON log."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = device_or_cpu(cfg.device)
    rank, world = ddp.init(device)
    try:
        return _Run(cfg, rank, world, device).run()
    finally:
        ddp.finish(world)


class _Run:
    """One training run's state; ``run()`` drives it from its first (or resumed) step to the last."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int, device: torch.device):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.amp = check_amp(cfg.amp, device)
        blob = checkpoint.load(cfg.out) if cfg.resume and Path(cfg.out).is_file() else None
        if blob is not None:
            start = initial_weights.load_init(cfg.out, cfg.arch, cfg.N, cfg.M)
        else:
            start = initial_weights.load_init(cfg.init, cfg.arch, cfg.N, cfg.M)
        self.arch, self.N, self.M = start.arch, start.N, start.M
        _check(cfg, self.arch, world)
        self.mult = PAD_MULTIPLE[self.arch]
        self.distortion = build_distortion(cfg.loss, cfg.dpl_backbone).to(device)
        self.metrics = val_metrics(cfg.val_metrics, device)
        self.dataset = CropDataset(cfg.data, cfg.crop, cfg.seed, cfg.saliency, cfg.saliency_alpha)
        self.dataset.check_sizes()
        if self.distortion.spatial is False and cfg.saliency:
            raise LearningError(f"--saliency needs a spatial distortion (mse or dpl), not {cfg.loss}")
        self.val_images = ([center_crop(load_rgb(p), cfg.val_crop) for p in list_images(cfg.val)]
                           if cfg.val else [])
        n_images = len(self.dataset)
        if n_images < cfg.batch:
            raise LearningError(f"{n_images} training images are fewer than one batch of {cfg.batch}")
        self.total = cfg.steps if cfg.steps is not None else math.ceil(cfg.epochs * n_images / cfg.batch)
        model = build_model(self.arch, self.N, self.M)
        initial_weights.apply(model, start)
        self.layout = MEMORY_FORMATS[cfg.memory_format]
        self.model = model.to(device, memory_format=self.layout)
        self.main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
        aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
        self.optimizer = torch.optim.Adam(self.main_params, lr=cfg.lr)
        self.aux_optimizer = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
        self.lr = schedule.build(cfg.lr_schedule, self.optimizer, cfg.lr, self.total)
        self.lmbda = steered_lambda.Lambda(cfg.lmbda, cfg.target_bpp)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        self.step, self.history, self.best = 0, [], math.inf
        self.config = {**asdict(cfg), "device": str(device), "arch": self.arch, "N": self.N, "M": self.M,
                       "init_source": start.source if blob is None else None, "device_used": str(device),
                       "amp_used": self.amp}
        self.notes: list[str] = []
        if blob is not None:
            self._restore(blob)
        self.source = noise.NoiseSource(cfg.seed, rank, world)
        noise.install(model, self.source)
        if self.amp != "off":
            noise.keep_entropy_models_fp32(model)
        self.net = ddp.wrap(model, world, device)

    def _restore(self, blob: dict) -> None:
        cfg = self.cfg
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.aux_optimizer.load_state_dict(blob["aux_optimizer"])
        # the learning rates asked for now win over the stored ones (a later stage may decay them);
        # the same --lr as before leaves the resume exact
        for opt, lr in ((self.optimizer, cfg.lr), (self.aux_optimizer, cfg.aux_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        self.lr.load_state_dict(blob.get("schedule") or {})
        self.lmbda.load_state_dict(blob.get("lmbda") or {})
        self.step, self.history = blob["step"], blob["history"]
        self.best = float(blob.get("best_val_loss", math.inf))
        old = (blob.get("config") or {}).get("device_used", "cpu")
        self.config["init_source"] = (blob.get("config") or {}).get("init_source")
        if torch.device(old).type != self.device.type:
            self.notes.append(f"resumed on {self.device} from a checkpoint written on {old}: the run "
                              "continues from the same weights, optimizer state and data order, but not "
                              "bit for bit (floating-point kernels differ between devices)")
        checkpoint.restore_rng(blob)

    def save(self, path: str | Path, finished: bool = False) -> None:
        if self.rank == 0:
            checkpoint.save(
                path, model=self.model, optimizer=self.optimizer, aux_optimizer=self.aux_optimizer,
                config=self.config, step=self.step, epoch=self.step * self.cfg.batch // len(self.dataset),
                batch_in_epoch=0, history=self.history, finished=finished,
                extra={"schedule": self.lr.state_dict(), "best_val_loss": self.best,
                       "lmbda": self.lmbda.state_dict()},
            )
            log_path(self.cfg.out).write_text(json.dumps(self.history, indent=1))
        ddp.barrier(self.world)

    def _validate(self, bar) -> None:
        val = None
        if self.rank == 0 and self.val_images:
            val = validate(self.model, self.distortion, self.val_images, self.lmbda.value, self.mult,
                           self.device, self.metrics)
            self.history.append({"step": self.step, **val})
            bar.write(f"step {self.step}: " + ", ".join(f"{k[4:]} {v:.4g}" for k, v in val.items()),
                      file=sys.stderr)
        loss = ddp.broadcast_float(val["val_loss"] if val else math.nan, self.world)
        if not math.isnan(loss):
            self.lr.observe(loss)
            if loss < self.best:
                self.best = loss
                self.save(best_path(self.cfg.out))

    def _one_step(self, x: torch.Tensor, w: torch.Tensor | None) -> list[float]:
        cfg = self.cfg
        x = x.contiguous(memory_format=self.layout)
        self.source.start_step(self.step, x.shape[0])
        self.lr.at_step(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            out = self.net(x)
        bpp = rate(out["likelihoods"], x.shape[0] * x.shape[-2] * x.shape[-1])
        dist = self.distortion(out["x_hat"].float(), x, w)
        loss = bpp + self.lmbda.value * dist
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.main_params, cfg.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        aux = self.model.aux_loss()
        aux.backward()
        self.aux_optimizer.step()
        self.step += 1
        if self.lmbda.steered:
            self.lmbda.update(ddp.mean_across([bpp.item()], self.world)[0])
        return [loss.item(), bpp.item(), dist.item(), aux.item()]

    def run(self) -> dict:
        cfg = self.cfg
        sampler = StepBatches(len(self.dataset), cfg.batch, cfg.seed, self.step, self.total,
                              self.rank, self.world)
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=False,
        )
        bar = tqdm(total=self.total, initial=self.step, desc="train-codec",
                   disable=not (cfg.progress and self.rank == 0))
        for note in self.notes:
            bar.write(f"note: {note}", file=sys.stderr)
        save_every = cfg.save_every or cfg.val_every
        sums, count, t0 = np.zeros(4), 0, time.perf_counter()
        self.model.train()
        for x, w in loader:
            x = x.to(self.device, non_blocking=True)
            w = w.to(self.device, non_blocking=True) if cfg.saliency else None
            sums += self._one_step(x, w)
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sums[0] / count:.3f}", bpp=f"{sums[1] / count:.3f}")
            last = self.step >= self.total
            if self.step % cfg.log_every == 0 or last:
                means = ddp.mean_across(list(sums / count), self.world)
                elapsed = time.perf_counter() - t0
                self.history.append({
                    "step": self.step, "loss": means[0], "bpp": means[1], "distortion": means[2],
                    "aux_loss": means[3], "lr": self.optimizer.param_groups[0]["lr"],
                    "steps_per_s": count / elapsed, "lmbda": self.lmbda.value, "loss_kind": cfg.loss,
                    "target_bpp": cfg.target_bpp,
                })
                sums, count, t0 = np.zeros(4), 0, time.perf_counter()
            if self.step % cfg.val_every == 0 or last:
                self._validate(bar)
            if self.step % save_every == 0 or last:
                self.save(cfg.out, finished=last)
        bar.close()
        return self._final()

    def _final(self) -> dict:
        trains = [r for r in self.history if "loss" in r]
        vals = [r for r in self.history if "val_loss" in r]
        result = {"step": self.step, "checkpoint": self.cfg.out, "device": str(self.device),
                  "last_train": trains[-1] if trains else None, "last_val": vals[-1] if vals else None,
                  "best_val_loss": self.best if vals else None, "lmbda": self.lmbda.value,
                  "notes": self.notes}
        if self.rank == 0 and self.val_images:
            result["bitstream_eval"] = evaluate_bitstreams(self.model, self.val_images, self.mult)
            log = json.loads(log_path(self.cfg.out).read_text()) if log_path(self.cfg.out).exists() else []
            log.append({"final_bitstream_eval": result["bitstream_eval"], "step": self.step})
            log_path(self.cfg.out).write_text(json.dumps(log, indent=1))
        return result
