"""learning.scaling.bootstrap.refit: all bootstrap resamples fitted at once == each by thurstone.fit."""

from __future__ import annotations

import numpy as np
import pytest

from learning.scaling import comparisons, thurstone
from learning.scaling.bootstrap import participant_weights, refit


def _rows(n_cond: int, n_part: int, per: int, seed: int, unanimous: bool = False) -> list:
    rng = np.random.default_rng(seed)
    q = np.linspace(-2, 2, n_cond)
    rows = []
    for p in range(n_part):
        for _ in range(per):
            a, b = rng.choice(n_cond, 2, replace=False)
            if unanimous:  # a condition that always wins and one that always loses
                win = max(a, b)
            else:
                win = a if rng.random() < thurstone.jod_to_prob(q[a] - q[b]) else b
            rows.append((p, int(a), int(b), int(win)))
    return rows


@pytest.mark.parametrize("n_cond, n_part, per, unanimous, prior_sd", [
    (2, 3, 4, False, 10.0), (5, 12, 20, False, 10.0), (9, 30, 15, False, 3.0), (6, 8, 10, True, 10.0),
    (4, 5, 6, True, 1e4),
])
def test_refit_matches_one_fit_per_resample(n_cond, n_part, per, unanimous, prior_sd):
    comp = comparisons(_rows(n_cond, n_part, per, seed=n_cond, unanimous=unanimous), conditions=range(n_cond))
    q = thurstone.fit(comp.wins(), prior_sd)
    w = participant_weights(len(comp.participants), 60, seed=3)
    serial = np.array([thurstone.fit(comp.wins(x.astype(float)), prior_sd, init=q) for x in w])
    batched = refit(comp, q, w, prior_sd, chunk=25)  # several chunks
    np.testing.assert_allclose(batched, serial, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_solve_spd_matches_numpy(n):
    from learning.scaling.bootstrap import solve_spd

    rng = np.random.default_rng(n)
    m = rng.normal(size=(30, n, n))
    a = m @ m.transpose(0, 2, 1) + 0.01 * np.eye(n)
    b = rng.normal(size=(30, n))
    want = np.linalg.solve(a, b[..., None])[..., 0]
    np.testing.assert_allclose(solve_spd(a, b), want, rtol=1e-7, atol=1e-9)
