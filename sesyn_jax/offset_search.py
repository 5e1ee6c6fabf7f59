"""Offset estimation from frame embeddings.

An offset d says that frame m of u shows what frame m + d of v shows. Called with u = view 1
and v = view 2 it estimates category_id(view 1) - category_id(view 2): positive when view 2's
frames show what view 1 shows that many frames earlier. Two rules (``search_offset``):

'median' (paper Eq. 13-14, the published matching rule): for every real frame m of u,
  o_m = argmax_n softmax(S_uv)(m, n) over the real frames n of v (S_uv as in
  ``losses.l2_similarity``); the offset is floor(median_m(o_m - m)), with numpy's median (the
  mean of the two middle values for an even count). Each frame votes once, wherever its best
  match lies, so on long inputs most votes are noise.
'diagonal': every candidate d is scored by the mean similarity S_uv(m, m + d) over the real
  frames it aligns (a diagonal of S_uv), among the offsets that align at least ``min_overlap``
  real frames (and |d| <= max_offset when given); the best score wins. ``subframe=True``
  refines it with a parabola through the scores at d - 1, d, d + 1.

With ``max_offset`` both rules work on blocks of frames and never hold the M x N similarity
matrix: memory grows linearly with the lengths. With many candidate offsets (more than
``FFT_LAGS``) the diagonal rule sums every diagonal at once by FFT cross-correlation, channel
by channel (O(C (M + N) log(M + N)) time, linear memory), in float64.

Confidence, in [0, 1]: 'median', the share of u's frames whose best match agrees with the
offset within 2 frames; 'diagonal', (best - runner-up) / (best - median score), the runner-up
being the highest other peak of the score curve (a local maximum) more than 2 frames away from
the chosen offset (1: one clear peak; 0: a tie elsewhere). Neighbours of the best offset score
almost as well when the features change smoothly over time; they are its own peak, not rivals.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax.losses import l2_similarity, masked_softmax, matmul


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
    o = np.asarray(
        _batched_matches(f_u[None], f_v[None], jnp.asarray(mu)[None], jnp.asarray(mv)[None])
    )[0]
    return o[mu]


def _masked_median_floor(votes, valid):
    """floor(numpy median) of ``votes`` (N,) where ``valid``, on the device: the mean of the
    two middle values for an even count, as numpy."""
    n = jnp.sum(valid)
    ranked = jnp.sort(jnp.where(valid, votes.astype(jnp.float32), jnp.inf))
    lo, hi = ranked[jnp.maximum(n - 1, 0) // 2], ranked[n // 2]
    return jnp.floor(0.5 * (lo + hi)).astype(jnp.int32)


def _centred_similarity(f_u, f_v, mask_u, mask_v):
    """The (M, N) -clamped squared distance of ``lag_blocks``, after subtracting the mean of
    the real frames of both (so that |a|^2 + |b|^2 - 2ab does not cancel), at HIGHEST
    precision."""
    wu, wv = mask_u.astype(f_u.dtype), mask_v.astype(f_v.dtype)
    centre = (matmul(wu, f_u) + matmul(wv, f_v)) / jnp.maximum(1.0, wu.sum() + wv.sum())
    u, v = f_u - centre, f_v - centre
    sq = jnp.sum(u * u, 1)[:, None] + jnp.sum(v * v, 1)[None, :] - 2.0 * matmul(u, v.T)
    return -jnp.maximum(sq, 0.0)


def _lag_band(sim, mask_u, mask_v, lags):
    """(M, L) similarities sim[m, m + lags[k]] and where both frames exist and are real."""
    m, n = sim.shape
    rows = jnp.arange(m)[:, None]
    cols = rows + lags[None, :]
    inside = (cols >= 0) & (cols < n)
    cols = jnp.clip(cols, 0, n - 1)
    ok = inside & mask_u[:, None] & mask_v[cols]
    return sim[rows, cols], ok


def device_offset(f_u, f_v, mask_u, mask_v, need, *, rule: str, lags):
    """The offset ``search_offset`` finds for one pair, computed on the device (jit/vmap it):
    f_u (M, C), f_v (N, C), masks (M,), (N,); ``need``: the minimum overlap in frames
    (``resolve_min_overlap``; diagonal rule); ``lags``: the candidate offsets, a static
    range (``lag_range``). 'median' over every offset (``lags`` None) matches as
    ``frame_matches``; with ``lags`` it votes within the band, as the host search does."""
    if rule == "median" and lags is None:
        votes = _matches(f_u, f_v, mask_u, mask_v) - jnp.arange(f_u.shape[0])
        return _masked_median_floor(votes, mask_u)
    lags = jnp.asarray(lags, jnp.int32)
    band, ok = _lag_band(_centred_similarity(f_u, f_v, mask_u, mask_v), mask_u, mask_v, lags)
    if rule == "median":
        best = jnp.argmax(jnp.where(ok, band, -jnp.inf), axis=1)
        return _masked_median_floor(lags[best], ok.any(axis=1))
    count = ok.sum(0)
    total = jnp.sum(jnp.where(ok, band, 0.0), axis=0)
    scores = jnp.where(count >= need, total / jnp.maximum(count, 1), -jnp.inf)
    return lags[jnp.argmax(scores)]


def offset_from_matches(matches: np.ndarray, frame_index: np.ndarray | None = None) -> int:
    """floor(numpy median of (o_m - m)) over the given frames."""
    matches = np.asarray(matches, np.float64)
    idx = np.arange(len(matches)) if frame_index is None else np.asarray(frame_index)
    if matches.size == 0:
        raise ValueError("no frames to estimate an offset from")
    return int(math.floor(np.median(matches - idx)))


RULES = ("median", "diagonal")
AGREE_FRAMES = 2  # a vote or a rival peak within this many frames counts as the same offset


@dataclasses.dataclass
class OffsetSearch:
    """The outcome of an offset search.

    offset: frames (int; float with subframe=True); confidence: in [0, 1] (see the module doc);
    lags: (L,) the candidate offsets; scores: (L,) per candidate, the share of u's frames voting
    for it ('median') or the mean similarity of the frames it aligns ('diagonal'; nan where it
    aligns fewer than min_overlap real frames); overlap: (L,) real frames aligned per candidate.
    """

    offset: int | float
    confidence: float
    lags: np.ndarray
    scores: np.ndarray
    overlap: np.ndarray
    rule: str


def _mask(f, mask) -> np.ndarray:
    n = np.shape(f)[0]
    m = np.ones(n, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    if m.shape != (n,):
        raise ValueError(f"mask has {m.size} entries for {n} frames")
    return m


def lag_range(m: int, n: int, max_offset: int | None) -> tuple[int, int]:
    """The candidate offsets [lo, hi] between sequences of m and n frames."""
    lo, hi = -(m - 1), n - 1
    if max_offset is not None:
        if max_offset < 0:
            raise ValueError(f"max_offset must be >= 0, got {max_offset}")
        lo, hi = max(lo, -int(max_offset)), min(hi, int(max_offset))
    if lo > hi:
        raise ValueError(
            f"no offset within max_offset={max_offset} aligns any frames of "
            f"sequences of {m} and {n} frames"
        )
    return lo, hi


def resolve_min_overlap(min_overlap: int | float, real_u: int, real_v: int) -> int:
    """min_overlap >= 1: that many frames; a fraction in (0, 1): that share of the shorter
    sequence's real frames (at least 1)."""
    if min_overlap <= 0 or (min_overlap >= 1 and not float(min_overlap).is_integer()):
        raise ValueError(
            f"min_overlap must be a whole number of frames >= 1 or a fraction in "
            f"(0, 1), got {min_overlap}"
        )
    if min_overlap >= 1:
        return int(min_overlap)
    return max(1, int(math.ceil(min_overlap * min(real_u, real_v))))


