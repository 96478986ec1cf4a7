"""``python -m learning msroi-table --images DIR [--saliency spectral|msroi] [--msroi-weights FILE]
[--out DIR] [--limit N]``.

Reproduces the Kodak table of Prakash et al. (DCC 2018): per image, standard JPEG q50 (Pillow, 4:2:0) and
the saliency-driven JPEGs (the paper's msroi-composite and our dct-prune variant) at the same file size
(±1 %), scored on BT.601 limited-range luma, averaged and printed beside the paper's rows. Saves per image
the map (16-bit PNG), an overlay, the JPEG files and their decoded PNGs, plus ``msroi_examples.png/.svg``,
``table.md`` and ``results.json`` under --out.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from learning.saliency import get_saliency_model, list_images, load_rgb, model_names, save_map


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("msroi-table", help="DCC 2018 table: standard vs saliency JPEG on Kodak",
                              description=__doc__)
    p.add_argument("--images", required=True, help="folder of RGB images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--saliency", default="spectral", choices=model_names(), help="saliency model")
    p.add_argument("--msroi-weights", help="local torchvision state dict for --saliency msroi")
    p.add_argument("--msroi-arch", default="resnet50", help="classifier for --saliency msroi")
    p.add_argument("--out", default="msroi_out", help="output folder (default ./msroi_out)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--examples", type=int, default=4, help="images in the example figure")
    p.set_defaults(func=run)


def run(args) -> int:
    from learning.saliency.table import evaluate_image, examples_figure, format_table, overlay

    files = list_images(args.images, args.limit)
    images = [load_rgb(f) for f in files]  # validate every image before writing anything
    kwargs = {"arch": args.msroi_arch} if args.saliency == "msroi" else {}
    model = get_saliency_model(args.saliency, msroi_weights=args.msroi_weights, **kwargs)
    model_desc = f"{model.name} — {model.description}"
    print(f"saliency model: {model_desc}")

    out = Path(args.out)
    dirs = {k: out / k for k in ("maps", "overlays", "jpeg", "decoded")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    results, fig_rows = [], []
    for f, im in tqdm(list(zip(files, images)), desc="msroi-table", unit="img"):
        sal = model.map(im)
        res, std, sj, pj = evaluate_image(im, sal, f.stem)
        results.append(res)
        save_map(sal, dirs["maps"] / f"{f.stem}.png")
        overlay(im, sal).save(dirs["overlays"] / f"{f.stem}.png")
        (dirs["jpeg"] / f"{f.stem}_standard_q50.jpg").write_bytes(std)
        (dirs["jpeg"] / f"{f.stem}_saliency.jpg").write_bytes(sj)
        (dirs["jpeg"] / f"{f.stem}_dct_prune.jpg").write_bytes(pj)
        from learning.saliency.jpeg import decode_jpeg

        decode_jpeg(std).save(dirs["decoded"] / f"{f.stem}_standard_q50.png")
        decode_jpeg(sj).save(dirs["decoded"] / f"{f.stem}_saliency.png")
        decode_jpeg(pj).save(dirs["decoded"] / f"{f.stem}_dct_prune.png")
        if len(fig_rows) < args.examples:
            fig_rows.append((f.stem, dirs["overlays"] / f"{f.stem}.png",
                             dirs["decoded"] / f"{f.stem}_standard_q50.png",
                             dirs["decoded"] / f"{f.stem}_saliency.png",
                             dirs["decoded"] / f"{f.stem}_dct_prune.png", f))
    table = format_table(results, model_desc)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(
        {"saliency_model": model_desc, "images": [r.__dict__ for r in results]}, indent=1))
    fig = out / "msroi_examples.png"
    if fig_rows:
        examples_figure(fig_rows, fig, model.name)
        print(f"figure: {fig} (+ .svg)")
    print(f"per-image maps, overlays, JPEGs and decoded PNGs under {out}")
    return 0
