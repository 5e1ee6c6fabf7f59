"""Offset search rules against brute-force numpy in float64, the Speed baseline, and the
linear-memory search on long sequences."""

import tracemalloc

import numpy as np
import pytest

from sesyn_jax import baselines, offset_search
from sesyn_jax.offset_search import estimate_offset, search_offset


def brute_diagonal(u, v, mu, mv, lo, hi, need):
    u, v = u.astype(np.float64), v.astype(np.float64)
    out = []
    for d in range(lo, hi + 1):
        sims = [
            -np.sum((u[m] - v[m + d]) ** 2)
            for m in range(len(u))
            if 0 <= m + d < len(v) and mu[m] and mv[m + d]
        ]
        out.append(np.mean(sims) if len(sims) >= need else np.nan)
    return np.array(out)


@pytest.fixture
def shifted():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(260, 24)).astype(np.float32)
    return base[40:200] + 0.3 * rng.normal(size=(160, 24)).astype(np.float32), base[27:240]


def test_diagonal_scores_equal_brute_force(shifted):
    u, v = shifted  # u frame m = v frame m + 13
    rng = np.random.default_rng(2)
    mu, mv = rng.random(len(u)) > 0.2, rng.random(len(v)) > 0.1
    for max_offset, lo, hi in ((40, -40, 40), (None, -(len(u) - 1), len(v) - 1)):
        r = search_offset(u, v, mu, mv, rule="diagonal", max_offset=max_offset, min_overlap=30)
        want = brute_diagonal(u, v, mu, mv, lo, hi, 30)
        np.testing.assert_array_equal(r.lags, np.arange(lo, hi + 1))
        assert np.array_equal(np.isnan(r.scores), np.isnan(want))
        np.testing.assert_allclose(r.scores, want, rtol=2e-5, equal_nan=True)
        assert r.offset == 13 == int(r.lags[np.nanargmax(want)])
        assert r.confidence > 0.5
    # the fraction form: a quarter of the shorter sequence's real frames
    r = search_offset(u, v, mu, mv, rule="diagonal", min_overlap=0.25)
    need = int(np.ceil(0.25 * min(mu.sum(), mv.sum())))
    assert np.nanmin(np.where(np.isnan(r.scores), np.inf, r.overlap)) >= need


def test_banded_median_equals_brute_force(shifted):
    u, v = shifted
    mu = np.ones(len(u), bool)
    mv = np.ones(len(v), bool)
    mv[50:60] = False
    r = search_offset(u, v, mu, mv, rule="median", max_offset=20)
    ud, vd = u.astype(np.float64), v.astype(np.float64)
    votes = []
    for m in range(len(u)):
        cand = [n for n in range(max(0, m - 20), min(len(v), m + 21)) if mv[n]]
        votes.append(cand[int(np.argmin([np.sum((ud[m] - vd[n]) ** 2) for n in cand]))] - m)
    assert r.offset == int(np.floor(np.median(votes))) == 13
    assert r.confidence == pytest.approx(np.mean(np.abs(np.array(votes) - 13) <= 2))
    # without max_offset: the published rule, unchanged
    assert search_offset(u, v).offset == estimate_offset(u, v) == 13


def test_subframe_on_a_smooth_signal():
    t = np.arange(400, dtype=np.float64)
    freqs = np.array([0.013, 0.021, 0.034, 0.05, 0.071])
    signal = lambda s: np.stack([np.sin(2 * np.pi * f * s + k) for k, f in enumerate(freqs)], 1)
    for shift in (3.4, -7.75, 0.45, 12.1):
        u = signal(t[50:300])
        v = signal(t[50:300] - shift)  # u frame m = v frame m + shift
        got = estimate_offset(u, v, rule="diagonal", max_offset=30, subframe=True)
        assert isinstance(got, float) and abs(got - shift) < 0.2
        assert estimate_offset(u, v, rule="diagonal", max_offset=30) == round(shift)


def test_confidence_high_for_one_peak_low_for_two():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(300, 8))
    one = search_offset(base[20:220], base[0:260], rule="diagonal", max_offset=60)
    assert one.offset == 20 and one.confidence > 0.9
    period = rng.normal(size=(25, 8))
    rep = np.tile(period, (12, 1))  # periodic: every 25 frames look the same
    two = search_offset(rep[5:205], rep[0:260], rule="diagonal", max_offset=40)
    assert two.confidence < 0.05


def test_lag_sums_and_errors():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=37), rng.normal(size=52)
    want = [sum(x[m] * y[m + d] for m in range(37) if 0 <= m + d < 52) for d in range(-36, 52)]
    np.testing.assert_allclose(offset_search.lag_sums(x, y, -36, 51), want, atol=1e-10)
    with pytest.raises(ValueError, match="rule"):
        search_offset(x[:, None], y[:, None], rule="mean")
    with pytest.raises(ValueError, match="min_overlap"):
        search_offset(x[:, None], y[:, None], rule="diagonal", min_overlap=2.5)
    with pytest.raises(ValueError, match="enough frames"):
        search_offset(x[:, None], y[:, None], rule="diagonal", min_overlap=500)


