"""``python -m learning COMMAND ...``: one sub-command per module in ``learning.cli``."""

from __future__ import annotations

import argparse
import importlib
import sys

from learning.errors import LearningError

# Each module defines ``add_parser(subparsers)`` (which sets ``func``) and is optional: a missing
# module only removes its command.
COMMANDS = ["fit", "score", "codecs", "encode", "train_codec", "rd", "saliency", "msroi_table",
            "training_photos", "codec_recipe"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m learning", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module_name = f"learning.cli.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LearningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
