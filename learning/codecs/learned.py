"""Learned codecs: CompressAI models trained by ``train-codec``, used through real entropy coding.

``get_codec("ckpt:PATH")`` loads a checkpoint (the registry resolves ``ckpt:``); encoding runs
``model.compress`` (rANS) and serialises the byte strings and latent shape into one bitstream, so bpp
counts every byte a decoder needs besides the model itself. A checkpoint has no quality knob: it is one
rate point; several checkpoints (one per λ) make a curve, written ``ckpt:A.pt+B.pt+C.pt`` or
``ckpt:DIR/*.pt`` (see :func:`learning.codecs.registry.expand_checkpoints`).
Bitstream layout:

    b"LRN1" | width u16 | height u16 | latent h u16 | latent w u16 | n groups u8 |
    per group: n strings u8, per string: length u32 + bytes

Device: the analysis/synthesis transforms (and the hyperprior's scale prediction) run on the codec's
device, a ``torch.device`` or None for the CPU (``from_checkpoint(path, device)``; ``--device`` of
``encode``/``rd``, resolved by ``learning.device.resolve_device``); the entropy coding (CompressAI's rANS)
always runs on the CPU, whatever the device. Decoding on
a different device than encoding is NOT guaranteed bit-exact for learned codecs: floating point differs
between devices, and a hyperprior's scales pick the entropy tables, so a bitstream may even fail to decode.
Encode and decode on the same device (the CPU by default).
"""

from __future__ import annotations

import struct
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from learning import checkpoint
from learning.architectures import PAD_MULTIPLE, build_model, compressai_available
from learning.codecs.base import Codec
from learning.device import device_or_cpu
from learning.errors import LearningError

MAGIC = b"LRN1"


def pack(strings: list[list[bytes]], shape: tuple[int, int], size: tuple[int, int]) -> bytes:
    out = [MAGIC, struct.pack("<HHHHB", size[0], size[1], shape[0], shape[1], len(strings))]
    for group in strings:
        out.append(struct.pack("<B", len(group)))
        for s in group:
            out.append(struct.pack("<I", len(s)))
            out.append(s)
    return b"".join(out)


def unpack(data: bytes) -> tuple[list[list[bytes]], tuple[int, int], tuple[int, int]]:
    try:
        if data[:4] != MAGIC:
            raise ValueError("bad magic")
        w, h, sh, sw, n = struct.unpack_from("<HHHHB", data, 4)
        pos = 4 + struct.calcsize("<HHHHB")
        strings = []
        for _ in range(n):
            (k,) = struct.unpack_from("<B", data, pos)
            pos += 1
            group = []
            for _ in range(k):
                (length,) = struct.unpack_from("<I", data, pos)
                pos += 4
                if pos + length > len(data):
                    raise ValueError("truncated")
                group.append(data[pos : pos + length])
                pos += length
            strings.append(group)
        if pos != len(data) or w == 0 or h == 0:
            raise ValueError("trailing or missing bytes")
    except (struct.error, ValueError) as exc:
        raise LearningError(f"learned: corrupt or unreadable bitstream ({exc})") from exc
    return strings, (sh, sw), (w, h)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def to_tensor(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(x: torch.Tensor) -> Image.Image:
    arr = (x.squeeze(0).clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@torch.no_grad()
def compress_tensor(model: torch.nn.Module, x: torch.Tensor, multiple: int) -> bytes:
    """1×3×H×W in [0,1] → bitstream (replicate-padded to a multiple of the model's stride); the transforms
    run on the model's device, the entropy coder on the CPU."""
    x = x.to(_device_of(model))
    _, _, h, w = x.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    out = model.compress(xp)
    strings = [[bytes(s) for s in group] for group in out["strings"]]
    shape = tuple(int(v) for v in out["shape"])
    return pack(strings, shape, (w, h))


@torch.no_grad()
def decompress_bytes(model: torch.nn.Module, data: bytes) -> torch.Tensor:
    """Bitstream → 1×3×H×W CPU tensor in [0,1] (synthesis on the model's device)."""
    strings, shape, (w, h) = unpack(data)
    try:
        out = model.decompress(strings, list(shape))
    except Exception as exc:
        raise LearningError(f"learned: bitstream does not decode with this model ({exc})") from exc
    return out["x_hat"][..., :h, :w].clamp(0, 1).cpu()


class LearnedCodec(Codec):
    """A trained CompressAI model; quality-less (one rate point per checkpoint). Its transforms run on
    ``device`` (see the module docstring: decode on the device you encoded on)."""

    name = "learned"
    quality_range = (0, 0)
    extension = "lrn"
    description = "learned codec (CompressAI, our checkpoints): use ckpt:PATH"
    requirement = "compressai (and the torchvision it imports)"

    def __init__(self, model: torch.nn.Module | None = None, arch: str = "", path: str = "",
                 config: dict | None = None, name: str = ""):
        self.model, self.arch, self.path = model, arch, path
        self.config = dict(config or {})  # the training config stored in the checkpoint (loss, λ, ...)
        self.device = _device_of(model) if model is not None else torch.device("cpu")
        self.name = name or self.name

    @classmethod
    def from_checkpoint(cls, path: str, device: torch.device | None = None, name: str = "") -> LearnedCodec:
        """Load a train-codec checkpoint as the codec called ``name`` (the registry's ``ckpt:PATH``); its
        transforms run on ``device`` (None: the CPU)."""
        device = device_or_cpu(device)
        if not Path(path).is_file():
            raise LearningError(f"checkpoint {path!r} does not exist")
        blob = checkpoint.load(path)
        model = build_model(blob["arch"], blob["N"], blob["M"])
        model.load_state_dict(blob["model"])
        model.update(force=True)
        model.eval()
        return cls(model.to(device), blob["arch"], path, blob.get("config"), name)

    def to(self, device: torch.device | None) -> LearnedCodec:
        """Move the transforms to ``device`` (None: the CPU); returns self."""
        self.device = device_or_cpu(device)
        if self.model is not None:
            self.model.to(self.device)
        return self

    def curve_label(self) -> str:
        """``learned:<arch>/<loss>[+saliency]``: what checkpoints must share to lie on one R–D curve."""
        # dpl:FILE terms as "dpl", weights kept: dpl:a.pt+0.002*mse → dpl+0.002*mse
        loss = "+".join("dpl" if t.startswith("dpl:") else t
                        for t in str(self.config.get("loss", "?")).split("+"))
        sal = "+saliency" if self.config.get("saliency") else ""
        return f"learned:{self.arch or '?'}/{loss}{sal}"

    def available(self) -> bool:
        return compressai_available()

    def version(self) -> str:
        return f"CompressAI {metadata.version('compressai')}" + (f", {self.arch}" if self.arch else "")

    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise LearningError("the learned codec needs a checkpoint: use ckpt:PATH (made by train-codec)")
        return self.model

    def encode_quality(self, image: Image.Image, quality: float) -> bytes:
        model = self._require_model()
        return compress_tensor(model, to_tensor(image), PAD_MULTIPLE.get(self.arch, 64))

    def decode(self, data: bytes) -> Image.Image:
        return to_image(decompress_bytes(self._require_model(), data))
