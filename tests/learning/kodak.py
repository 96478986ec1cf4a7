"""Where the learning tests find the 24 Kodak images: ``shared/data/kodak`` beside the repository."""

from pathlib import Path

KODAK_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"
if not KODAK_DIR.is_dir():
    KODAK_DIR = Path("/work/shared/data/kodak")
KODAK_PNGS = sorted(KODAK_DIR.glob("*.png"))