def _block_rows(num_lags: int, budget: int = 1 << 22) -> int:
    """Rows of u per block: the block matrix (rows x (rows + num_lags - 1)) stays under
    ``budget`` entries (16 MB of float32) where it can."""
    rows = max(64, min(2048, num_lags))
    while rows > 64 and rows * (rows + num_lags - 1) > budget:
        rows //= 2
    return rows


def lag_blocks(
    f_u: np.ndarray, f_v: np.ndarray, mask_u: np.ndarray, mask_v: np.ndarray, lo: int, hi: int
):
    """Yield (m0, sim, valid) per block of u's frames m0 .. m0 + R - 1: sim (R, L) float32 with
    sim[i, k] = S_uv(m0 + i, m0 + i + lo + k) (the clamped -squared distance) and valid (R, L)
    True where both frames exist and are real. Memory per block is O(R (R + L) + (R + L) C)."""
    m, c = f_u.shape
    n = f_v.shape[0]
    num = hi - lo + 1
    rows = _block_rows(num)
    # a common centre keeps the float32 |a|^2 + |b|^2 - 2ab from cancelling badly
    centre = _masked_sum(f_u, mask_u) + _masked_sum(f_v, mask_v)
    centre = (centre / max(1, mask_u.sum() + mask_v.sum())).astype(np.float32)
    for m0 in range(0, m, rows):
        r = min(rows, m - m0)
        u = np.asarray(f_u[m0 : m0 + r], np.float32) - centre
        width = r + num - 1
        v = np.zeros((width, c), np.float32)
        mv = np.zeros(width, bool)
        a, b = max(0, m0 + lo), min(n, m0 + r - 1 + hi + 1)  # v frames this block can reach
        if a < b:
            v[a - (m0 + lo) : b - (m0 + lo)] = np.asarray(f_v[a:b], np.float32) - centre
            mv[a - (m0 + lo) : b - (m0 + lo)] = mask_v[a:b]
        sq = (np.sum(u * u, 1)[:, None] + np.sum(v * v, 1)[None, :]) - 2.0 * (u @ v.T)
        sim = np.ascontiguousarray(-np.maximum(sq, 0.0), np.float32)
        ok = np.ascontiguousarray(mask_u[m0 : m0 + r, None] & mv[None, :])
        yield m0, _shear(sim, num), _shear(ok, num)


