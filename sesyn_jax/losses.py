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
Terms in ``OFFSET_TERMS`` also take ``offset``: the pair's known alignment, f_u[m] showing the
moment of f_v[m + offset] (pairs rendered from motion capture know it; recorded videos do not).

Similarity options, accepted by every term (defaults = the published loss):
  similarity   'l2': s(a, b) = -max(|a|^2 + |b|^2 - 2ab, 0);  'cosine': s(a, b) = a.b / (|a| |b|)
  temperature  s / temperature
  scale_by_dim s / C (C the embedding size), as TCC does
TCC (Dwibedi et al. 2019) terms, on the same cycle: with beta_m = softmax_j S_v~u(m, j) and
mu_m = sum_j beta_mj j, sigma_m^2 = sum_j beta_mj (j - mu_m)^2:
  tcc_cls (cycle-back classification) is the identity term itself: use 'identity' with TCC's
          similarity options (l2, temperature 0.1, scale_by_dim) -- see sesyn_jax.variants;
  tcc_reg  mean_m (m - mu_m)^2                                   (plain regression)
           mean_m (m - mu_m)^2 / sigma_m^2 + lam * log sigma_m   (variance=True, lam = 0.001)
           mean_m huber_delta(m - mu_m)                           (huber_delta > 0)
A cross-view contrastive term for pairs whose alignment is known (multi-view time-contrastive
learning, as TCN of Sermanet et al. 2018 but over all frames of the other view):
  aligned  with S = S_uv, q_m(n) ∝ exp(-(n - m - offset)^2 / (2 sigma^2)) over v's frames,
           mean over the frames of u whose partner m + offset is a frame of v of
           -sum_n q_m(n) log softmax_n S(m, n), plus the same from v to u.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

Array = jax.Array
LossTerm = Callable[..., Array]
LOSS_TERMS: dict[str, LossTerm] = {}
OFFSET_TERMS: set[str] = set()  # terms that take the pair's known offset


def register_term(name: str, needs_offset: bool = False) -> Callable[[LossTerm], LossTerm]:
    """Decorator: make a loss term selectable by ``name`` in a loss config. ``needs_offset``:
    the term is called with ``offset=`` the pair's known alignment."""

    def wrap(fn: LossTerm) -> LossTerm:
        if name in LOSS_TERMS:
            raise ValueError(f"loss term {name!r} is already registered")
        LOSS_TERMS[name] = fn
        if needs_offset:
            OFFSET_TERMS.add(name)
        return fn

    return wrap


def _full_mask(f: Array, mask: Array | None) -> Array:
    return jnp.ones(f.shape[0], bool) if mask is None else mask.astype(bool)


def matmul(a: Array, b: Array) -> Array:
    """a @ b at full float32 precision on every backend (TPUs and recent GPUs default to one
    bfloat16 pass or TF32): the similarities below cancel large terms."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def l2_similarity(a: Array, b: Array) -> Array:
    """-squared Euclidean distance (M, N) between rows of a (M, C) and b (N, C), computed as
    |a|^2 + |b|^2 - 2ab and clamped at 0 like the published code."""
    sq = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * matmul(a, b.T)
    return -jnp.maximum(sq, 0.0)


def masked_softmax(logits: Array, col_mask: Array) -> Array:
    """Softmax over the last axis, with zero weight on columns where ``col_mask`` is False."""
    z = jnp.where(col_mask, logits, -jnp.inf)
    z_max = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    e = jnp.where(col_mask, jnp.exp(z - z_max), 0.0)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def masked_log_softmax(logits: Array, col_mask: Array) -> Array:
    """log softmax over the last axis, over the columns where ``col_mask`` is True only; the
    other columns hold a finite value (not -inf, so that gradients stay finite) that callers
    must mask out."""
    z = jnp.where(col_mask, logits, -jnp.inf)
    z_max = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    shifted = jnp.where(col_mask, z - z_max, 0.0)
    lse = jnp.log(jnp.sum(jnp.where(col_mask, jnp.exp(shifted), 0.0), axis=-1, keepdims=True))
    return shifted - lse


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of ``x`` where ``mask`` is True; 0 when no element is."""
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def cosine_similarity(a: Array, b: Array) -> Array:
    """(M, N) cosine similarity between rows of a (M, C) and b (N, C)."""
    # sqrt of the clamped square: the gradient of a norm at a zero row (a padded frame) is nan
    an = a * jax.lax.rsqrt(jnp.maximum(jnp.sum(a * a, axis=1, keepdims=True), 1e-16))
    bn = b * jax.lax.rsqrt(jnp.maximum(jnp.sum(b * b, axis=1, keepdims=True), 1e-16))
    return matmul(an, bn.T)


