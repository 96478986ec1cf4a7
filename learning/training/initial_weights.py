"""Where a codec's weights start: random, CompressAI's pretrained zoo, or one of our checkpoints.

``zoo:ARCH:QUALITY[:mse|ms-ssim]`` reads CompressAI's published weights from torch.hub's cache
(``$TORCH_HOME/hub/checkpoints``), downloading them first where there is internet; offline, the error
names the file and the folder to put it in. The file is read with ``weights_only=True`` like our own
checkpoints. ``PATH`` is a ``train-codec`` checkpoint (its weights only; optimizers start afresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from compressai.zoo.image import cfgs, model_urls
from compressai.zoo.pretrained import load_pretrained

from learning import checkpoint
from learning.architectures import ARCHS, DEFAULT_M, DEFAULT_N, get_architecture
from learning.errors import LearningError

ZOO_METRICS = ("mse", "ms-ssim")


@dataclass(frozen=True)
class Init:
    """Architecture, sizes and the state dict a run starts from (``state`` None = random init)."""

    arch: str
    N: int
    M: int
    state: dict | None
    source: str


def parse_zoo(spec: str) -> tuple[str, int, str]:
    """``zoo:ARCH:QUALITY[:METRIC]`` → (arch, quality, metric), checked against CompressAI's zoo."""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or parts[0] != "zoo":
        raise LearningError(f"--init {spec!r}: write zoo:ARCH:QUALITY[:mse|ms-ssim]")
    arch, quality, metric = parts[1], parts[2], parts[3] if len(parts) == 4 else "mse"
    if arch not in ARCHS or arch not in cfgs:
        raise LearningError(f"--init {spec!r}: unknown zoo architecture {arch!r}; known: {', '.join(ARCHS)}")
    if not quality.isdigit() or int(quality) not in cfgs[arch]:
        raise LearningError(f"--init {spec!r}: quality must be one of {sorted(cfgs[arch])} for {arch}")
    if metric not in ZOO_METRICS:
        raise LearningError(f"--init {spec!r}: metric must be mse or ms-ssim, not {metric!r}")
    return arch, int(quality), metric


def zoo_file(arch: str, quality: int, metric: str) -> tuple[str, Path]:
    """(download URL, path in torch.hub's cache) of a pretrained CompressAI model."""
    try:
        url = model_urls[arch][metric][quality]
    except KeyError:
        raise LearningError(f"CompressAI publishes no {metric} weights for {arch} "
                            f"quality {quality}") from None
    return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_zoo(spec: str) -> Init:
    """The pretrained state dict of a zoo spec (downloaded into the cache when missing)."""
    arch, quality, metric = parse_zoo(spec)
    url, path = zoo_file(arch, quality, metric)
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
        except Exception as exc:
            raise LearningError(
                f"--init {spec}: cannot download {url} ({type(exc).__name__}); offline, put the file "
                f"{path.name} into {path.parent} (or set TORCH_HOME)"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LearningError(f"--init {spec}: cannot read {path} ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    sizes = cfgs[arch][quality]  # (N, M), or (N,) where the latent has N channels
    N, M = get_architecture(arch).sizes(sizes[0], sizes[-1])
    return Init(arch, N, M, load_pretrained(state), f"zoo:{arch}:{quality}:{metric} ({path.name})")


def load_init(spec: str | None, arch: str | None, N: int | None, M: int | None) -> Init:
    """Resolve ``--init`` against ``--arch/--N/--M`` (which may be left out when ``--init`` fixes them)."""
    if not spec:
        if arch is None:
            raise LearningError("give --arch (or --init zoo:ARCH:QUALITY / --init CHECKPOINT)")
        return Init(arch, N or DEFAULT_N, M or DEFAULT_M, None, "random")
    if spec.startswith("zoo:"):
        init = load_zoo(spec)
    else:
        blob = checkpoint.load(spec)
        init = Init(blob["arch"], blob["N"], blob["M"], blob["model"], f"checkpoint:{spec}")
    asked = (arch, N, M)
    have = (init.arch, init.N, init.M)
    for name, a, h in zip(("--arch", "--N", "--M"), asked, have):
        if a is not None and a != h:
            raise LearningError(f"--init {spec} is {init.arch} N={init.N} M={init.M}, "
                                f"but {name} {a} was given")
    return init


def apply(model: torch.nn.Module, init: Init) -> None:
    """Load ``init``'s weights into ``model`` (CompressAI's ``load_state_dict`` resizes the CDF tables;
    every other key and shape must match)."""
    if init.state is None:
        return
    try:
        model.load_state_dict(init.state)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LearningError(f"--init {init.source}: weights do not fit {init.arch} N={init.N} M={init.M} "
                            f"({first[:200]})") from None
