"""Export an experiment as a dataset: BAPPS layout + raw judgment log + manifest.

Layout written under ``out``::

    <split>/<slug>/ref/NNNNNN.png      reference image
    <split>/<slug>/p0/NNNNNN.png       trial.stimulus_a (decoded PNG shown to workers)
    <split>/<slug>/p1/NNNNNN.png       trial.stimulus_b
    <split>/<slug>/judge/NNNNNN.npy    float32 (1,): fraction of included judgments choosing p1
    <split>/<slug>/judge_n/NNNNNN.npy  float32 (1,): number of included judgments
    trials.csv                         split, index, trial id, reference sha256, stimulus ids, judge, n
    judgments.csv / judgments.jsonl    one row per judgment (practice included, marked by ``kind``), with
                                       what happened while it was shown (focus lost, fullscreen left, ...)
    scale.csv / scale.json             JOD per codec×setting and per stimulus with 95 % bootstrap intervals
    manifest.json                      settings, codecs, QC rules, excluded participants, counts (also of
                                       the participants withdrawn or erased before the export), sha256s

Only *normal* trials with at least one included judgment get a BAPPS entry; planned repeats count as further
judgments of the same trial. With ``exclude_flagged`` the QC-flagged participants' judgments are left out of
the BAPPS fractions *and* of the judgment log (the manifest lists who was excluded and why). Simulated
participants (``simulate_crowd``, platform ``simulated``) are left out of both unless ``include_simulated``.

Everything is read inside one read-only REPEATABLE READ transaction on PostgreSQL (a consistent snapshot
while judging goes on) and streamed with ``.iterator()``: memory grows with trials, not with judgments.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from PIL import Image
from tqdm import tqdm

from learning.data.bapps import write_triplet
from webapp.crowd.models import Erasure, Judgment
from webapp.experiments.models import Trial
from webapp.lab import analysis, jod_scales
from webapp.lab.qc import compute_qc, qc_rules
from webapp.lab.simulated_participants import simulated_ids
from webapp.stimuli.models import Stimulus

FORMAT_VERSION = 1
# What the judging page recorded while the trial was shown (``Judgment.events``, ``crowd.judging.EVENTS``):
# counts, empty in the CSV (null in the JSONL) where the page did not report them.
VIEWING_FIELDS = ["focus_lost", "fullscreen_exits", "too_small", "ratio_changed"]
SPLITS = ("train", "val", "test")
LOG_FIELDS = [
    "judgment", "experiment", "participant", "platform", "platform_id_hash", "assignment", "trial", "kind",
    "position", "is_repeat", "reference_sha256", "stimulus_a", "stimulus_a_codec", "stimulus_a_quality",
    "stimulus_a_bpp", "stimulus_b", "stimulus_b_codec", "stimulus_b_quality", "stimulus_b_bpp", "chosen",
    "chosen_side", "left_stimulus", "response_ms", "fast", "server_time", "client_time", "qc_flagged",
    "qc_reasons", *VIEWING_FIELDS,
]


Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ExportError(Exception):
    """Bad export request (non-empty directory, unknown experiment); nothing was written."""


@contextmanager
def snapshot():
    """A read-only transaction; REPEATABLE READ on PostgreSQL when not already inside a transaction."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    else:
        with transaction.atomic():
            yield


def opaque_id(kind: str, value: str) -> str:
    """A stable pseudonym (HMAC-SHA256 with SECRET_KEY, 16 hex chars) that does not reveal ``value``."""
    return hmac.new(settings.SECRET_KEY.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:16]


class _Writer:
    """Writes files under a root and records their sha256."""

    def __init__(self, root: Path):
        self.root = root
        self.sha256: dict[str, str] = {}

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.sha256[rel] = hashlib.sha256(data).hexdigest()

    def open_text(self, rel: str):
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return _HashingText(self, rel, path)