def test_long_sequences_exact_in_linear_memory():
    """50,000 frames: the M x N similarity matrix would be 10 GB of float32; the search must
    stay within a few blocks (tracemalloc counts numpy's allocations)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((50_400, 32), dtype=np.float32)
    u, v = base[137:50_137], base[:50_000]
    tracemalloc.start()
    r = search_offset(u, v, rule="diagonal", max_offset=400)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.offset == 137 and r.confidence > 0.9
    assert peak < 64 * 2**20
    assert search_offset(u, v, rule="median", max_offset=400).offset == 137


def brute_pearson(a, ma, b, mb, lo, hi, need):
    out = []
    for d in range(lo, hi + 1):
        idx = [m for m in range(len(a)) if 0 <= m + d < len(b) and ma[m] and mb[m + d]]
        if len(idx) < need:
            out.append(np.nan)
            continue
        x, y = a[idx], b[np.array(idx) + d]
        out.append(np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else np.nan)
    return np.array(out)


def test_speed_baseline_against_numpy():
    rng = np.random.default_rng(6)
    t = np.arange(260)
    walk = np.cumsum(rng.normal(size=(260, 17)), 0)  # vertical positions per joint
    poses = np.zeros((260, 17, 3))
    poses[..., 0] = rng.random((260, 17))
    poses[..., 1] = walk * 0.01 + 0.1 * np.sin(t / 9.0)[:, None]
    poses[..., 2] = (rng.random((260, 17)) > 0.1).astype(float)
    u, v = poses[30:200], poses[12:240].copy()  # u frame m = v frame m + 18
    v[..., 1] = 2.0 * v[..., 1] + 0.3  # another camera's scale
    speed, mask = baselines.speed_signal(u)
    seen = u[..., 2] > 0
    for f in (1, 50, 169):
        both = seen[f] & seen[f - 1]
        assert speed[f] == pytest.approx(np.mean(np.abs(u[f, both, 1] - u[f - 1, both, 1])))
    assert not mask[0]
    r = baselines.speed_search(u, v, max_offset=40, min_overlap=40)
    a, ma = baselines.speed_signal(u)
    b, mb = baselines.speed_signal(v)
    want = brute_pearson(a, ma, b, mb, -40, 40, 40)
    np.testing.assert_allclose(r.scores, want, atol=1e-9, equal_nan=True)
    assert r.offset == 18


def test_device_search_equals_the_host_search_on_every_rule():
    """``device_offset`` (jitted, vmapped over padded pairs with masks) finds the offsets
    ``search_offset`` finds on the unpadded frames, for both rules, with and without a band."""
    import jax

    from sesyn_jax.offset_search import device_offset, lag_range, resolve_min_overlap

    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(size=(300, 6)), axis=0).astype(np.float32)
    t = 96
    cases = [(10, 70, 20, 85), (40, 90, 30, 60), (0, 80, 25, 96), (5, 50, 0, 70)]
    f_u = np.zeros((len(cases), t, 6), np.float32)
    f_v = np.zeros_like(f_u)
    m_u = np.zeros((len(cases), t), bool)
    m_v = np.zeros_like(m_u)
    for i, (a, na, b, nb) in enumerate(cases):
        f_u[i, :na] = walk[a : a + na] + 0.3 * rng.normal(size=(na, 6))
        f_v[i, :nb] = walk[b : b + nb] + 0.3 * rng.normal(size=(nb, 6))
        m_u[i, :na], m_v[i, :nb] = True, True
    for rule, max_offset in (
        ("median", None),
        ("median", 30),
        ("diagonal", 30),
        ("diagonal", None),
    ):
        lags = None
        if rule == "diagonal" or max_offset is not None:
            lo, hi = lag_range(t, t, max_offset)
            lags = np.arange(lo, hi + 1)
        need = np.array([resolve_min_overlap(0.5, u.sum(), v.sum()) for u, v in zip(m_u, m_v)])
        one = lambda *a: device_offset(*a, rule=rule, lags=lags)
        got = np.asarray(jax.jit(jax.vmap(one))(f_u, f_v, m_u, m_v, need))
        want = [
            search_offset(
                f_u[i], f_v[i], m_u[i], m_v[i], rule=rule, max_offset=max_offset, min_overlap=0.5
            ).offset
            for i in range(len(cases))
        ]
        assert got.tolist() == want, (rule, max_offset)
    assert sorted(set(want)) == sorted(want)  # distinct offsets: the cases tell rules apart
