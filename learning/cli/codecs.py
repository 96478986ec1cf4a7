"""``python -m learning codecs``: every registered codec, whether it works here, version, quality range."""

from __future__ import annotations

import argparse
import json

from learning.codecs import describe_codecs


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "codecs", help="list codecs with availability and versions", description=__doc__
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = describe_codecs()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':10} {'available':9}  {'quality':11} version")
    for r in rows:
        lo, hi = r["quality_range"]
        q = "-" if lo == hi else f"{lo:g}..{hi:g}"
        print(f"{r['name']:10} {'yes' if r['available'] else 'no':9}  {q:11} {r['version']}")
    return 0
