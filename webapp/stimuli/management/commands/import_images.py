"""``manage.py import_images DIR``: content-addressed import; any broken file -> nothing imported."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.stimuli.ingest import IMAGE_SUFFIXES, IngestError, import_images


def _not_text(value: str) -> str | None:
    """What keeps ``value`` out of a text column, or None. Bytes that are not UTF-8 reach sys.argv as lone
    surrogates (surrogateescape), which have no UTF-8 form; PostgreSQL text holds no NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(value[exc.start]) - 0xDC00
        shown = f"byte 0x{byte:02x}" if 0x80 <= byte <= 0xFF else f"character U+{ord(value[exc.start]):04X}"
        return f"not valid UTF-8 text ({shown} at character {exc.start + 1})"
    if "\x00" in value:
        return "contains a NUL character"
    return None


class Command(BaseCommand):
    help = "Import reference images from a directory (or files); splits are assigned by content hash."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="directories or image files")
        parser.add_argument("--source", default="")
        parser.add_argument("--licence", default="")
        parser.add_argument("--split-seed", type=int, default=0)
        parser.add_argument("--val-fraction", type=float, default=0.1)
        parser.add_argument("--test-fraction", type=float, default=0.2)

    def handle(self, *args, **o):
        if not (
            0 <= o["val_fraction"] <= 1
            and 0 <= o["test_fraction"] <= 1
            and o["val_fraction"] + o["test_fraction"] <= 1
        ):
            raise CommandError("--val-fraction and --test-fraction must be in [0, 1] and sum to at most 1")
        for name in ("source", "licence"):
            problem = _not_text(o[name])
            if problem:
                raise CommandError(f"--{name}: {problem} (nothing was imported)")
            if len(o[name]) > 255:  # the column's width
                raise CommandError(f"--{name}: at most 255 characters (got {len(o[name])})")
        files: list[Path] = []
        for p in map(Path, o["paths"]):
            if p.is_dir():
                files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            elif p.is_file():
                files.append(p)
            else:
                raise CommandError(f"{p}: no such file or directory")
        if not files:
            raise CommandError("no image files found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
        try:
            created, existing = import_images(
                files, o["source"], o["licence"], o["split_seed"], o["val_fraction"], o["test_fraction"]
            )
        except IngestError as exc:
            raise CommandError(f"{exc} (nothing was imported)") from exc
        self.stdout.write(f"imported {created} new reference image(s), {existing} already present")