class _HashingText:
    """A text file that hashes what is written to it (streaming)."""

    def __init__(self, writer: _Writer, rel: str, path: Path):
        self._w, self._rel, self._f, self._h = writer, rel, open(path, "w", encoding="utf-8", newline=""), (
            hashlib.sha256()
        )

    def write(self, s: str) -> int:
        self._h.update(s.encode("utf-8"))
        return self._f.write(s)

    def close(self) -> None:
        self._f.close()
        self._w.sha256[self._rel] = self._h.hexdigest()


def _read_field(f) -> bytes:
    try:
        with f.storage.open(f.name, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, ValueError) as e:
        raise ExportError(f"file missing from media storage: {f.name or '(none)'}") from e


def _png_bytes(f) -> bytes:
    """The file's bytes if it is a PNG, else re-encoded losslessly as PNG."""
    data = _read_field(f)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an existing non-directory or a non-empty directory unless ``force``."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty (use --force to overwrite)")


def _clear_previous(out: Path, slug: str) -> None:
    for split in SPLITS:
        d = out / split / slug
        if d.is_symlink():  # the link itself, never the folder it names
            d.unlink()
        elif d.is_dir():
            shutil.rmtree(d)
    for name in ("trials.csv", "judgments.csv", "judgments.jsonl", "scale.csv", "scale.json",
                 "manifest.json"):
        (out / name).unlink(missing_ok=True)


def resolve_out(out: Path) -> Path:
    """``out``, or the folder it links to when it is a symbolic link (written into, never replaced)."""
    if not out.is_symlink():
        return out
    if not out.exists():
        raise ExportError(f"{out} is a symbolic link to a missing or looping path")
    return out.resolve()


