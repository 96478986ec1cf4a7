"""BAPPS reader: good layouts load, each malformed case is one clear error line (exit 2, no traceback)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from learning.__main__ import main
from learning.data.bapps import load_2afc, load_triplet, write_triplet


def _write_set(root: Path, n: int = 3, size: int = 20, judge_n: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("ref", "p0", "p1", "judge") + (("judge_n",) if judge_n else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for sub in ("ref", "p0", "p1"):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / sub / f"{i:06d}.png")
        np.save(root / "judge" / f"{i:06d}.npy", np.array([i / max(1, n - 1)], dtype=np.float32))
        if judge_n:
            np.save(root / "judge_n" / f"{i:06d}.npy", np.array([4]))
    return root


def test_reads_sets_and_parents(tmp_path: Path) -> None:
    _write_set(tmp_path / "export" / "val" / "expA", 3, judge_n=True)
    _write_set(tmp_path / "export" / "val" / "expB", 2)
    other = _write_set(tmp_path / "plain", 4)
    sets = load_2afc([tmp_path / "export" / "val", other])
    assert [s.name for s in sets] == ["val/expA", "val/expB", "plain"]
    assert [len(s) for s in sets] == [3, 2, 4]
    assert sets[0].n_judges.tolist() == [4, 4, 4] and sets[1].n_judges is None
    assert sets[0].judges.tolist() == [0.0, 0.5, 1.0]
    ref, p0, p1, key = load_triplet(sets[0].triplets[0], patch=8, rng=np.random.default_rng(1))
    assert ref.shape == p0.shape == p1.shape == (8, 8, 3) and len(key) == 32
    assert load_triplet(sets[0].triplets[0])[3] != key  # the crop is part of the cache key


def _break(root: Path, case: str) -> None:
    if case == "missing-subfolder":
        shutil.rmtree(root / "p1")
    elif case == "missing-file":
        (root / "p0" / "000001.png").unlink()
    elif case == "mismatched-name":
        (root / "judge" / "000002.npy").rename(root / "judge" / "000009.npy")
    elif case == "size-mismatch":
        Image.new("RGB", (21, 20)).save(root / "p1" / "000000.png")
    elif case == "unreadable-image":
        (root / "ref" / "000001.png").write_bytes(b"this is not a png")
    elif case == "judge-out-of-range":
        np.save(root / "judge" / "000001.npy", np.array([1.5]))
    elif case == "judge-nan":
        np.save(root / "judge" / "000001.npy", np.array([np.nan]))
    elif case == "judge-unreadable":
        (root / "judge" / "000001.npy").write_bytes(b"garbage")
    elif case == "empty":
        for sub in ("ref", "p0", "p1", "judge"):
            for f in (root / sub).iterdir():
                f.unlink()
    elif case == "bad-judge-count":
        (root / "judge_n").mkdir()
        for i in range(3):
            np.save(root / "judge_n" / f"{i:06d}.npy", np.array([0]))


CASES = {
    "missing-subfolder": "missing subfolder p1/",
    "missing-file": "p0/ does not match ref/",
    "mismatched-name": "judge/ does not match ref/",
    "size-mismatch": "images of different sizes",
    "unreadable-image": "cannot read image",
    "judge-out-of-range": "not a fraction in [0, 1]",
    "judge-nan": "not a fraction in [0, 1]",
    "judge-unreadable": "cannot read judge file",
    "empty": "empty set",
    "bad-judge-count": "not a positive integer",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_dataset_is_one_clear_error(tmp_path: Path, case: str, capsys) -> None:
    root = _write_set(tmp_path / "set")
    _break(root, case)
    out = tmp_path / "w.dpl"
    rc = main(["fit", "--data", str(root), "--val", str(root), "--backbone", "random:0", "--net", "alex",
               "--out", str(out), "--cache", "none", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert CASES[case] in err, err
    assert not out.exists()


def test_bad_arguments(tmp_path: Path, capsys) -> None:
    root = _write_set(tmp_path / "set")
    (tmp_path / "no-sets" / "sub").mkdir(parents=True)
    for extra, msg in [(["--backbone", "random:x"], "integer seed"),
                       (["--backbone", str(tmp_path / "nope.pth")], "not 'imagenet'"),
                       (["--patch", "7"], "--patch"),
                       (["--data", str(tmp_path / "missing")], "dataset folder not found"),
                       (["--data", str(tmp_path / "no-sets")], "no 2AFC sets found"),
                       ([], "too small for the alex backbone")]:
        args = ["fit", "--data", str(root), "--backbone", "random:0", "--out", str(tmp_path / "w.dpl"),
                "--cache", "none", "--quiet"]
        for i in range(0, len(extra), 2):
            if extra[i] in args:
                args[args.index(extra[i]) + 1] = extra[i + 1]
            else:
                args += extra[i:i + 2]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and "\n" not in err, err


def test_write_triplet_round_trips_through_load_2afc(tmp_path):
    """The writer the site's export uses produces what the reader loads (judge fraction and judges)."""
    def write(rel: str, data: bytes) -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG")
    png = buf.getvalue()
    for k, (h, n) in enumerate([(0.25, 4), (1.0, 3)]):
        write_triplet(write, "train/exp", f"{k:06d}", png, png, png, h, n)
    (s,) = load_2afc(tmp_path / "train")
    assert s.name.endswith("exp") and len(s) == 2
    assert list(s.judges) == [0.25, 1.0] and list(s.n_judges) == [4, 3]