def _masked_sum(f: np.ndarray, mask: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Sum of the real rows in float64, chunk by chunk (no copy of the whole array)."""
    out = np.zeros(f.shape[1], np.float64)
    for i in range(0, len(f), chunk):
        out += np.asarray(mask[i : i + chunk], np.float64) @ np.asarray(
            f[i : i + chunk], np.float64
        )
    return out


def _shear(x: np.ndarray, num: int) -> np.ndarray:
    """(R, R + num - 1) -> (R, num) view with out[i, k] = x[i, i + k]."""
    s0, s1 = x.strides
    return np.lib.stride_tricks.as_strided(x, (x.shape[0], num), (s0 + s1, s1), writeable=False)


def pick_offset(
    lags: np.ndarray, scores: np.ndarray, subframe: bool = False
) -> tuple[int | float, float]:
    """The best-scoring lag (nan scores are not candidates) and the peak confidence
    (best - runner-up) / (best - median score), the runner-up the highest other local maximum
    more than AGREE_FRAMES away;
    with ``subframe`` the lag is refined by a parabola through its neighbours' scores."""
    ok = np.isfinite(scores)
    if not ok.any():
        raise ValueError("no candidate offset aligns enough frames (lower min_overlap)")
    s = np.where(ok, scores, -np.inf)
    i = int(np.argmax(s))
    best = float(scores[i])
    peak = ok & (s >= np.r_[-np.inf, s[:-1]]) & (s >= np.r_[s[1:], -np.inf])
    far = peak & (np.abs(lags - lags[i]) > AGREE_FRAMES)
    typical = float(np.median(scores[ok]))
    if far.any() and best > typical:
        conf = float(np.clip((best - scores[far].max()) / (best - typical), 0.0, 1.0))
    else:
        conf = 1.0 if not far.any() and ok.sum() > 1 else 0.0
    offset: int | float = int(lags[i])
    if subframe:
        offset = float(offset) + parabola_peak(scores, i)
    return offset, conf


def parabola_peak(scores: np.ndarray, i: int) -> float:
    """Where, within half a lag of lag ``i``, the parabola through the scores at i - 1, i and
    i + 1 peaks, relative to i (0 when a neighbour is missing or the scores do not curve down)."""
    if not 0 < i < len(scores) - 1:
        return 0.0
    a, b, c = float(scores[i - 1]), float(scores[i]), float(scores[i + 1])
    curv = a - 2.0 * b + c
    if not np.isfinite(curv) or curv >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / curv, -0.5, 0.5))


