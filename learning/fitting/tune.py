"""Fine-tune a fitted DPL end to end (the LPIPS "tune" variant): backbone, channel weights and head together.

Starts from the linear fit (``learning.fitting.fit``: weights W >= 0 and head c >= 0) and minimises the same
binary cross-entropy against the judge fractions,

    logit P(p1 preferred) = (d0 − d1) + c · (d0 − d1) / (d0 + d1 + ε),   d = DPL distance,

with Adam over all backbone parameters, W and c, W and c clamped at 0 after each step (as LPIPS clamps its
lin weights). Images are decoded through the dataset reader each epoch (triplets shuffled by ``seed``);
with ``patch`` each triplet is cropped at the seeded place the fit's feature cache uses, so the untuned
model's numbers here are the linear fit's. Val 2AFC is measured before tuning (epoch 0) and after each
epoch; the best epoch is kept (ties go to the earlier one, so the result never scores below the untuned
model on val), and tuning stops after ``patience`` epochs without improvement.

Everything runs where ``model`` is (``model.to(device)`` first): batches and the head constant go there,
scores come back to the CPU; ``save_weights`` writes CPU tensors whatever the device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from learning import twoafc
from learning.data.bapps import Triplet, read_triplet, to_tensor, triplet_crop
from learning.dpl.model import DPL
from learning.errors import LearningError
from learning.fitting.fit import head_logit

Batch = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]  # (ref, p0, p1, h) per size


@dataclass
class TuneResult:
    head_c: float
    train_2afc_before: float
    val_2afc_before: float
    train_2afc: float  # of the kept (best) epoch
    val_2afc: float
    best_epoch: int  # 0: no epoch beat the untuned model, which is then kept unchanged
    epochs_run: int
    base_sha256: str  # the backbone before tuning
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (epoch, train loss, val 2AFC)
    epoch_seconds: list[float] = field(default_factory=list)  # training pass + val evaluation


class TripletImages:
    """Decoded batches of 2AFC triplets: seeded crops (``patch``) as in the feature cache, grouped by size."""

    def __init__(self, triplets: list[Triplet], patch: int | None = None, seed: int = 0) -> None:
        self.triplets = triplets
        self.patch = patch
        self.crops = [triplet_crop(t, patch, seed) if patch else None for t in triplets]
        self.h = torch.tensor([t.judge for t in triplets], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.triplets)

    def load(self, idx: list[int]) -> Batch:
        groups: dict[tuple, list] = {}
        for i in idx:
            imgs = read_triplet(self.triplets[i], self.patch, self.crops[i])
            groups.setdefault(imgs[0].shape, []).append((i, imgs))
        return [(*(to_tensor([im[j] for _, im in items]) for j in range(3)), self.h[[i for i, _ in items]])
                for items in groups.values()]

    def batches(self, order: list[int], batch_size: int) -> Iterator[tuple[int, Batch]]:
        """(triplet count, batch) in ``order``; the next batch is decoded in a thread meanwhile."""
        chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        with ThreadPoolExecutor(1) as pool:
            nxt = pool.submit(self.load, chunks[0]) if chunks else None
            for k, chunk in enumerate(chunks):
                cur = nxt.result()
                if k + 1 < len(chunks):
                    nxt = pool.submit(self.load, chunks[k + 1])
                yield len(chunk), cur


def triplet_distances(model: DPL, ref: torch.Tensor, p0: torch.Tensor,
                      p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d(ref, p0), d(ref, p1) with one backbone pass (differentiable when grad is enabled); the images are
    moved to ``model.device``, and so are the distances."""
    dev = model.device
    m0, m1 = model.triplet_channel_distances(ref.to(dev), p0.to(dev), p1.to(dev))
    w = torch.cat(list(model.weights))
    return m0 @ w, m1 @ w


@torch.no_grad()
def evaluate(model: DPL, data: TripletImages, batch_size: int = 64) -> float:
    """2AFC score of ``model`` on ``data``."""
    d0s, d1s, hs = [], [], []
    for _, groups in data.batches(list(range(len(data))), batch_size):
        for ref, p0, p1, h in groups:
            d0, d1 = triplet_distances(model, ref, p0, p1)
            d0s.append(d0)
            d1s.append(d1)
            hs.append(h)
    return twoafc.score(torch.cat(d0s).cpu().numpy(), torch.cat(d1s).cpu().numpy(), torch.cat(hs).numpy())


