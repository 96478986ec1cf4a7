"""``python -m learning encode --codec NAME (--bpp X | --quality Q) IN OUT``.

Writes the bitstream at OUT and its decoded PNG at OUT.png (or --decoded), prints the achieved bpp.
``--decode`` reads a bitstream IN instead and writes its decoded PNG at OUT. Bad input (unknown codec,
impossible bpp, unreadable image, corrupt bitstream) is a one-line error and nothing is written.

``--device`` (cpu, the default | auto | cuda | cuda:N | mps) runs a ``ckpt:`` model's transforms there; the
entropy coder always runs on the CPU. Decode a learned bitstream on the device it was encoded on: across
devices the result is not guaranteed bit-exact (floating point), hence the CPU by default.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from PIL import Image

from learning.codecs import get_codec
from learning.codecs.ratecontrol import encode_at_bpp
from learning.device import add_device_argument, resolve_device
from learning.errors import LearningError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "encode", help="encode an image at a quality or bpp target", description=__doc__
    )
    p.add_argument("--codec", required=True, help="codec name (see `codecs`) or ckpt:PATH")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bpp", type=float, help="target bits per pixel (rate control)")
    g.add_argument("--quality", type=float, help="codec quality setting")
    g.add_argument("--decode", action="store_true", help="IN is a bitstream: write its decoded PNG at OUT")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative bpp tolerance for --bpp (1 %%)")
    p.add_argument("--decoded", help="where to write the decoded PNG (default OUT.png)")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    add_device_argument(p, default="cpu")  # portable bitstreams unless another device is asked for
    p.set_defaults(func=run)


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:
        raise LearningError(f"cannot read image {path!r} ({exc})") from exc


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)  # an unknown or absent device is refused for every codec
    codec = get_codec(args.codec, device=device)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise LearningError(f"output directory {str(out.parent)!r} does not exist")
    if args.decode:
        try:
            data = Path(args.input).read_bytes()
        except OSError as exc:
            raise LearningError(f"cannot read bitstream {args.input!r} ({exc.strerror})") from exc
        image = codec.decode(data)
        _write_atomic(out, lambda p: image.save(p, "PNG"))
        print(f"decoded {args.input} -> {out} ({image.size[0]}x{image.size[1]})")
        return 0
    if args.bpp is None and args.quality is None:
        raise LearningError("give --bpp or --quality (or --decode)")
    image = read_image(args.input)
    if args.bpp is not None:
        result = encode_at_bpp(codec, image, args.bpp, tolerance=args.tolerance)
        enc, note = result.encoded, f" (target {args.bpp:g}, {result.n_encodes} encodes)"
    else:
        enc, note = codec.encode(image, args.quality), ""
    decoded = codec.decode(enc.data)  # before writing anything: a failure leaves no files
    png = Path(args.decoded) if args.decoded else out.with_name(out.name + ".png")
    _write_atomic(out, lambda p: p.write_bytes(enc.data))
    _write_atomic(png, lambda p: decoded.save(p, "PNG"))
    print(
        f"{codec.name} quality {enc.quality:g}: {len(enc.data)} bytes, {enc.bpp:.4f} bpp{note} "
        f"-> {out}, {png}"
    )
    return 0
