"""``python -m learning saliency --images DIR --out DIR [--model spectral|msroi] [--msroi-weights FILE]``.

Writes one 16-bit grayscale PNG saliency map per image (same stem, ``.png``), readable with
``learning.saliency.load_map`` (codec training's ``--saliency DIR``). Every image is checked before
anything is written; a bad image is a one-line error.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from learning.errors import LearningError
from learning.saliency import DEFAULT_MODEL, get_saliency_model, list_images, load_rgb, model_names, save_map


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("saliency", help="write saliency maps (16-bit PNG) for a folder of images",
                              description=__doc__)
    p.add_argument("--images", required=True, help="folder of RGB images")
    p.add_argument("--out", required=True, help="output folder for the maps")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=model_names(), help="saliency model")
    p.add_argument("--msroi-weights", help="local torchvision state dict for --model msroi")
    p.add_argument("--msroi-arch", default="resnet50", help="classifier for --model msroi")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.set_defaults(func=run)


def run(args) -> int:
    files = list_images(args.images, args.limit)
    images = [load_rgb(f) for f in files]  # validate everything before writing
    kwargs = {"arch": args.msroi_arch} if args.model == "msroi" else {}
    model = get_saliency_model(args.model, msroi_weights=args.msroi_weights, **kwargs)
    out = Path(args.out)
    if out.exists() and out.resolve() == Path(args.images).resolve():
        raise LearningError("--out must differ from --images (maps share the images' stems)")
    out.mkdir(parents=True, exist_ok=True)
    print(f"saliency model: {model.name} — {model.description}")
    for f, im in tqdm(list(zip(files, images)), desc="saliency", unit="img"):
        save_map(model.map(im), out / f"{f.stem}.png")
    print(f"wrote {len(files)} maps (16-bit PNG) to {out}")
    return 0