def search_offset(
    f_u,
    f_v,
    mask_u=None,
    mask_v=None,
    *,
    rule: str = "median",
    max_offset: int | None = None,
    min_overlap: int | float = 0.5,
    subframe: bool = False,
) -> OffsetSearch:
    """Offset between u (M, C) and v (N, C) frame features (masks: True on real frames), with
    its confidence and score curve; see the module doc for the rules.

    Args:
        f_u: (M, C) frame embeddings of u; time is axis 0.
        f_v: (N, C) frame embeddings of v.
        mask_u: (M,) bool, True on real frames (None: all).
        mask_v: (N,) bool, True on real frames (None: all).
        rule: 'median' (the published rule) or 'diagonal'.
        max_offset: largest |offset| searched, in frames (None: every offset).
        min_overlap: 'diagonal' only: real frames a candidate must align, as a whole number
            >= 1 or a fraction in (0, 1) of the shorter sequence's real frames.
        subframe: refine the offset to a fraction of a frame.

    Returns:
        An OffsetSearch: ``offset`` in frames (frame m of u shows what frame m + offset of v
        shows), ``confidence`` in [0, 1], and the score of every candidate offset.

    Raises:
        ValueError: an unknown rule, a bad ``min_overlap``, a sequence without real frames, or
            features that are not (M, C) and (N, C).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    mu, mv = _mask(f_u, mask_u), _mask(f_v, mask_v)
    if not mu.any() or not mv.any():
        raise ValueError("both sequences need at least one real frame to match")
    f_u, f_v = np.asarray(f_u), np.asarray(f_v)
    if f_u.ndim != 2 or f_v.ndim != 2 or f_u.shape[1] != f_v.shape[1]:
        raise ValueError(f"features must be (M, C) and (N, C), got {f_u.shape} and {f_v.shape}")
    lo, hi = lag_range(len(f_u), len(f_v), max_offset)
    lags = np.arange(lo, hi + 1)
    if rule == "median":
        return _median_search(f_u, f_v, mu, mv, lags, max_offset is not None, subframe)
    need = resolve_min_overlap(min_overlap, int(mu.sum()), int(mv.sum()))
    scores, count = diagonal_scores(f_u, f_v, mu, mv, lo, hi, need)
    offset, conf = pick_offset(lags, scores, subframe)
    return OffsetSearch(offset, conf, lags, scores, count, rule)


def diagonal_scores(f_u, f_v, mask_u, mask_v, lo: int, hi: int, need: int):
    """(scores, count) of the diagonal rule at the lags lo .. hi: the mean similarity of the
    real frame pairs each lag aligns (nan where it aligns fewer than ``need``), and how many."""
    if hi - lo + 1 > FFT_LAGS:
        total, count = diagonal_sums_fft(f_u, f_v, mask_u, mask_v, lo, hi)
    else:
        total = np.zeros(hi - lo + 1, np.float64)
        count = np.zeros(hi - lo + 1, np.int64)
        for _, sim, ok in lag_blocks(f_u, f_v, mask_u, mask_v, lo, hi):
            total += np.where(ok, sim, 0.0).sum(0, dtype=np.float64)
            count += ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= need, total / np.maximum(count, 1), np.nan), count


FFT_LAGS = 1024  # the diagonal rule uses FFT sums above this many candidate offsets


def agreement(
    f_u, f_v, mask_u=None, mask_v=None, *, offset: float, band: int = 60
) -> tuple[float, int]:
    """How many real frames of u agree with ``offset``: the share of those with a real frame
    of v at m + offset whose best match among v's real frames n in [m + offset - band,
    m + offset + band] lies within AGREE_FRAMES of m + offset, and how many frames voted.
    Unrelated sequences scatter their matches over the band (about 5 / (2 band + 1) agree);
    a correct offset of a model that tells moments apart gathers them. Block by block: memory
    linear in the lengths."""
    mu, mv = _mask(f_u, mask_u), _mask(f_v, mask_v)
    f_u, f_v = np.asarray(f_u), np.asarray(f_v)
    d = int(round(offset))
    lo, hi = d - band, d + band
    agree = votes = 0
    for m0, sim, ok in lag_blocks(f_u, f_v, mu, mv, lo, hi):
        m = np.arange(m0, m0 + len(sim))
        t = m + d
        centre = (t >= 0) & (t < len(f_v))
        centre[centre] &= mv[t[centre]]
        rows = ok.any(1) & mu[m] & centre
        if not rows.any():
            continue
        best = lo + np.argmax(np.where(ok, sim, -np.inf), axis=1)
        agree += int(np.sum(np.abs(best[rows] - offset) <= AGREE_FRAMES))
        votes += int(rows.sum())
    return (agree / votes if votes else 0.0), votes


def diagonal_sums_fft(
    f_u: np.ndarray,
    f_v: np.ndarray,
    mask_u: np.ndarray,
    mask_v: np.ndarray,
    lo: int,
    hi: int,
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """(sums, counts), each (hi - lo + 1,): for every offset d the sum over the real frame pairs
    (m, m + d) of -||f_u[m] - f_v[m + d]||^2, and how many there are. By FFT: the squared
    distance expands to |u|^2 + |v|^2 - 2 u.v, each term a cross-correlation; ``chunk``
    channels at a time, after subtracting the common mean (float64 throughout)."""
    mu, mv = np.asarray(mask_u, np.float64), np.asarray(mask_v, np.float64)
    centre = _masked_sum(f_u, mask_u) + _masked_sum(f_v, mask_v)
    centre /= max(1.0, mu.sum() + mv.sum())
    nfft = 1 << int(np.ceil(np.log2(max(2, len(f_u) + len(f_v) - 1))))
    idx = np.arange(lo, hi + 1) % nfft
    cross = np.zeros(len(idx), np.float64)
    sq_u = np.zeros(len(f_u), np.float64)
    sq_v = np.zeros(len(f_v), np.float64)
    for c0 in range(0, f_u.shape[1], chunk):
        cut = slice(c0, c0 + chunk)
        u = (np.asarray(f_u[:, cut], np.float64) - centre[cut]) * mu[:, None]
        v = (np.asarray(f_v[:, cut], np.float64) - centre[cut]) * mv[:, None]
        sq_u += np.sum(u * u, 1)
        sq_v += np.sum(v * v, 1)
        spec = np.conj(np.fft.rfft(u, nfft, axis=0)) * np.fft.rfft(v, nfft, axis=0)
        cross += np.fft.irfft(spec.sum(1), nfft)[idx]
    sums = 2.0 * cross - lag_sums(sq_u, mv, lo, hi) - lag_sums(mu, sq_v, lo, hi)
    return sums, overlap_counts(mask_u, mask_v, lo, hi)


def lag_sums(x: np.ndarray, y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(hi - lo + 1,) float64: sum_m x[m] y[m + d] for d = lo .. hi, for 1-D x and y, by FFT
    (O((M + N) log(M + N)) time, linear memory)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    nfft = 1 << int(np.ceil(np.log2(max(2, len(x) + len(y) - 1))))
    c = np.fft.irfft(np.conj(np.fft.rfft(x, nfft)) * np.fft.rfft(y, nfft), nfft)
    return c[np.arange(lo, hi + 1) % nfft]


def overlap_counts(mask_u: np.ndarray, mask_v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(hi - lo + 1,) real frames aligned by each offset d: sum_m mask_u[m] mask_v[m + d]."""
    return np.rint(lag_sums(mask_u, mask_v, lo, hi)).astype(np.int64)


