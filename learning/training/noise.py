"""Deterministic training noise for CompressAI's entropy models.

CompressAI adds U(−½, ½) noise to the latents in training, drawn from the global RNG, so two DDP ranks
with half a batch each draw different noise than one process with the whole batch. Here the noise of a
step is drawn for the whole *global* batch from a generator seeded by (seed, step, module, call) and each
rank takes the samples it holds (``DistributedSampler`` deals global batch positions rank, rank + world,
...). One process and any number of ranks therefore see the same noise, and a resumed run sees the noise
the uninterrupted run would have seen. Noise is drawn on the CPU and moved to the latents' device, so
it is the same on every device.
"""

from __future__ import annotations

import types

import torch
from compressai.entropy_models import EntropyBottleneck, EntropyModel


class NoiseSource:
    def __init__(self, seed: int, rank: int = 0, world: int = 1):
        self.seed, self.rank, self.world = seed, rank, world
        self.step = 0
        self.n_local = 0  # samples this rank holds in the current step
        self._calls = 0

    def start_step(self, step: int, n_local: int) -> None:
        self.step, self.n_local, self._calls = step, n_local, 0

    def draw(self, per_sample: tuple[int, ...], n_local: int) -> torch.Tensor:
        """Noise for this rank's ``n_local`` samples, shape (n_local, *per_sample)."""
        self._calls += 1
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.step * 7919 + self._calls * 104_729) % (2**63)
        )
        full = torch.rand((n_local * self.world, *per_sample), generator=g) - 0.5
        return full[self.rank :: self.world]


def install(model: torch.nn.Module, source: NoiseSource) -> None:
    """Replace the "noise" mode of every entropy model in ``model`` by draws from ``source``."""
    for module in model.modules():
        if not isinstance(module, EntropyModel):
            continue
        original = module.quantize
        bottleneck = isinstance(module, EntropyBottleneck)

        def quantize(self, inputs, mode, means=None, _orig=original, _eb=bottleneck):
            if mode != "noise":
                return _orig(inputs, mode, means)
            n_local = source.n_local
            if _eb:  # inputs are C × 1 × (N·H·W), batch-major in the last axis
                c, _, length = inputs.shape
                k = length // n_local
                noise = source.draw((c, 1, k), n_local)  # n × C × 1 × k
                noise = noise.permute(1, 2, 0, 3).reshape(c, 1, length)
            else:  # N × C × H × W
                noise = source.draw(tuple(inputs.shape[1:]), n_local)
            return inputs + noise.to(inputs.device, inputs.dtype)

        module.quantize = types.MethodType(quantize, module)


def keep_entropy_models_fp32(model: torch.nn.Module) -> None:
    """Under mixed precision, run every entropy model of ``model`` in fp32 (autocast off, inputs cast
    up): likelihoods of a few bits are where half precision loses the rate."""
    for module in model.modules():
        if not isinstance(module, EntropyModel):
            continue
        original = module.forward

        def forward(*args, _orig=original, **kwargs):
            args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
            kwargs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                      for k, v in kwargs.items()}
            device_type = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
            with torch.autocast(device_type=device_type, enabled=False):
                return _orig(*args, **kwargs)

        module.forward = forward