def tune(model: DPL, head_c: float, train: list[Triplet], val: list[Triplet], epochs: int = 3,
         lr: float = 1e-5, patch: int | None = None, seed: int = 0, batch_size: int = 64, patience: int = 2,
         progress: bool = True, log: Callable[[str], None] | None = None) -> TuneResult:
    """Fine-tune ``model`` (its current weights and ``head_c`` as the start) on ``train`` on ``model.device``,
    early-stopping on ``val`` 2AFC. ``model`` is left holding the best epoch's backbone and weights, its
    backbone marked tuned (``save_weights`` then writes it); the best head is ``TuneResult.head_c``."""
    if epochs < 1:
        raise LearningError("tune epochs must be a positive integer")
    if not (math.isfinite(lr) and lr > 0):
        raise LearningError("tune learning rate must be a positive number")
    if batch_size < 1 or patience < 1:
        raise LearningError("tune batch size and patience must be positive")
    if not train or not val:
        raise LearningError("tuning needs training and validation triplets")
    if not (math.isfinite(head_c) and head_c >= 0):
        raise LearningError("the head constant c must be finite and nonnegative")
    log = log or (lambda msg: None)
    train_data, val_data = TripletImages(train, patch, seed), TripletImages(val, patch, seed)
    backbone = model.backbone
    base_sha256 = backbone.base_sha256 if backbone.tuned and backbone.base_sha256 else backbone.sha256()
    c = torch.tensor(float(head_c), device=model.device, requires_grad=True)

    def snapshot() -> tuple:
        return ({k: v.clone() for k, v in backbone.state_dict().items()},
                [w.detach().clone() for w in model.weights], float(c.detach()))

    train_before = evaluate(model, train_data, batch_size)
    val_before = best_val = evaluate(model, val_data, batch_size)
    log(f"tune: before  train 2AFC {train_before:.4f}  val 2AFC {val_before:.4f}")
    best, best_epoch, bad = snapshot(), 0, 0
    result = TuneResult(head_c, train_before, val_before, train_before, val_before, 0, 0, base_sha256)
    params = [*backbone.parameters(), *model.weights, c]
    gen = torch.Generator().manual_seed(seed)
    try:
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))  # as the lpips trainer
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = torch.randperm(len(train_data), generator=gen).tolist()
            total = 0.0
            bar = tqdm(total=len(order), desc=f"tune epoch {epoch}/{epochs}", unit="triplet",
                       disable=not progress, leave=False)
            with torch.enable_grad():
                for n, groups in train_data.batches(order, batch_size):
                    opt.zero_grad(set_to_none=True)
                    batch_loss = 0.0
                    for ref, p0, p1, h in groups:  # one group per image size; gradients add up
                        d0, d1 = triplet_distances(model, ref, p0, p1)
                        logit = head_logit(d0, d1, c)
                        h = h.to(logit.device)
                        loss = F.binary_cross_entropy_with_logits(logit, h, reduction="sum") / n
                        loss.backward()
                        batch_loss += float(loss.detach())
                    opt.step()
                    with torch.no_grad():  # nonnegative weights and head, as LPIPS clamps its lin layers
                        for w in model.weights:
                            w.clamp_(min=0)
                        c.clamp_(min=0)
                    total += batch_loss * n
                    bar.update(n)
                    bar.set_postfix(loss=f"{batch_loss:.4f}")
            bar.close()
            val_score = evaluate(model, val_data, batch_size)
            result.epoch_seconds.append(time.perf_counter() - t0)
            result.history.append((epoch, total / len(order), val_score))
            result.epochs_run = epoch
            log(f"tune epoch {epoch}/{epochs}  train loss {total / len(order):.5f}  val 2AFC {val_score:.4f}"
                f"  ({result.epoch_seconds[-1]:.1f}s)")
            if val_score > best_val:
                best, best_val, best_epoch, bad = snapshot(), val_score, epoch, 0
            else:
                bad += 1
                if bad >= patience:
                    log(f"tune: no val improvement for {patience} epochs, stopping")
                    break
    finally:
        for p in backbone.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            backbone.load_state_dict(best[0])
            model.set_weights(best[1])
    backbone.tuned, backbone.base_sha256 = True, base_sha256
    model.weights_source = "tune"
    result.head_c, result.best_epoch, result.val_2afc = best[2], best_epoch, best_val
    result.train_2afc = train_before if best_epoch == 0 else evaluate(model, train_data, batch_size)
    log(f"tune: after   train 2AFC {result.train_2afc:.4f}  val 2AFC {result.val_2afc:.4f}  "
        f"(best epoch {best_epoch} of {result.epochs_run})")
    return result
