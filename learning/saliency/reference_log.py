"""The DCC 2018 reference's own per-image Kodak log (``data/dcc2018_log_KODAK.log``; source and MIT
licence in ``data/README.md``), parsed.

Each row: the image, the mixing model, the PNG, standard-JPEG and composite sizes in bytes, the standard
JPEG quality and the composite's final quality, then the six VQMT metrics (``METRICS`` order) of the
standard JPEG and of the composite against the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

METRICS = ("PSNR", "SSIM", "MS-SSIM", "VIFP", "PSNR-HVS", "PSNR-HVS-M")
LOG_PATH = Path(__file__).resolve().parent / "data" / "dcc2018_log_KODAK.log"
SOURCE = ("github.com/iamaaditya/image-compression-cnn, logs_image_compression/log_KODAK.log "
          "(commit 0258c7c, MIT)")


@dataclass(frozen=True)
class LogRow:
    stem: str
    model: int
    png_bytes: int
    jpeg_bytes: int
    composite_bytes: int
    jpeg_quality: int
    composite_quality: int
    jpeg: dict[str, float]
    composite: dict[str, float]

    @property
    def size_excess(self) -> float:
        """Composite bytes / standard bytes − 1."""
        return self.composite_bytes / self.jpeg_bytes - 1.0


def parse_line(line: str) -> LogRow:
    """One log line → LogRow (ValueError on a malformed line)."""
    head, jpeg, comp, *_ = line.split("|")
    f = head.split()
    if len(f) != 7:
        raise ValueError(f"log line with {len(f)} header fields: {line!r}")
    jv, cv = [float(v) for v in jpeg.split()], [float(v) for v in comp.split()]
    if len(jv) != len(METRICS) or len(cv) != len(METRICS):
        raise ValueError(f"log line without six metrics per side: {line!r}")
    stem = Path(f[0]).stem
    return LogRow(stem, int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]),
                  dict(zip(METRICS, jv)), dict(zip(METRICS, cv)))


def load_log(path: str | Path = LOG_PATH) -> dict[str, LogRow]:
    """The log's rows by image stem (``kodim01`` …)."""
    rows = [parse_line(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {r.stem: r for r in sorted(rows, key=lambda r: r.stem)}
