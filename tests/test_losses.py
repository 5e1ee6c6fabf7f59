"""Losses against a float64 numpy transcription of the paper's Eq. 1-12, as the published code
computes them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesyn_jax import losses


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_sim(a, b):
    d = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return -np.maximum(d, 0)


def np_sesyn(fu, fv, mu1, mu2, tau=1):
    """Eq. 1-12, float64, unpadded, 0-based indices."""
    fu = fu.astype(np.float64)
    fv = fv.astype(np.float64)
    m = fu.shape[0]
    x = np_softmax(np_sim(fu, fv))
    fvt = x @ fv
    s = np_sim(fvt, fu)
    logp = s - s.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    iden = -np.mean([logp[i, i] for i in range(m)])
    g = np.arange(m, dtype=np.float64)
    p = np_softmax(s) @ g
    devi = np.mean(np.abs(p - g))
    intv = np.mean([abs(p[i] - p[i - tau] - tau) for i in range(tau, m)])
    return iden + mu1 * devi + mu2 * intv, dict(identity=iden, deviation=devi, interval=intv)


def make_pair(seed, m, n, c=12, scale=0.4):
    rng = np.random.default_rng(seed)
    # Smooth trajectories so that the terms are in a non-trivial regime.
    t = np.arange(max(m, n))[:, None]
    base = np.sin(t * rng.uniform(0.05, 0.3, c) + rng.uniform(0, 6, c))
    fu = base[:m] + scale * rng.normal(size=(m, c))
    fv = base[3 : 3 + n] if n + 3 <= len(base) else base[:n]
    fv = fv + scale * rng.normal(size=fv.shape)
    return fu.astype(np.float32), fv.astype(np.float32)


@pytest.mark.parametrize("m,n,tau", [(20, 25, 1), (17, 12, 1), (30, 30, 3)])
def test_unpadded_matches_numpy(m, n, tau):
    fu, fv = make_pair(m * n, m, n)
    ref, ref_aux = np_sesyn(fu, fv, 0.5, 0.035, tau)
    loss, aux = losses.sesyn_loss(jnp.asarray(fu), jnp.asarray(fv), mu1=0.5, mu2=0.035, tau=tau)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    for k, v in ref_aux.items():
        np.testing.assert_allclose(float(aux[k]), v, rtol=1e-5, atol=1e-6)
    # Non-trivial regime: every term is clearly non-zero.
    assert min(ref_aux.values()) > 1e-3


def pad(x, length, fill):
    out = np.full((length,) + x.shape[1:], fill, x.dtype)
    out[: len(x)] = x
    mask = np.zeros(length, bool)
    mask[: len(x)] = True
    return out, mask


def test_padded_equals_unpadded_loss_and_gradients():
    fu, fv = make_pair(7, 19, 23)
    ref, _ = np_sesyn(fu, fv, 0.7, 0.015)
    pu, mu = pad(fu, 32, 5.0)  # garbage in padded frames must not matter
    pv, mv = pad(fv, 32, -3.0)
    kw = dict(mu1=0.7, mu2=0.015)

    def f_unpadded(a, b):
        return losses.sesyn_loss(a, b, **kw)[0]

    def f_padded(a, b):
        return losses.sesyn_loss(a, b, jnp.asarray(mu), jnp.asarray(mv), **kw)[0]

    l0, (gu0, gv0) = jax.value_and_grad(f_unpadded, argnums=(0, 1))(
        jnp.asarray(fu), jnp.asarray(fv)
    )
    l1, (gu1, gv1) = jax.value_and_grad(f_padded, argnums=(0, 1))(jnp.asarray(pu), jnp.asarray(pv))
    np.testing.assert_allclose(float(l1), ref, rtol=1e-5)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gu1)[:19], np.asarray(gu0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gv1)[:23], np.asarray(gv0), rtol=1e-4, atol=1e-7)
    assert np.all(np.asarray(gu1)[19:] == 0) and np.all(np.asarray(gv1)[23:] == 0)
    assert np.all(np.isfinite(np.asarray(gu1)))


def test_gradient_matches_numpy_finite_differences():
    """The JAX gradient in float64 against central differences of the numpy transcription."""
    fu, fv = make_pair(3, 8, 9, c=4)
    with jax.enable_x64(True):
        g = jax.grad(
            lambda a: losses.sesyn_loss(a, jnp.asarray(fv, jnp.float64), mu1=0.5, mu2=0.035)[0]
        )(jnp.asarray(fu, jnp.float64))
        g = np.asarray(g)
    fu64 = fu.astype(np.float64)
    eps = 1e-6
    num = np.zeros_like(fu64)
    for idx in np.ndindex(*fu64.shape):
        d = np.zeros_like(fu64)
        d[idx] = eps
        num[idx] = (
            np_sesyn(fu64 + d, fv, 0.5, 0.035)[0] - np_sesyn(fu64 - d, fv, 0.5, 0.035)[0]
        ) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


def test_batched_vmapped_matches_per_pair():
    pairs = [make_pair(s, m, n) for s, (m, n) in enumerate([(20, 16), (12, 24), (24, 24)])]
    fu = np.stack([pad(a, 24, 0.0)[0] for a, _ in pairs])
    mu = np.stack([pad(a, 24, 0.0)[1] for a, _ in pairs])
    fv = np.stack([pad(b, 24, 0.0)[0] for _, b in pairs])
    mv = np.stack([pad(b, 24, 0.0)[1] for _, b in pairs])
    loss, aux = losses.batched_sesyn_loss(fu, fv, mu, mv, mu1=0.5, mu2=0.035)
    refs = [np_sesyn(a, b, 0.5, 0.035) for a, b in pairs]
    np.testing.assert_allclose(float(loss), np.mean([r[0] for r in refs]), rtol=1e-5)
    np.testing.assert_allclose(
        float(aux["interval"]), np.mean([r[1]["interval"] for r in refs]), rtol=1e-5
    )


def test_variant_is_one_function_and_one_config_line():
    @losses.register_term("test_only_mean_sq")
    def _mean_sq(f_u, f_v, mask_u=None, mask_v=None, scale=1.0):
        return scale * jnp.mean(f_u**2)

    try:
        fn = losses.make_loss_fn(
            {"identity": 1.0, "test_only_mean_sq": 2.0}, {"test_only_mean_sq": {"scale": 3.0}}
        )
        fu, fv = make_pair(1, 10, 10)
        loss, aux = fn(jnp.asarray(fu), jnp.asarray(fv))
        _, ref_aux = np_sesyn(fu, fv, 0, 0)
        np.testing.assert_allclose(
            float(aux["test_only_mean_sq"]), 3 * np.mean(fu.astype(np.float64) ** 2), rtol=1e-5
        )
        np.testing.assert_allclose(
            float(loss), ref_aux["identity"] + 6 * np.mean(fu.astype(np.float64) ** 2), rtol=1e-5
        )
    finally:
        del losses.LOSS_TERMS["test_only_mean_sq"]
    with pytest.raises(ValueError, match="unknown loss term"):
        losses.make_loss_fn({"identiy": 1.0})


def np_aligned(fu, fv, mask_u, mask_v, offset, sigma=1.0, temperature=0.1):
    """The cross-view contrastive term, float64, frame by frame: for every real frame m of u
    whose partner m + offset is a real frame of v, the cross-entropy of the softmax over v's
    real frames of -|f_u[m] - f_v[n]|^2 / (C * temperature) against a Gaussian of width sigma
    around m + offset (normalized over v's real frames); the same from v to u; averaged."""

    def one_way(a, b, ma, mb, d):
        c = a.shape[1]
        terms = []
        for m in range(len(a)):
            t = m + d
            if not ma[m] or not (0 <= round(t) < len(b)) or not mb[round(t)]:
                continue
            cols = np.flatnonzero(mb)
            s = np.array([-np.sum((a[m] - b[n]) ** 2) / c / temperature for n in cols])
            logp = s - s.max() - np.log(np.exp(s - s.max()).sum())
            q = np.exp(-((cols - t) ** 2) / (2 * sigma**2))
            q /= q.sum()
            terms.append(-np.sum(q * logp))
        return np.mean(terms)

    fu, fv = fu.astype(np.float64), fv.astype(np.float64)
    return 0.5 * (
        one_way(fu, fv, mask_u, mask_v, offset) + one_way(fv, fu, mask_v, mask_u, -offset)
    )


@pytest.mark.parametrize("offset", [0, 4, -6])
def test_aligned_term_matches_numpy(offset):
    fu, fv = make_pair(7, 22, 27)
    mask_u = np.arange(22) < 19
    mask_v = np.arange(27) >= 2
    opts = dict(similarity="l2", scale_by_dim=True, temperature=0.1)
    got = losses.aligned_loss(
        jnp.asarray(fu),
        jnp.asarray(fv),
        jnp.asarray(mask_u),
        jnp.asarray(mask_v),
        offset=float(offset),
        **opts,
    )
    want = np_aligned(fu, fv, mask_u, mask_v, offset)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    # through make_loss_fn, which hands each pair's offset to the term
    fn = losses.make_loss_fn({"aligned": 1.0}, {"aligned": opts})
    assert fn.needs_offset
    total, aux = fn(jnp.asarray(fu), jnp.asarray(fv), mask_u, mask_v, float(offset))
    np.testing.assert_allclose(float(total), want, rtol=1e-5)
    with pytest.raises(ValueError, match="known offsets"):
        fn(jnp.asarray(fu), jnp.asarray(fv), mask_u, mask_v)


def test_every_dot_general_of_the_lowered_loss_and_its_gradient_asks_for_highest():
    """On TPU and recent GPUs the default matmul precision is one bfloat16 pass or TF32; the
    loss's |a|^2 + |b|^2 - 2ab cancels, so every product in it must ask for HIGHEST."""
    import re

    from sesyn_jax.losses import batched_sesyn_loss, make_loss_fn

    f_u = jnp.zeros((2, 12, 34), jnp.float32)
    f_v = jnp.zeros((2, 10, 34), jnp.float32)
    mask_u, mask_v = jnp.ones((2, 12), bool), jnp.ones((2, 10), bool)
    published = lambda a, b: batched_sesyn_loss(a, b, mask_u, mask_v, mu1=0.5, mu2=0.035)[0]
    every = make_loss_fn(
        {"identity": 1.0, "deviation": 0.5, "interval": 0.1, "tcc_reg": 0.1},
        {"identity": {"similarity": "cosine"}},
    )
    aligned = make_loss_fn({"aligned": 1.0})
    fns = {
        "published": published,
        "published, gradient": jax.grad(published, argnums=(0, 1)),
        "every term": lambda a, b: every(a[0], b[0], mask_u[0], mask_v[0])[0],
        "aligned, gradient": jax.grad(
            lambda a, b: aligned(a[0], b[0], mask_u[0], mask_v[0], offset=2.0)[0], (0, 1)
        ),
    }
    for name, fn in fns.items():
        text = jax.jit(fn).lower(f_u, f_v).as_text()
        dots = [line for line in text.splitlines() if "dot_general" in line]
        assert dots, name
        for line in dots:
            assert re.search(r"precision = \[HIGHEST, HIGHEST\]", line), f"{name}: {line.strip()}"
