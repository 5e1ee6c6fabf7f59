"""More than two recordings: one offset per recording against the first, fitted robustly to
every pairwise offset, and the recordings that agree with none of the others."""

from __future__ import annotations

import numpy as np

from sesyn_jax.sync.errors import CannotSync
from sesyn_jax.sync.search import AGREE_WITHIN, LOW_CONFIDENCE, PairResult


def fit_offsets(
    n: int,
    pairs: list[tuple[int, int, float, float]],
    iters: int = 20,
    huber: float = 2.0,
    tukey: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets t (n,) with t[0] = 0 from pairwise (i, j, d_ij, weight), d_ij ~ t_j - t_i, by
    iteratively reweighted least squares: Huber weights first (a convex start), then Tukey's
    biweight, which gives a pair off by more than ``tukey`` frames no weight at all. Returns
    (t, residuals per pair). CannotSync when the pairs do not connect every recording."""
    _check_connected(n, [(p[0], p[1]) for p in pairs])
    rows = len(pairs)
    a = np.zeros((rows, n))
    d = np.array([p[2] for p in pairs], np.float64)
    w0 = np.array([max(p[3], 1e-3) for p in pairs], np.float64)
    for r, (i, j, _, _) in enumerate(pairs):
        a[r, i], a[r, j] = -1.0, 1.0
    a = a[:, 1:]  # t_0 = 0
    w = w0.copy()
    t = np.zeros(n - 1)
    for it in range(iters):
        sw = np.sqrt(w)
        t, *_ = np.linalg.lstsq(a * sw[:, None], d * sw, rcond=None)
        r = np.abs(d - a @ t)
        if it < iters // 2:
            w = w0 * np.where(r <= huber, 1.0, huber / np.maximum(r, 1e-9))
        else:
            tw = np.where(r < tukey, (1 - (r / tukey) ** 2) ** 2, 0.0)
            if np.linalg.matrix_rank(a[tw > 0]) < a.shape[1]:
                break  # too few trusted pairs to pin every view: keep the Huber fit
            w = w0 * tw
    full = np.concatenate([[0.0], t])
    return full, d - a @ t


def _check_connected(n: int, edges: list[tuple[int, int]]) -> None:
    reach, todo = {0}, [0]
    while todo:
        k = todo.pop()
        for i, j in edges:
            for x, y in ((i, j), (j, i)):
                if x == k and y not in reach:
                    reach.add(y)
                    todo.append(y)
    if len(reach) < n:
        missing = sorted(set(range(n)) - reach)
        raise CannotSync(
            f"recordings {missing} (0 = the first) could not be matched with the others; "
            f"no offset can be given for them"
        )


def fit_views(results: list[PairResult], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The robust fit of every recording's offset (model frames, the first at 0) to the pair
    results, and each pair's residual."""
    idx = {n: i for i, n in enumerate(names)}
    return fit_offsets(len(names), [(idx[r.a], idx[r.b], r.offset, r.confidence) for r in results])


def outliers(results: list[PairResult], resid: np.ndarray, names: list[str]) -> list[str]:
    """Recordings (never the first) whose every pair has a large residual or a low confidence:
    they agree with none of the others."""
    out = []
    for k, n in enumerate(names):
        mine = [(r, e) for r, e in zip(results, resid) if n in (r.a, r.b)]
        if (
            k
            and mine
            and all(abs(e) > 2 * AGREE_WITHIN or r.confidence < LOW_CONFIDENCE for r, e in mine)
        ):
            out.append(n)
    return out