def similarity(
    a: Array, b: Array, similarity: str = "l2", temperature: float = 1.0, scale_by_dim: bool = False
) -> Array:
    """The frame similarity of the module doc (default: the published -clamped squared L2)."""
    if similarity == "l2":
        s = l2_similarity(a, b)
    elif similarity == "cosine":
        s = cosine_similarity(a, b)
    else:
        raise ValueError(f"similarity must be 'l2' or 'cosine', got {similarity!r}")
    if scale_by_dim:
        s = s / a.shape[-1]
    if temperature != 1.0:
        s = s / temperature
    return s


def cycle_similarity(
    f_u: Array, f_v: Array, mask_u: Array | None = None, mask_v: Array | None = None, **sim
) -> tuple[Array, Array]:
    """S_v~u (M, M) of Eq. 5 and the (M,) mask of u's real frames; ``sim``: similarity options."""
    mask_u = _full_mask(f_u, mask_u)
    mask_v = _full_mask(f_v, mask_v)
    x_uv = masked_softmax(similarity(f_u, f_v, **sim), mask_v[None, :])
    f_v_soft = matmul(x_uv, f_v)
    return similarity(f_v_soft, f_u, **sim), mask_u


def cycle_positions(
    f_u: Array, f_v: Array, mask_u: Array | None = None, mask_v: Array | None = None, **sim
) -> tuple[Array, Array, Array]:
    """p (M,) of Eq. 9 (the expected 0-based index each frame of u cycles back to), the
    variance of that index under the same weights, and u's mask."""
    s, mask_u = cycle_similarity(f_u, f_v, mask_u, mask_v, **sim)
    g = jnp.arange(f_u.shape[0], dtype=s.dtype)
    beta = masked_softmax(s, mask_u[None, :])
    p = matmul(beta, g)
    var = jnp.sum(beta * jnp.square(g[None, :] - p[:, None]), axis=1)
    return p, var, mask_u


@register_term("identity")
def identity_loss(f_u, f_v, mask_u=None, mask_v=None, **sim) -> Array:
    """Eq. 7: cross-entropy of each cycle-similarity row against its own frame index."""
    s, mask_u = cycle_similarity(f_u, f_v, mask_u, mask_v, **sim)
    logp = masked_log_softmax(s, mask_u[None, :])
    return masked_mean(-jnp.diagonal(logp), mask_u)


@register_term("deviation")
def deviation_loss(f_u, f_v, mask_u=None, mask_v=None, **sim) -> Array:
    """Eq. 10: mean |p_m - m|."""
    p, _, mask_u = cycle_positions(f_u, f_v, mask_u, mask_v, **sim)
    g = jnp.arange(p.shape[0], dtype=p.dtype)
    return masked_mean(jnp.abs(p - g), mask_u)


@register_term("tcc_reg")
def tcc_regression_loss(
    f_u,
    f_v,
    mask_u=None,
    mask_v=None,
    variance: bool = False,
    lam: float = 0.001,
    huber_delta: float = 0.0,
    **sim,
) -> Array:
    """TCC cycle-back regression (module doc): squared error of the cycled-back index, divided
    by its variance plus lam * log(sigma) with ``variance``, or Huber with ``huber_delta`` > 0."""
    p, var, mask_u = cycle_positions(f_u, f_v, mask_u, mask_v, **sim)
    err = p - jnp.arange(p.shape[0], dtype=p.dtype)
    if huber_delta > 0:
        a = jnp.abs(err)
        per = jnp.where(a <= huber_delta, 0.5 * err**2, huber_delta * (a - 0.5 * huber_delta))
    elif variance:
        var = jnp.maximum(var, 1e-6)
        per = err**2 / var + lam * 0.5 * jnp.log(var)
    else:
        per = err**2
    return masked_mean(per, mask_u)


@register_term("interval")
def interval_loss(f_u, f_v, mask_u=None, mask_v=None, tau: int = 1, **sim) -> Array:
    """Eq. 11: mean over m >= tau of |(p_m - p_{m - tau}) - tau| (0 when M <= tau)."""
    p, _, mask_u = cycle_positions(f_u, f_v, mask_u, mask_v, **sim)
    tau = int(tau)
    if tau < 1:
        raise ValueError(f"interval loss needs tau >= 1, got {tau}")
    if p.shape[0] <= tau:
        return jnp.zeros((), p.dtype)
    diff = jnp.abs(p[tau:] - p[:-tau] - tau)
    return masked_mean(diff, mask_u[tau:] & mask_u[:-tau])


def _soft_alignment_ce(s: Array, rows: Array, cols: Array, offset, sigma: float) -> Array:
    """Mean over rows m (with a partner m + offset among the columns) of the cross-entropy of
    row-softmax(s) against a Gaussian of width ``sigma`` around column m + offset."""
    m, n = s.shape
    target = jnp.arange(m, dtype=s.dtype) + offset
    col = jnp.arange(n, dtype=s.dtype)
    logq = -jnp.square(col[None, :] - target[:, None]) / (2.0 * sigma**2)
    q = masked_softmax(logq, cols[None, :])
    logp = masked_log_softmax(s, cols[None, :])
    ce = -jnp.sum(jnp.where(cols[None, :], q * logp, 0.0), axis=1)
    t = jnp.round(target).astype(jnp.int32)
    inside = (t >= 0) & (t < n) & cols[jnp.clip(t, 0, n - 1)]
    return masked_mean(ce, rows & inside)


