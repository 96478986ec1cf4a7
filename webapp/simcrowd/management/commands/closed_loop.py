"""``python manage.py closed_loop [--small] [--out DIR] [--seed N] [--keep] [--device D] [--observer O]
[--base shared|train|PATH] [--amp auto|off|bf16]``: the closed loop
(``webapp/simcrowd/loop``) on a scratch PostgreSQL database beside DATABASE_URL's and a scratch MEDIA_ROOT
under ``--out``; ``report.json`` and ``closed_loop.png``/``.svg`` in ``--out``."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from learning.device import AMP_MODES, resolve_device
from learning.errors import LearningError
from webapp.simcrowd.loop.config import ALEX, KODAK, LoopConfig
from webapp.simcrowd.loop.scratch import SCRATCH_ENV, run_on_scratch
from webapp.simcrowd.loop.stages import run


class Command(BaseCommand):
    help = ("The closed loop: judgments by a simulated crowd -> export -> fit -> codecs trained with the "
            "fitted DPL -> a second study that says whether the new codec is better; on a scratch "
            "PostgreSQL database beside DATABASE_URL's (dropped at the end unless --keep).")

    def add_arguments(self, parser):
        parser.add_argument("--out", default="var/loop", help="report, plot and the scratch work folder")
        parser.add_argument("--small", action="store_true", help="the reduced CI version")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--keep", action="store_true", help="keep the scratch database")
        parser.add_argument("--observer", default="out-of-family",
                            help="the hidden observer: out-of-family (default: 0.5·LPIPS-vgg + "
                                 "0.3·CIEDE2000 + 0.2·MS-SSIM, outside the fitted family), alex-lin "
                                 "(LPIPS-alex lin weights × exp(σ·N(0,1)), the fitted family), or a "
                                 "simulate_crowd observer spec")
        parser.add_argument("--base", default="shared",
                            help="shared: fine-tune the base codec of ../shared/data/codecs (default); "
                                 "a train-codec checkpoint PATH: fine-tune that one; train: train a small "
                                 "base from random weights first")
        parser.add_argument("--amp", default="auto", choices=AMP_MODES,
                            help="train-codec --amp for the codec training (default auto: bf16 on CUDA or a "
                                 "CPU with AMX)")
        parser.add_argument("--device", default="cpu",
                            help="auto | cpu | cuda[:N] | mps: fit, score, observers and codec training "
                                 "(default cpu)")

    def handle(self, *args, **o):
        scratch = os.environ.get(SCRATCH_ENV)
        if scratch is None:  # the site's process: make the scratch database and run the stages on it
            LoopConfig(base=o["base"]).check_base()
            if not (ALEX.is_file() and KODAK.is_dir()):
                raise CommandError(f"needs {ALEX} and {KODAK} (../shared)")
            out = Path(o["out"]).resolve()
            if o["base"] not in ("shared", "train"):  # the child runs elsewhere: pass an absolute path
                o["base"] = str(Path(o["base"]).resolve())
            argv = ["--out", str(out), "--seed", str(o["seed"]), "--device", o["device"], "--observer",
                    o["observer"], "--base", o["base"], "--amp", o["amp"]]
            argv += ["--small"] if o["small"] else []
            code = run_on_scratch(connection, argv, out / "work" / "media", o["keep"])
            if code:
                raise CommandError(f"the closed loop stopped (exit {code})", returncode=code)
            return
        if connection.settings_dict["NAME"] != scratch:
            raise CommandError(f"{SCRATCH_ENV}={scratch} but DATABASE_URL names another database: the stages "
                               "run only on the scratch database")
        try:
            device = resolve_device(o["device"])
        except LearningError as exc:
            raise CommandError(str(exc)) from None
        cfg = LoopConfig.small() if o["small"] else LoopConfig()
        cfg.seed, cfg.device, cfg.observer = o["seed"], str(device), o["observer"]
        cfg.base, cfg.amp = o["base"], o["amp"]
        run(cfg, Path(o["out"]))