def _median_search(f_u, f_v, mu, mv, lags, banded: bool, subframe: bool) -> OffsetSearch:
    lo, hi = int(lags[0]), int(lags[-1])
    if banded:  # best match within [m + lo, m + hi], block by block
        votes = np.zeros(len(f_u), np.int64)
        has = np.zeros(len(f_u), bool)
        overlap = np.zeros(len(lags), np.int64)
        for m0, sim, ok in lag_blocks(f_u, f_v, mu, mv, lo, hi):
            votes[m0 : m0 + len(sim)] = lo + np.argmax(np.where(ok, sim, -np.inf), axis=1)
            has[m0 : m0 + len(sim)] = ok.any(axis=1)
            overlap += ok.sum(0)
        votes = votes[has]
        if votes.size == 0:
            raise ValueError("no real frame of u has a real frame of v within max_offset")
    else:
        votes = frame_matches(f_u, f_v, mu, mv) - np.flatnonzero(mu)
        overlap = overlap_counts(mu, mv, lo, hi)
    med = float(np.median(votes))
    offset: int | float = med if subframe else int(math.floor(med))
    share = np.bincount(votes - lo, minlength=len(lags)) / len(votes)
    conf = float(np.mean(np.abs(votes - offset) <= AGREE_FRAMES))
    return OffsetSearch(offset, conf, lags, share, overlap, "median")


def estimate_offset(
    f_u,
    f_v,
    mask_u=None,
    mask_v=None,
    *,
    rule: str = "median",
    max_offset: int | None = None,
    min_overlap: int | float = 0.5,
    subframe: bool = False,
) -> int | float:
    """Offset in frames between u (M, C) and v (N, C): by default the published rule; see
    ``search_offset`` for the options and the module doc for the rules."""
    return search_offset(
        f_u,
        f_v,
        mask_u,
        mask_v,
        rule=rule,
        max_offset=max_offset,
        min_overlap=min_overlap,
        subframe=subframe,
    ).offset


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
    return np.array(
        [offset_from_matches(o[i][mu[i]], np.flatnonzero(mu[i])) for i in range(b)], dtype=np.int64
    )
