"""``python -m learning msroi-table --images DIR [--saliency spectral|msroi] [--msroi-weights FILE]
[--model 6] [--threshold-pct 2] [--out DIR] [--limit N]``.

The Kodak table of Prakash et al. (DCC 2018) three ways, scored as the reference scored it (ffmpeg
yuv420p luma, VQMT's metric definitions, read both as published and correctly), beside the reference's
own per-image log: (a) the reference method (``reference-model-N``) at the log's threshold, (b) the same
no larger than the standard JPEG, (c) our methods at the standard size ± 1 %. Prints the tables and writes
under --out: ``table.md``, ``results.csv`` (one row per image and file), ``msroi_table.png/.svg``
(per-image ΔPSNR and ΔPSNR-S), and per image the 8-bit map (``maps/``), an overlay and the JPEG files.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from learning.saliency import get_saliency_model, list_images, load_rgb, model_names, save_map
from learning.saliency.reference_log import SOURCE, load_log
from learning.saliency.table import evaluate_image, format_report, overlay, plot, write_csv


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("msroi-table", help="DCC 2018 table: reference and our saliency JPEGs on Kodak",
                              description=__doc__)
    p.add_argument("--images", required=True, help="folder of RGB images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--saliency", default="spectral", choices=model_names(), help="saliency model")
    p.add_argument("--msroi-weights", help="local torchvision state dict for --saliency msroi")
    p.add_argument("--msroi-arch", default="resnet50", help="classifier for --saliency msroi")
    p.add_argument("--model", type=int, default=6, choices=range(1, 7), help="reference mixing model (1-6)")
    p.add_argument("--threshold-pct", type=float, default=2.0,
                   help="(a)'s size rule: composite ≤ standard × (1 + T/100); the log's is 2")
    p.add_argument("--out", default="msroi_out", help="output folder (default ./msroi_out)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.set_defaults(func=run)


def run(args) -> int:
    files = list_images(args.images, args.limit)
    images = [load_rgb(f) for f in files]  # validate every image before writing anything
    kwargs = {"arch": args.msroi_arch} if args.saliency == "msroi" else {}
    model = get_saliency_model(args.saliency, msroi_weights=args.msroi_weights, **kwargs)
    map_desc = f"{model.name} — {model.description}"
    print(f"saliency map: {map_desc}")
    log = load_log()
    print(f"reference log: {SOURCE}, {len(log)} images")

    out = Path(args.out)
    dirs = {k: out / k for k in ("maps", "overlays", "jpeg")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    entries = []
    for f, im in tqdm(list(zip(files, images)), desc="msroi-table", unit="img"):
        sal = model.map(im)
        rows = evaluate_image(im, f.read_bytes(), sal, f.stem, model=args.model,
                              threshold_pct=args.threshold_pct)
        entries += rows
        save_map(sal, dirs["maps"] / f"{f.stem}.png")
        overlay(im, sal).save(dirs["overlays"] / f"{f.stem}.png")
        for e in rows:
            data = next(iter(e.files.values()))
            (dirs["jpeg"] / f"{f.stem}_{e.method.replace('%', 'pct')}.jpg").write_bytes(data)
            e.files.clear()
    report = format_report(entries, log, map_desc)
    print(report)
    (out / "table.md").write_text(report + "\n")
    write_csv(entries, log, out / "results.csv")
    plot(entries, log, out / "msroi_table.png")
    print(f"wrote {out / 'table.md'}, {out / 'results.csv'}, {out / 'msroi_table.png'} (+ .svg); "
          f"maps, overlays and JPEGs under {out}")
    return 0
