"""The SeSyn-Net self-supervised losses (paper Eq. 1-12), for one pair and for padded batches.

For one pair of embedded sequences f_u (M, C) and f_v (N, C), with 0-based frame indices:

  S_uv(m, n)   = -max(|f_u[m]|^2 + |f_v[n]|^2 - 2 f_u[m].f_v[n], 0)     (Eq. 1-2)
  X_uv         = row-softmax(S_uv);  f_v~ = X_uv f_v  (M, C)              (Eq. 3-4)
  S_v~u(m', m) = -||f_v~[m'] - f_u[m]||^2 (same clamp)  (M, M)            (Eq. 5)
  identity     = mean_m CE(S_v~u[m, :], m)                                 (Eq. 6-7)
  p_m          = sum_j softmax(S_v~u[m, :])_j * j                          (Eq. 8-9)
  deviation    = mean_m |p_m - m|                                          (Eq. 10)
  interval     = mean_{m >= tau} |(p_m - p_{m - tau}) - tau|               (Eq. 11)
  loss         = identity + mu1 * deviation + mu2 * interval               (Eq. 12)

The published training calls this with u = view 2 and v = view 1.

Masks (bool, True on real frames) describe padding at the END of a sequence. Padded frames of v
get zero weight in the softmax over v; padded frames of u are left out of the columns of
S_v~u and of every mean, so a padded pair gives exactly the loss of the same pair unpadded.

Every term is a function ``term(f_u, f_v, mask_u, mask_v, **options) -> scalar`` registered in
``LOSS_TERMS``; a total is assembled from a mapping term name -> weight (``make_loss_fn``). Terms
recompute the shared cycle similarity; under ``jax.jit`` XLA merges the common subexpressions.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

Array = jax.Array
LossTerm = Callable[..., Array]
LOSS_TERMS: dict[str, LossTerm] = {}


def register_term(name: str) -> Callable[[LossTerm], LossTerm]:
    """Decorator: make a loss term selectable by ``name`` in a loss config."""

    def wrap(fn: LossTerm) -> LossTerm:
        if name in LOSS_TERMS:
            raise ValueError(f"loss term {name!r} is already registered")
        LOSS_TERMS[name] = fn
        return fn

    return wrap


def _full_mask(f: Array, mask: Array | None) -> Array:
    return jnp.ones(f.shape[0], bool) if mask is None else mask.astype(bool)


def l2_similarity(a: Array, b: Array) -> Array:
    """-squared Euclidean distance (M, N) between rows of a (M, C) and b (N, C), computed as
    |a|^2 + |b|^2 - 2ab and clamped at 0 like the published code."""
    sq = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T)
    return -jnp.maximum(sq, 0.0)


def masked_softmax(logits: Array, col_mask: Array) -> Array:
    """Softmax over the last axis, with zero weight on columns where ``col_mask`` is False."""
    z = jnp.where(col_mask, logits, -jnp.inf)
    z_max = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    e = jnp.where(col_mask, jnp.exp(z - z_max), 0.0)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def masked_log_softmax(logits: Array, col_mask: Array) -> Array:
    z = jnp.where(col_mask, logits, -jnp.inf)
    z_max = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    shifted = jnp.where(col_mask, z - z_max, 0.0)
    lse = jnp.log(jnp.sum(jnp.where(col_mask, jnp.exp(shifted), 0.0), axis=-1, keepdims=True))
    return shifted - lse


def masked_mean(x: Array, mask: Array) -> Array:
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def cycle_similarity(f_u: Array, f_v: Array, mask_u: Array | None = None,
                     mask_v: Array | None = None) -> tuple[Array, Array]:
    """S_v~u (M, M) of Eq. 5 and the (M,) mask of u's real frames."""
    mask_u = _full_mask(f_u, mask_u)
    mask_v = _full_mask(f_v, mask_v)
    x_uv = masked_softmax(l2_similarity(f_u, f_v), mask_v[None, :])
    f_v_soft = x_uv @ f_v
    return l2_similarity(f_v_soft, f_u), mask_u


def cycle_positions(f_u: Array, f_v: Array, mask_u: Array | None = None,
                    mask_v: Array | None = None) -> tuple[Array, Array]:
    """p (M,) of Eq. 9, the expected 0-based index each frame of u cycles back to."""
    s, mask_u = cycle_similarity(f_u, f_v, mask_u, mask_v)
    g = jnp.arange(f_u.shape[0], dtype=s.dtype)
    return masked_softmax(s, mask_u[None, :]) @ g, mask_u


