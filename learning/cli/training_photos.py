"""``python -m learning training-photos``: a codec training set of natural photographs from Debian packages
(``learning.training.photos``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from learning.training.photos import PACKAGES, ROOT, FetchError, build, default_kodak


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("training-photos", help="build a codec training set of photos from Debian "
                              "packages", description=__doc__)
    p.add_argument("--out", type=Path, default=ROOT / "var/photos")
    p.add_argument("--cache", type=Path, default=ROOT / "var/cache/fetch_photos")
    p.add_argument("--packages", default=",".join(PACKAGES), help="comma-separated subset of PACKAGES")
    p.add_argument("--exclude", action="append", default=[], help="extra package:path glob to skip")
    p.add_argument("--kodak", type=Path, default=default_kodak(), help="Kodak PNGs to keep out")
    p.add_argument("--force", action="store_true", help="rewrite existing PNGs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return build(args.out, args.cache, args.packages.split(","), args.exclude, args.kodak, args.force)
    except FetchError as e:
        print(f"training-photos: error: {e}", file=sys.stderr)
        return 1
