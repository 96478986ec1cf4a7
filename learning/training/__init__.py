"""Learned-codec training with CompressAI: rate + λ·distortion (MSE, MS-SSIM or a DPL), DDP-ready.

:func:`train_codec` is the public entry point (what ``python -m learning train-codec`` runs). The
architectures and the checkpoint file live below this package (``learning.architectures``,
``learning.checkpoint``), shared with the ``ckpt:`` codec.
"""

from __future__ import annotations

from typing import Any

from learning import compat

# The modules of this package import compressai at their top, and compressai imports torchvision, which
# needs the CPU shim first: a package's __init__ runs before any of its modules.
compat.ensure_torchvision()

from learning.training.loop import TrainConfig, train  # noqa: E402  (after the shim, see above)

__all__ = ["train_codec"]


def train_codec(**kwargs: Any) -> dict[str, Any]:
    """Train (or, with ``resume=True``, continue) a codec: ``learning.training.loop.train`` on a
    ``TrainConfig(**kwargs)``.

    Keyword arguments are ``TrainConfig``'s fields (``data`` and ``out`` required; ``arch``, ``init``,
    ``loss`` (``mse | ms-ssim | dpl:FILE``), ``lmbda``, ``epochs`` or ``steps``, ``device`` (a
    ``torch.device``; None: the CPU), ``amp``, ``progress``, ...), with the CLI's defaults; an unknown name
    raises TypeError. Returns the final record (the dict the CLI prints as JSON); rank 0 writes the
    checkpoint at ``out``, ``OUT.best.pt`` and ``OUT.log.json``. Bad arguments or data raise LearningError
    before training starts. Process-wide settings (torch threads) are left to the caller.
    """
    return train(TrainConfig(**kwargs))
