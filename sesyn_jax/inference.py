"""Offset estimation from frame embeddings (paper Eq. 13-14, the published matching rule).

For every real frame m of u, o_m = argmax_n softmax(S_uv)(m, n) over the real frames n of v
(S_uv as in ``losses.l2_similarity``); the offset is floor(median_m(o_m - m)), with numpy's
median (the mean of the two middle values for an even count). Called with u = view 1 and
v = view 2 it estimates category_id(view 1) - category_id(view 2): positive when view 2's
frames show what view 1 shows that many frames earlier.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax.losses import l2_similarity, masked_softmax


def _matches(f_u, f_v, mask_u, mask_v):
    # argmax of the softmax, not of S: float32 ties after exp decide like the published code.
    probs = masked_softmax(l2_similarity(f_u, f_v), mask_v[None, :])
    return jnp.argmax(probs, axis=1)


@jax.jit
def _batched_matches(f_u, f_v, mask_u, mask_v):
    return jax.vmap(_matches)(f_u, f_v, mask_u, mask_v)


def frame_matches(f_u, f_v, mask_u=None, mask_v=None) -> np.ndarray:
    """o (M_real,): for each real frame of u, the index of its most similar real frame of v."""
    f_u = jnp.asarray(f_u, jnp.float32)
    f_v = jnp.asarray(f_v, jnp.float32)
    mu = np.ones(f_u.shape[0], bool) if mask_u is None else np.asarray(mask_u, bool)
    mv = np.ones(f_v.shape[0], bool) if mask_v is None else np.asarray(mask_v, bool)
    if not mv.any() or not mu.any():
        raise ValueError("both sequences need at least one real frame to match")
    o = np.asarray(_batched_matches(f_u[None], f_v[None], jnp.asarray(mu)[None],
                                    jnp.asarray(mv)[None]))[0]
    return o[mu]


def offset_from_matches(matches: np.ndarray, frame_index: np.ndarray | None = None) -> int:
    """floor(numpy median of (o_m - m)) over the given frames."""
    matches = np.asarray(matches, np.float64)
    idx = np.arange(len(matches)) if frame_index is None else np.asarray(frame_index)
    if matches.size == 0:
        raise ValueError("no frames to estimate an offset from")
    return int(math.floor(np.median(matches - idx)))


def estimate_offset(f_u, f_v, mask_u=None, mask_v=None) -> int:
    """Offset in frames between u (M, C) and v (N, C), by the published rule."""
    mu = np.ones(np.shape(f_u)[0], bool) if mask_u is None else np.asarray(mask_u, bool)
    o = frame_matches(f_u, f_v, mu, mask_v)
    return offset_from_matches(o, np.flatnonzero(mu))


def estimate_offsets(f_u, f_v, mask_u=None, mask_v=None) -> np.ndarray:
    """Batched ``estimate_offset``: f_u (B, M, C), f_v (B, N, C), masks (B, M), (B, N) -> (B,)
    int64. The argmax runs on the device in one call; the medians on the host, as numpy does."""
    f_u = jnp.asarray(f_u, jnp.float32)
    f_v = jnp.asarray(f_v, jnp.float32)
    b, m = f_u.shape[:2]
    mu = np.ones((b, m), bool) if mask_u is None else np.asarray(mask_u, bool)
    mv = np.ones(f_v.shape[:2], bool) if mask_v is None else np.asarray(mask_v, bool)
    if not mu.any(axis=1).all() or not mv.any(axis=1).all():
        raise ValueError("every pair needs at least one real frame in each view")
    o = np.asarray(_batched_matches(f_u, f_v, jnp.asarray(mu), jnp.asarray(mv)))
    return np.array([offset_from_matches(o[i][mu[i]], np.flatnonzero(mu[i])) for i in range(b)],
                    dtype=np.int64)
