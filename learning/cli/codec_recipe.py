"""``python -m learning codec-recipe``: the learned-codec training recipe (an MSE base model, MSE and DPL
fine-tunes per λ, the R–D table; ``learning.training.recipe``)."""

from __future__ import annotations

import argparse

from learning.data.shared import KODAK_DIR
from learning.device import AMP_MODES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("codec-recipe", help="train the learned codecs of bench/README.md (base, MSE "
                              "and DPL fine-tunes, R-D)", description=__doc__)
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--test", default=str(KODAK_DIR), help="rd images (folder)")
    p.add_argument("--test-glob", default="kodim1[7-9].png,kodim2[0-4].png")
    p.add_argument("--out", required=True)
    p.add_argument("--arch", default="bmshj2018-hyperprior")
    p.add_argument("--N", type=int, default=96)
    p.add_argument("--M", type=int, default=128)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--base-steps", type=int, default=6000)
    p.add_argument("--base-lmbda", type=float, default=0.013,
                   help="the highest λ of --lmbdas (learning/training/recipe.py says why)")
    p.add_argument("--base-lr", type=float, default=1e-3)
    p.add_argument("--base-init", default=None,
                   help="start the base from this train-codec checkpoint (weights only) instead of random")
    p.add_argument("--amp", default="auto", choices=AMP_MODES, help="train-codec --amp for every run")
    p.add_argument("--lmbdas", default="0.0018,0.0035,0.0067,0.013")
    p.add_argument("--ft-steps", type=int, default=1500)
    p.add_argument("--ft-lr", type=float, default=3e-4)
    p.add_argument("--dpl-steps", type=int, default=300)
    p.add_argument("--dpl-scale", type=float, default=800.0, help="λ_dpl = λ_mse · scale")
    p.add_argument("--val-every", type=int, default=400)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--stages", default="base,mse,dpl,rd", help="comma list of the stages to run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here: the recipe loads torch and the DPL, which the other commands' parsers do not need
    from learning.training import recipe

    return recipe.run(args)
