"""The comparison graph: which conditions are connected through judged pairs."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from learning.scaling.data import Comparisons
from learning.scaling.errors import DisconnectedError


def groups(comp: Comparisons) -> list[list]:
    """Connected groups of conditions (largest first; conditions never judged are groups of one)."""
    n = comp.n
    adj = coo_matrix((np.ones(len(comp.winner)), (comp.winner, comp.loser)), shape=(n, n))
    k, label = connected_components(adj, directed=False)
    out = [[comp.conditions[i] for i in np.flatnonzero(label == g)] for g in range(k)]
    return sorted(out, key=len, reverse=True)


def require_connected(comp: Comparisons) -> None:
    """Raise ``DisconnectedError`` naming the conditions outside the largest group, if any."""
    g = groups(comp)
    if len(g) > 1:
        raise DisconnectedError(g)
