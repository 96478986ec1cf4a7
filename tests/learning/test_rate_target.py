"""``--target-bpp``: λ steered towards a training rate; resumes exactly; bad targets are clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from learning import checkpoint
from learning.__main__ import main
from learning.errors import LearningError
from learning.training.loop import log_path
from learning.training.steered_lambda import GAIN, SPAN, Lambda
from tests.learning.test_train_codec import common, data  # noqa: F401  (the fixture)

torch.set_num_threads(2)


def test_lambda_moves_against_the_rate_error():
    lam = Lambda(0.01, target=0.5)
    assert lam.update(1.0) < 0.01  # rate above target: less weight on distortion
    down = lam.value
    assert math.isclose(down, 0.01 * math.exp(-GAIN * math.log(2)))
    assert lam.update(0.25) > down
    assert Lambda(0.01).update(5.0) == 0.01  # not steered: constant
    far = Lambda(0.01, target=1e-9)
    for _ in range(100000):
        far.update(1.0)
    assert math.isclose(far.value, 0.01 / SPAN)  # an unreachable target stops at the bound
    again = Lambda(0.01, target=0.5)
    again.load_state_dict(lam.state_dict())
    assert again.value == lam.value
    other = Lambda(0.01, target=0.7)
    other.load_state_dict(lam.state_dict())  # another target starts from --lmbda
    assert other.value == 0.01


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_target_is_an_error(bad):
    with pytest.raises(LearningError, match="--target-bpp"):
        Lambda(0.01, target=bad)


def _records(out) -> list[dict]:
    return [r for r in json.loads(log_path(out).read_text()) if "loss" in r]


def test_steered_runs_separate_by_target_and_resume_exactly(data, tmp_path, capsys):  # noqa: F811
    runs = {}
    for target in (0.3, 3.0):
        out = tmp_path / f"t{target}.pt"
        assert main(common(data, out, "--steps", "80", "--loss", "mse", "--log-every", "20",
                           "--target-bpp", str(target))) == 0
        runs[target] = _records(out)
    low, high = runs[0.3], runs[3.0]
    # λ went down for the low target and up for the high one, and the rates followed
    assert low[-1]["lmbda"] < 0.01 < high[-1]["lmbda"]
    assert low[-1]["bpp"] < high[-1]["bpp"]
    assert {r["target_bpp"] for r in low} == {0.3}
    # resume halfway: λ comes back from the checkpoint, so the run ends where the unbroken one did
    part = tmp_path / "part.pt"
    assert main(common(data, part, "--steps", "40", "--loss", "mse", "--log-every", "20",
                       "--target-bpp", "0.3")) == 0
    assert main(common(data, part, "--steps", "80", "--loss", "mse", "--log-every", "20",
                       "--target-bpp", "0.3", "--resume")) == 0
    a, b = checkpoint.load(tmp_path / "t0.3.pt"), checkpoint.load(part)
    assert a["lmbda"] == b["lmbda"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    capsys.readouterr()
    assert main(common(data, tmp_path / "bad.pt", "--steps", "2", "--target-bpp", "-1")) == 2
    assert "--target-bpp" in capsys.readouterr().err
    assert not (tmp_path / "bad.pt").exists()