@register_term("aligned", needs_offset=True)
def aligned_loss(f_u, f_v, mask_u=None, mask_v=None, offset=0, sigma: float = 1.0, **sim):
    """The cross-view contrastive term of the module doc, both directions averaged."""
    mask_u, mask_v = _full_mask(f_u, mask_u), _full_mask(f_v, mask_v)
    s = similarity(f_u, f_v, **sim)
    return 0.5 * (
        _soft_alignment_ce(s, mask_u, mask_v, offset, sigma)
        + _soft_alignment_ce(s.T, mask_v, mask_u, -offset, sigma)
    )


def call_term(name: str, f_u, f_v, mask_u, mask_v, options: Mapping, offset=None) -> Array:
    """The registered term ``name`` with its options; a term in OFFSET_TERMS also gets the
    pair's known ``offset`` (a ValueError without one)."""
    if name in OFFSET_TERMS:
        if offset is None:
            raise ValueError(f"loss term {name!r} needs the pairs' known offsets")
        options = dict(options, offset=offset)
    return LOSS_TERMS[name](f_u, f_v, mask_u, mask_v, **options)


def make_loss_fn(
    weights: Mapping[str, float], options: Mapping[str, Mapping] | None = None
) -> Callable:
    """Assemble ``fn(f_u, f_v, mask_u=None, mask_v=None) -> (loss, aux)`` for one pair.

    weights: term name -> weight, e.g. {'identity': 1.0, 'deviation': 0.5, 'interval': 0.035};
    options: term name -> keyword options of that term, e.g. {'interval': {'tau': 2}}.
    aux maps each term name to its unweighted value. The returned function takes
    ``offset`` (the known alignment, f_u[m] ~ f_v[m + offset]) when a term needs it.
    """
    options = dict(options or {})
    unknown = [n for n in list(weights) + list(options) if n not in LOSS_TERMS]
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; registered: {sorted(LOSS_TERMS)}")
    if not weights:
        raise ValueError("a loss needs at least one term")
    items = [(name, float(w), dict(options.get(name, {}))) for name, w in weights.items()]

    def loss_fn(f_u, f_v, mask_u=None, mask_v=None, offset=None):
        aux = {}
        total = jnp.zeros((), jnp.float32)
        for name, w, opts in items:
            value = call_term(name, f_u, f_v, mask_u, mask_v, opts, offset)
            aux[name] = value
            total = total + w * value
        return total, aux

    loss_fn.terms = items  # (name, weight, options): for per-term diagnostics
    loss_fn.needs_offset = any(name in OFFSET_TERMS for name, _, _ in items)
    return loss_fn


def sesyn_loss(
    f_u: Array,
    f_v: Array,
    mask_u: Array | None = None,
    mask_v: Array | None = None,
    *,
    mu1: float,
    mu2: float,
    tau: int = 1,
) -> tuple[Array, dict[str, Array]]:
    """The SeSyn-Net loss of one pair (Eq. 12). f_u (M, C), f_v (N, C); masks (M,), (N,) bool.

    Returns (loss, {'identity': ..., 'deviation': ..., 'interval': ...}).
    """
    fn = make_loss_fn(
        {"identity": 1.0, "deviation": mu1, "interval": mu2}, {"interval": {"tau": tau}}
    )
    return fn(f_u, f_v, mask_u, mask_v)


def batched_loss_fn(pair_loss_fn: Callable) -> Callable:
    """Mean over a batch of pairs of a one-pair loss: f_u (B, M, C), f_v (B, N, C), masks
    (B, M), (B, N), optional offsets (B,) -> (mean loss, aux of means)."""

    def fn(f_u, f_v, mask_u, mask_v, offset=None):
        if offset is None:
            losses, aux = jax.vmap(pair_loss_fn)(f_u, f_v, mask_u, mask_v)
        else:
            losses, aux = jax.vmap(pair_loss_fn)(f_u, f_v, mask_u, mask_v, offset)
        return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, aux)

    return fn


def batched_sesyn_loss(f_u, f_v, mask_u, mask_v, *, mu1: float, mu2: float, tau: int = 1):
    """jit-compiled ``sesyn_loss`` vmapped over a batch of padded pairs; returns batch means."""
    return _batched_sesyn_jit(f_u, f_v, mask_u, mask_v, float(mu1), float(mu2), int(tau))


def _batched_sesyn_impl(f_u, f_v, mask_u, mask_v, mu1, mu2, tau):
    pair = lambda a, b, ma, mb: sesyn_loss(a, b, ma, mb, mu1=mu1, mu2=mu2, tau=tau)
    return batched_loss_fn(pair)(f_u, f_v, mask_u, mask_v)


_batched_sesyn_jit = jax.jit(_batched_sesyn_impl, static_argnums=(4, 5, 6))