@register_term("identity")
def identity_loss(f_u, f_v, mask_u=None, mask_v=None) -> Array:
    """Eq. 7: cross-entropy of each cycle-similarity row against its own frame index."""
    s, mask_u = cycle_similarity(f_u, f_v, mask_u, mask_v)
    logp = masked_log_softmax(s, mask_u[None, :])
    return masked_mean(-jnp.diagonal(logp), mask_u)


@register_term("deviation")
def deviation_loss(f_u, f_v, mask_u=None, mask_v=None) -> Array:
    """Eq. 10: mean |p_m - m|."""
    p, mask_u = cycle_positions(f_u, f_v, mask_u, mask_v)
    g = jnp.arange(p.shape[0], dtype=p.dtype)
    return masked_mean(jnp.abs(p - g), mask_u)


@register_term("interval")
def interval_loss(f_u, f_v, mask_u=None, mask_v=None, tau: int = 1) -> Array:
    """Eq. 11: mean over m >= tau of |(p_m - p_{m - tau}) - tau| (0 when M <= tau)."""
    p, mask_u = cycle_positions(f_u, f_v, mask_u, mask_v)
    tau = int(tau)
    if tau < 1:
        raise ValueError(f"interval loss needs tau >= 1, got {tau}")
    if p.shape[0] <= tau:
        return jnp.zeros((), p.dtype)
    diff = jnp.abs(p[tau:] - p[:-tau] - tau)
    return masked_mean(diff, mask_u[tau:] & mask_u[:-tau])


def make_loss_fn(weights: Mapping[str, float],
                 options: Mapping[str, Mapping] | None = None) -> Callable:
    """Assemble ``fn(f_u, f_v, mask_u=None, mask_v=None) -> (loss, aux)`` for one pair.

    weights: term name -> weight, e.g. {'identity': 1.0, 'deviation': 0.5, 'interval': 0.035};
    options: term name -> keyword options of that term, e.g. {'interval': {'tau': 2}}.
    aux maps each term name to its unweighted value.
    """
    options = dict(options or {})
    unknown = [n for n in list(weights) + list(options) if n not in LOSS_TERMS]
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; registered: {sorted(LOSS_TERMS)}")
    if not weights:
        raise ValueError("a loss needs at least one term")
    items = [(name, float(w), dict(options.get(name, {}))) for name, w in weights.items()]

    def loss_fn(f_u, f_v, mask_u=None, mask_v=None):
        aux = {}
        total = jnp.zeros((), jnp.float32)
        for name, w, opts in items:
            value = LOSS_TERMS[name](f_u, f_v, mask_u, mask_v, **opts)
            aux[name] = value
            total = total + w * value
        return total, aux

    return loss_fn


def sesyn_loss(f_u: Array, f_v: Array, mask_u: Array | None = None, mask_v: Array | None = None,
               *, mu1: float, mu2: float, tau: int = 1) -> tuple[Array, dict[str, Array]]:
    """The SeSyn-Net loss of one pair (Eq. 12). f_u (M, C), f_v (N, C); masks (M,), (N,) bool.

    Returns (loss, {'identity': ..., 'deviation': ..., 'interval': ...}).
    """
    fn = make_loss_fn({"identity": 1.0, "deviation": mu1, "interval": mu2},
                      {"interval": {"tau": tau}})
    return fn(f_u, f_v, mask_u, mask_v)


def batched_loss_fn(pair_loss_fn: Callable) -> Callable:
    """Mean over a batch of pairs of a one-pair loss: f_u (B, M, C), f_v (B, N, C), masks
    (B, M), (B, N) -> (mean loss, aux of means)."""

    def fn(f_u, f_v, mask_u, mask_v):
        losses, aux = jax.vmap(pair_loss_fn)(f_u, f_v, mask_u, mask_v)
        return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, aux)

    return fn


def batched_sesyn_loss(f_u, f_v, mask_u, mask_v, *, mu1: float, mu2: float, tau: int = 1):
    """jit-compiled ``sesyn_loss`` vmapped over a batch of padded pairs; returns batch means."""
    return _batched_sesyn_jit(f_u, f_v, mask_u, mask_v, float(mu1), float(mu2), int(tau))


def _batched_sesyn_impl(f_u, f_v, mask_u, mask_v, mu1, mu2, tau):
    pair = lambda a, b, ma, mb: sesyn_loss(a, b, ma, mb, mu1=mu1, mu2=mu2, tau=tau)
    return batched_loss_fn(pair)(f_u, f_v, mask_u, mask_v)


_batched_sesyn_jit = jax.jit(_batched_sesyn_impl, static_argnums=(4, 5, 6))