def _fresh_dir(out: Path) -> Path:
    """A new empty folder next to ``out`` to build the export in (renamed to ``out`` when complete)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".export-partial-"))
        os.chmod(tmp, 0o755)
    except OSError as exc:  # a parent is a file, no permission, read-only file system, name too long...
        raise ExportError(f"{out}: cannot create the output directory ({exc.strerror or exc})") from exc
    return tmp


def _experiment_settings(exp) -> dict:
    keys = [
        "slug", "title", "question", "mode", "pairs", "pairs_per_reference", "trials_per_assignment",
        "judgments_per_trial", "sentinel_rate", "repeat_rate", "min_response_ms", "practice_trials",
        "platform", "status", "assignment_timeout_minutes", "seed", "spec", "codec_settings",
        "consent_text", "instructions_text",
    ]
    out = {k: getattr(exp, k, None) for k in keys}
    out["created"] = exp.created.isoformat() if getattr(exp, "created", None) else None
    out["owner"] = exp.owner.get_username() if exp.owner_id else None
    return json.loads(json.dumps(out, default=str))


def export_experiment(experiment, out: str | os.PathLike, exclude_flagged: bool = False, force: bool = False,
                      progress: bool = False, chunk_size: int = 1000,
                      include_simulated: bool = False, on_progress: Progress | None = None) -> dict:
    """Write the dataset of ``experiment`` under ``out``; returns the manifest (also written).

    Raises ExportError (nothing written) for a non-empty ``out`` without ``force``. A missing or empty
    ``out`` is built in a folder next to it and renamed into place when complete, so a failure or a kill
    leaves ``out`` as it was; with ``force`` into a non-empty ``out`` the files are replaced in place. A
    symbolic link is followed (the export goes into the folder it names). ``on_progress(stage, done,
    total)`` is called as the export goes (background exports show it on the dashboard).
    """
    out = resolve_out(Path(out))
    check_out_dir(out, force)
    if out.is_dir() and any(out.iterdir()):
        _clear_previous(out, experiment.slug)
        return _export(experiment, out, exclude_flagged, progress, chunk_size, include_simulated, on_progress)
    tmp = _fresh_dir(out)
    try:
        manifest = _export(experiment, tmp, exclude_flagged, progress, chunk_size, include_simulated,
                           on_progress)
        os.rename(tmp, out)  # replaces an empty folder; atomic
    except OSError as exc:
        raise ExportError(f"{out}: cannot write the export ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _export(experiment, out: Path, exclude_flagged: bool, progress: bool, chunk_size: int,
            include_simulated: bool = False, on_progress: Progress | None = None) -> dict:
    w = _Writer(out)
    slug = experiment.slug
    with snapshot():
        qc = compute_qc(experiment)
        rules = qc_rules(experiment)
        excluded = {pid for pid, p in qc.items() if p.flagged} if exclude_flagged else set()
        simulated = simulated_ids(experiment)
        if not include_simulated:
            excluded |= simulated
        counts = analysis.trial_counts(experiment, excluded)
        erasures = Erasure.objects.filter(experiment=experiment)
        if not include_simulated:
            erasures = erasures.filter(simulated=False)
        erased = dict(erasures.order_by().values("kind").annotate(n=Count("id")).values_list("kind", "n"))

        # 1. BAPPS triplets, split by the reference's split, numbered per split in trial order.
        trials_csv = w.open_text("trials.csv")
        tw = csv.writer(trials_csv)
        tw.writerow(["split", "index", "trial", "reference_sha256", "stimulus_a", "stimulus_b", "judge", "n"])
        per_split: dict[str, int] = {}
        trials = (
            Trial.objects.filter(experiment=experiment, kind="normal", id__in=list(counts))
            .select_related("reference", "stimulus_a", "stimulus_b")
            .defer("stimulus_a__encoded", "stimulus_b__encoded")
            .order_by("reference__split", "id")
        )
        tell = on_progress or (lambda stage, done, total: None)
        tell("triplets", 0, len(counts))
        for k, t in enumerate(tqdm(trials.iterator(chunk_size=chunk_size), total=len(counts),
                                   disable=not progress, desc="triplets")):
            if k and k % 100 == 0:
                tell("triplets", k, len(counts))
            split = t.reference.split or "test"
            i = per_split.get(split, 0)
            per_split[split] = i + 1
            n, nb = counts[t.id]
            name = f"{i:06d}"
            write_triplet(w.write_bytes, f"{split}/{slug}", name, _png_bytes(t.reference.file),
                          _png_bytes(t.stimulus_a.decoded), _png_bytes(t.stimulus_b.decoded), nb / n, n)
            tw.writerow([split, name, t.id, t.reference.sha256, t.stimulus_a.public_id,
                         t.stimulus_b.public_id, f"{nb / n:.6f}", n])
        trials_csv.close()

        # 2. The raw judgment log, streamed row by row into CSV and JSONL.
        csv_f, jsonl_f = w.open_text("judgments.csv"), w.open_text("judgments.jsonl")
        cw = csv.DictWriter(csv_f, fieldnames=LOG_FIELDS)
        cw.writeheader()
        log = Judgment.objects.filter(trial__experiment=experiment)
        if excluded:
            log = log.exclude(assignment__participant_id__in=excluded)
        cols = [
            "id", "client_uuid", "assignment_id", "assignment__participant_id",
            "assignment__participant__platform", "assignment__participant__platform_id", "trial_id",
            "trial__kind", "item__position", "item__is_repeat",
            "item__is_practice", "trial__reference__sha256", "trial__stimulus_a_id", "trial__stimulus_b_id",
            "chosen_id", "chosen_side", "left_stimulus_id", "response_ms", "created", "client_created",
            "events",
        ]
        stim_cache: dict[int, tuple] = {}

        def stim(pk: int) -> tuple:
            if pk not in stim_cache:
                stim_cache[pk] = tuple(
                    Stimulus.objects.filter(pk=pk).values_list("public_id", "codec", "quality", "bpp").get()
                )
            return stim_cache[pk]

        n_log = 0
        n_total = log.count() if on_progress else 0
        tell("judgments", 0, n_total)
        min_ms = rules["min_response_ms"]
        for row in tqdm(log.order_by("id").values_list(*cols).iterator(chunk_size=chunk_size),
                        disable=not progress, desc="judgments"):
            r = dict(zip(cols, row))
            pid = r["assignment__participant_id"]
            pqc = qc.get(pid)
            sa, sb, left = stim(r["trial__stimulus_a_id"]), stim(r["trial__stimulus_b_id"]), stim(
                r["left_stimulus_id"])
            kind = "practice" if r["item__is_practice"] else r["trial__kind"]
            rec = {
                "judgment": str(r["client_uuid"]),
                "experiment": slug,
                "participant": opaque_id("participant", str(pid)),
                "platform": r["assignment__participant__platform"],
                "platform_id_hash": opaque_id("platform", f"{r['assignment__participant__platform']}:"
                                                          f"{r['assignment__participant__platform_id']}"),
                "assignment": opaque_id("assignment", str(r["assignment_id"])),
                "trial": r["trial_id"],
                "kind": kind,
                "position": r["item__position"],
                "is_repeat": bool(r["item__is_repeat"]),
                "reference_sha256": r["trial__reference__sha256"],
                "stimulus_a": str(sa[0]), "stimulus_a_codec": sa[1], "stimulus_a_quality": sa[2],
                "stimulus_a_bpp": sa[3],
                "stimulus_b": str(sb[0]), "stimulus_b_codec": sb[1], "stimulus_b_quality": sb[2],
                "stimulus_b_bpp": sb[3],
                "chosen": "a" if r["chosen_id"] == r["trial__stimulus_a_id"] else "b",
                "chosen_side": r["chosen_side"],
                "left_stimulus": str(left[0]),
                "response_ms": r["response_ms"],
                "fast": r["response_ms"] < min_ms,
                "server_time": r["created"].isoformat(),
                "client_time": r["client_created"].isoformat() if r["client_created"] else None,
                "qc_flagged": bool(pqc and pqc.flagged),
                "qc_reasons": "; ".join(pqc.reasons) if pqc else "",
            }
            events = r["events"] if isinstance(r["events"], dict) else {}
            rec.update({k: events.get(k) for k in VIEWING_FIELDS})
            cw.writerow(rec)
            jsonl_f.write(json.dumps(rec) + "\n")
            n_log += 1
            if n_log % chunk_size == 0:
                tell("judgments", n_log, n_total)
        csv_f.close()
        jsonl_f.close()

        # 3. JOD scales with their intervals (jod_scales), over the same judgments as the fractions.
        scale_summary = _write_scale(w, experiment, excluded)

        # 4. The manifest.
        codecs = sorted(
            {
                (c, v or "")
                for c, v in Stimulus.objects.filter(
                    id__in=Trial.objects.filter(experiment=experiment).values("stimulus_a_id")
                ).values_list("codec", "codec_version")
            }
            | {
                (c, v or "")
                for c, v in Stimulus.objects.filter(
                    id__in=Trial.objects.filter(experiment=experiment).values("stimulus_b_id")
                ).values_list("codec", "codec_version")
            }
        )
        manifest = {
            "format_version": FORMAT_VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "experiment": _experiment_settings(experiment),
            "codecs": [{"codec": c, "version": v} for c, v in codecs],
            "layout": "BAPPS 2AFC: <split>/<experiment>/{ref,p0,p1}/NNNNNN.png, judge/NNNNNN.npy = fraction "
                      "of judges preferring p1 (stimulus_b), judge_n/NNNNNN.npy = number of judgments",
            "include_simulated": include_simulated,
            "qc": {
                "rules": rules,
                "exclude_flagged": exclude_flagged,
                "flagged": [
                    {"participant": opaque_id("participant", str(pid)), "reasons": p.reasons,
                     "excluded": pid in excluded}
                    for pid, p in qc.items() if p.flagged
                ],
            },
            "counts": {
                "triplets": per_split,
                "triplets_total": sum(per_split.values()),
                "judgments_in_log": n_log,
                "judgments_in_triplets": int(sum(n for n, _ in counts.values())),
                "participants": len(qc),
                "participants_flagged": sum(p.flagged for p in qc.values()),
                "participants_excluded": len(excluded),
                "participants_simulated": len(simulated),
                "participants_withdrawn": erased.get(Erasure.WITHDRAWAL, 0),
                "participants_erased": erased.get(Erasure.ERASURE, 0),
            },
            "erasures": "participants_withdrawn withdrew on the judging page and participants_erased were "
                        "erased by a researcher before this export: nothing of theirs is in it. Exports "
                        "made before an erasure still hold that participant's judgments.",
            "scale": scale_summary,
            "files": dict(sorted(w.sha256.items())),
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return manifest


SCALE_FIELDS = ["level", "reference_sha256", "condition", "label", "bpp", "jod", "ci_low", "ci_high",
                "judgments"]


def _write_scale(w: _Writer, experiment, excluded: set[int]) -> dict:
    """``scale.csv`` (one row per setting and per stimulus) and ``scale.json`` (the same, with the method and
    any message saying why a scale is missing); returns the manifest's summary of them."""
    rows = jod_scales.judgment_rows(experiment, excluded)
    setting = jod_scales.per_setting(experiment, n_boot=jod_scales.EXPORT_BOOT, rows=rows)
    stimulus = jod_scales.per_stimulus(experiment, n_boot=jod_scales.EXPORT_BOOT, rows=rows)
    method = {"model": "Thurstone Case V, MAP with hierarchical N(0, τ²) prior, τ estimated (≤ 10)",
              "unit": "JOD (1 JOD = 75 % preference)",
              "gauge": "mean 0 per scale (settings: over all; stimuli: per reference)",
              "interval": "95 % equal-tailed posterior interval, importance sampling",
              "n_boot": jod_scales.EXPORT_BOOT,
              "judgments": jod_scales.TRIPLET_RULE, "mode": experiment.mode}
    f = w.open_text("scale.csv")
    cw = csv.writer(f)
    cw.writerow(SCALE_FIELDS)
    for r in setting["rows"]:
        cw.writerow(["setting", "", r["label"], r["label"], r["mean_bpp"], r["jod"], r["ci_low"],
                     r["ci_high"], r["judgments"]])
    for r in stimulus["rows"]:
        cw.writerow(["stimulus", r["reference_sha256"], r["stimulus"], r["label"], r["bpp"], r["jod"],
                     r["ci_low"], r["ci_high"], r["judgments"]])
    f.close()
    doc = {"method": method, "per_setting": setting["rows"], "per_setting_error": setting["error"],
           "per_stimulus": stimulus["rows"], "per_stimulus_errors": stimulus["errors"]}
    w.write_bytes("scale.json", (json.dumps(doc, indent=1, default=str) + "\n").encode())
    return {"files": ["scale.csv", "scale.json"], "method": method, "settings": len(setting["rows"]),
            "stimuli": len(stimulus["rows"]), "per_setting_error": setting["error"],
            "per_stimulus_errors": len(stimulus["errors"])}


def export_zip(experiment, exclude_flagged: bool = False, include_simulated: bool = False,
               zf=None, on_progress: Progress | None = None):
    """Build the export in a temp dir and zip it into ``zf`` (a binary file; default an anonymous temp
    file); returns it rewound. ``on_progress`` as for ``export_experiment``, then stage "zip".

    The caller owns (and closes) the returned binary file; the temp dir is removed before returning.
    """
    zf = tempfile.TemporaryFile(suffix=".zip") if zf is None else zf
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        export_experiment(experiment, tmp, exclude_flagged=exclude_flagged,
                          include_simulated=include_simulated, on_progress=on_progress)
        root = Path(tmp)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        with zipfile.ZipFile(zf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for k, path in enumerate(files):
                if on_progress and k % 200 == 0:
                    on_progress("zip", k, len(files))
                z.write(path, f"{experiment.slug}/{path.relative_to(root).as_posix()}")
    zf.seek(0)
    return zf
