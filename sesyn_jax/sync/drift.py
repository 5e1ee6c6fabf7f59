"""Clock drift between two long recordings: an offset AND a rate.

Two cameras whose clocks run at slightly different rates drift apart: a camera that records at
29.97 fps but writes 30 fps into its files (the NTSC case) loses 0.6 s against a true 30 fps
camera over 10 minutes, so no single offset synchronizes the whole recording. The model is

    time t of A = time (1 + r) t + d of B        (t, d in seconds; labelled times of the files)

with the sign convention of the command (``sesyn_jax.sync.cli``): "B = A + d" means the moment
at time t of A is at time t + d of B (B started recording d seconds before A when d > 0), here
at A's start (t = 0); ``drift_ppm`` is r x 1e6. A camera B that records at 29.97 fps but
whose files say 30 labels true time T as 0.999 T, so r = -1000 ppm ("B runs 1000 ppm slow");
over t seconds of A the offset moves by r t.

How (``estimate_drift``), on embeddings (T, D) at the model's frame rate, computed once for the
whole recordings (``sesyn_jax.sync.embed`` works in chunks: memory linear in the length):

1. windows along the overlap that a coarse, whole-recording offset gives (``window_offsets``):
   each window of A (20 s by default, every 10 s) is matched by the diagonal rule of
   ``offset_search.search_offset`` (the mean similarity of the frames each candidate offset aligns,
   refined to a fraction of a frame by ``offset_search.pick_offset``) only within a band of frames
   around the coarse offset wide enough for the largest drift searched (``max_drift_ppm``);
   the band of the similarity matrix is computed once (``offset_search.lag_blocks``) and summed
   per window, so time and memory stay linear in the length; each window's confidence is the
   learned agreement (as ``offset_search.agreement``: the share of its frames whose own best match
   lies within 2 frames of the window's offset);
2. a robust line through the windows' offsets against their centres in A (``fit_line``): a
   Theil-Sen start, then iteratively reweighted least squares with Tukey's biweight (scale
   from the median absolute residual), weighted by the windows' confidence, so that windows
   matched to the wrong moment get no weight; slope r, intercept d;
3. the rate's standard error: the inliers' scatter about the line combined with the error that
   the learned offsets' motion-dependent biases cause (a quarter frame, independent between
   30 s stretches: about 80 ppm over 3 minutes, 11 ppm over 10; ``systematic_slope_error``);
   and a confidence in [0, 1]: the share of the windows that are matched (agreement at least
   0.2, four times what a band of 100 frames gives by chance) and lie within 1 frame of the
   line. Windows that show other motion, or a line that only a few windows follow, lower it;
   recordings of unrelated motion score near 0.

Overlaps shorter than ``min_overlap_seconds`` (60 s) do not show a drift of a few hundred ppm
(60 s x 1000 ppm = 0.06 s, two frames at 30 fps): they get ``drift_ppm = None`` with a note,
and the single coarse offset; ``no_drift=True`` forces that single offset.

Several recordings (``fit_views``): with each recording's clock t_k = (1 + rho_k) t_0 + delta_k
against the first one's, a pair's rate is exactly 1 + r_ij = (1 + rho_j) / (1 + rho_i), linear
in log(1 + r): the log-rates and then the offsets in the first recording's time are fitted
by the command's robust fit of pairwise offsets (``views.fit_offsets``: IRLS over the pairs,
weighted by confidence), which the caller passes in.

In the command (``pair_drift``): the whole-recording learned offset is the coarse offset; when
a drift is measured, the pair's answer is the line (its offset at A's start, the agreement
along it as the confidence, method 'learned'): a single offset's agreement falls on a drifting
pair (to about 0.15 on a 10-minute NTSC pair), which would warn of a low confidence and let
'auto' take the speed correlation's single offset, which cannot describe a drift. A rate within
two standard errors of 0 (DISTINGUISHABLE) is not told from no drift: the pair keeps its single
offset, and the rate is reported as measured, not used (a minute of recording without drift
measures a few hundred ppm +- as much).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

import numpy as np

from sesyn_jax.offset_search import AGREE_FRAMES, lag_blocks, pick_offset
from sesyn_jax.sync.recordings import available_memory
from sesyn_jax.sync.search import PairResult, inner_frames

MIN_OVERLAP_SECONDS = 60.0
WINDOW_SECONDS = 20.0
HOP_SECONDS = 10.0
MAX_DRIFT_PPM = 2000.0  # the band each window searches covers this drift over the overlap
BAND_MARGIN_SECONDS = 0.5  # ... plus this much for an error of the coarse offset
MIN_WINDOWS = 5
INLIER_FRAMES = 1.0  # a window within this many frames of the line counts for the confidence
MATCHED = 0.2  # ... when its agreement is at least this
# the learned window offsets' error that depends on the motion (see systematic_slope_error):
# rendered 3-minute pairs with and without drift gave slope errors of 19-124 ppm (RMS 78),
# 10-minute ones 2-14 ppm, however small the windows' scatter about the line
BIAS_FRAMES = 0.25
BIAS_SECONDS = 30.0
LOW_CONFIDENCE = 0.5
DISTINGUISHABLE = 2.0  # a rate within this many standard errors of 0 is not used


@dataclasses.dataclass
class Windows:
    """Per window w (all (W,)), in frames of the model's rate: ``centres`` the mean real frame
    of A in the window, ``offsets`` the sub-frame offset (frame m of A is at m + offset of B),
    ``confidence`` the learned agreement in [0, 1] (0 where the best offset lies on the edge of
    the band searched: the window's true offset may lie outside it); per frame m of A (M,):
    ``frame_lags`` the offset of its most similar frame of B within the band (nan where it
    has none)."""

    centres: np.ndarray
    offsets: np.ndarray
    confidence: np.ndarray
    window: int
    band: int
    frame_lags: np.ndarray


@dataclasses.dataclass
class LineFit:
    """offsets ~ intercept + slope x centres. ``weights`` (W,) the final robust weights (0:
    outlier), ``residuals`` (W,), ``scale`` the robust residual scale, ``slope_stderr`` and
    ``intercept_stderr`` from the inliers' weighted residuals (nan with fewer than 3)."""

    slope: float
    intercept: float
    slope_stderr: float
    intercept_stderr: float
    weights: np.ndarray
    residuals: np.ndarray
    scale: float


@dataclasses.dataclass
class DriftFit:
    """The outcome for one pair at ``rate`` fps (the model's).

    offset: frames of B at A's frame 0 (the intercept d x rate; the coarse offset when
    ``drift_ppm`` is None); drift_ppm: r x 1e6 or None (then ``note`` says why);
    drift_ppm_stderr (1 sigma, ppm), confidence: as the module doc says; agreement: the
    learned confidence of ``sync.learned_search`` along the line instead of one offset (the
    share of A's frames in the span whose most similar frame of B within the band lies within
    AGREE_FRAMES of the line; comparable with a single offset's); windows, line: the data
    behind it (None when no windows were searched); span: the frames of A the windows cover."""

    offset: float
    rate: float
    drift_ppm: float | None
    drift_ppm_stderr: float | None = None
    confidence: float | None = None
    windows: Windows | None = None
    line: LineFit | None = None
    span: tuple[float, float] | None = None
    note: str | None = None
    agreement: float | None = None
    measured_ppm: float | None = None  # a rate measured but not used (``drift_ppm`` None)

    @property
    def offset_seconds(self) -> float:
        """d: the moment at time 0 of A is at time d of B."""
        return self.offset / self.rate

    def offset_at(self, t_a: float) -> float:
        """Seconds: the moment at time ``t_a`` (seconds) of A is at t_a + offset_at(t_a) of B."""
        r = 0.0 if self.drift_ppm is None else self.drift_ppm * 1e-6
        return self.offset_seconds + r * t_a


# ----------------------------------------------------------------------------- windows


def overlap_frames(len_a: int, len_b: int, offset: float) -> tuple[int, int]:
    """The frames [lo, hi) of A whose moment lies inside B at ``offset`` (frames)."""
    d = int(round(offset))
    return max(0, -d), min(len_a, len_b - d)


def window_starts(lo: int, hi: int, window: int, hop: int) -> np.ndarray:
    """Starts of windows of ``window`` frames spread evenly over [lo, hi), about ``hop`` apart,
    the first at lo and the last ending at hi (none when the span is shorter than a window)."""
    if hi - lo < window:
        return np.zeros(0, np.int64)
    n = (hi - lo - window) // hop + 1
    if lo + (n - 1) * hop + window < hi:
        n += 1
    return np.rint(np.linspace(lo, hi - window, n)).astype(np.int64)


def lag_band(
    f_a: np.ndarray,
    f_b: np.ndarray,
    mask_a: np.ndarray,
    mask_b: np.ndarray,
    lo: int,
    hi: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band of the similarity matrix around the offsets lo .. hi, in one pass over A:
    ``sims`` (M, L) float32 with sims[m, k] = S(m, m + lo + k) (``offset_search.lag_blocks``: the
    negative squared distance) where both frames are real and 0 elsewhere, ``valid`` (M, L)
    where they are, and ``best`` (M,) the lag index of each frame's most similar frame of B in
    the band (-1 where it has none). Memory O(M L): 5 bytes per entry."""
    m, num = len(f_a), hi - lo + 1
    sims = np.zeros((m, num), np.float32)
    valid = np.zeros((m, num), bool)
    best = np.full(m, -1, np.int64)
    for m0, sim, ok in lag_blocks(f_a, f_b, mask_a, mask_b, lo, hi):
        rows = slice(m0, m0 + len(sim))
        sims[rows] = np.where(ok, sim, 0.0)
        valid[rows] = ok
        best[rows] = np.where(ok.any(1), np.argmax(np.where(ok, sim, -np.inf), axis=1), -1)
    return sims, valid, best


def window_offsets(
    f_a: np.ndarray,
    f_b: np.ndarray,
    coarse_offset: float,
    starts: np.ndarray,
    window: int,
    band: int,
    mask_a: np.ndarray | None = None,
    mask_b: np.ndarray | None = None,
    min_share: float = 0.5,
) -> Windows:
    """Each window of A, frames s .. s + window - 1 for s in ``starts``, matched against B only
    at offsets within ``band`` frames of ``coarse_offset`` (rounded) by the diagonal rule:
    every candidate offset scored by the mean similarity of the real frame pairs it aligns in
    the window (at least ``min_share`` of the window's real frames), the best refined to a
    fraction of a frame (``offset_search.pick_offset``). f_a (M, D), f_b (N, D) embeddings at one
    frame rate; masks True on frames whose embedding can be trusted (``model.inner_mask``).
    Confidence: the share of the window's frames (with a real frame of B at the offset) whose
    own best match in the band lies within AGREE_FRAMES of the window's offset (chance: about
    5 / (2 band + 1)); 0 for a window that cannot be matched or whose best offset lies on the
    band's edge (the true one may lie beyond). The band of the similarity matrix is computed
    once for all windows: time O(M band D), memory O(M band) beside the embeddings."""
    ma = np.ones(len(f_a), bool) if mask_a is None else np.asarray(mask_a, bool)
    mb = np.ones(len(f_b), bool) if mask_b is None else np.asarray(mask_b, bool)
    c = int(round(coarse_offset))
    lags = np.arange(c - band, c + band + 1)
    sims, valid, best = lag_band(f_a, f_b, ma, mb, int(lags[0]), int(lags[-1]))
    n = len(starts)
    centres, offsets, conf = np.zeros(n), np.full(n, float(c)), np.zeros(n)
    for w, s in enumerate(np.asarray(starts, np.int64)):
        lo, hi = max(int(s), 0), min(int(s) + window, len(f_a))
        real = np.flatnonzero(ma[lo:hi]) + lo
        centres[w] = real.mean() if real.size else (lo + hi - 1) / 2
        if not real.size:
            continue
        count = valid[lo:hi].sum(0)
        total = sims[lo:hi].sum(0, dtype=np.float64)
        need = max(1, int(math.ceil(min_share * real.size)))
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.where(count >= need, total / count, np.nan)
        if not np.isfinite(scores).any():
            continue
        off, _ = pick_offset(lags, scores, subframe=True)
        offsets[w] = off
        if abs(round(off) - c) >= band:
            continue
        partner = real + int(round(off))
        inside = (partner >= 0) & (partner < len(f_b))
        inside[inside] &= mb[partner[inside]]
        votes = real[inside & (best[real] >= 0)]
        if votes.size:
            conf[w] = float(np.mean(np.abs(lags[best[votes]] - off) <= AGREE_FRAMES))
    frame_lags = np.where(best >= 0, lags[np.maximum(best, 0)], np.nan)
    return Windows(centres, offsets, conf, window, band, frame_lags)


# ----------------------------------------------------------------------------- line fit


def theil_sen(x: np.ndarray, y: np.ndarray, all_pairs: int = 400) -> tuple[float, float]:
    """Median of the pairwise slopes and the median intercept (robust to 29 % of outliers):
    every pair up to ``all_pairs`` points, beyond that each point with the one half the points
    further on (time and memory linear in the points)."""
    n = len(x)
    if n <= all_pairs:
        i, j = np.triu_indices(n, 1)
    else:
        i = np.arange(n - n // 2)
        j = i + n // 2
    dx = x[j] - x[i]
    ok = dx != 0
    slope = float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0
    return slope, float(np.median(y - slope * x))


def fit_line(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    tukey: float = 4.685,
    scale_floor: float = 0.05,
    iters: int = 30,
) -> LineFit:
    """Robust weighted line y ~ intercept + slope x over the points with weight > 0 (at least
    2): Theil-Sen start, then IRLS with Tukey's biweight at ``tukey`` x the robust scale
    (1.4826 x the median absolute residual, at least ``scale_floor``, in y's units), each point's
    weight multiplied by ``weights``. A point beyond the bound gets weight 0."""
    x, y, w0 = (np.asarray(v, np.float64) for v in (x, y, weights))
    use = w0 > 0
    if use.sum() < 2:
        raise ValueError(f"a line needs at least 2 weighted points, got {int(use.sum())}")
    slope, icpt = theil_sen(x[use], y[use])
    x0 = float(np.average(x[use], weights=w0[use]))  # centred: slope and intercept decouple
    icpt += slope * x0
    w = w0.copy()
    scale = scale_floor
    for _ in range(iters):
        r = y - (icpt + slope * (x - x0))
        scale = max(1.4826 * float(np.median(np.abs(r[use]))), scale_floor)
        u = r / (tukey * scale)
        w = w0 * np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if np.count_nonzero(w) < 2 or np.ptp(x[w > 0]) == 0:
            break
        a = np.stack([np.ones_like(x), x - x0], 1)
        sw = np.sqrt(w)
        (new_icpt, new_slope), *_ = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)
        done = abs(new_slope - slope) * max(np.ptp(x), 1.0) + abs(new_icpt - icpt) < 1e-9
        icpt, slope = float(new_icpt), float(new_slope)
        if done:
            break
    r = y - (icpt + slope * (x - x0))
    inl = w > 0
    se_s = se_i = math.nan
    if inl.sum() >= 3 and np.ptp(x[inl]) > 0:
        # weighted least squares: cov = sigma^2 (A' W A)^-1, sigma^2 from the inliers
        a = np.stack([np.ones(inl.sum()), x[inl]], 1)
        sigma2 = float(np.sum(w[inl] * r[inl] ** 2) / (inl.sum() - 2))
        cov = sigma2 * np.linalg.inv(a.T @ (w[inl, None] * a))
        se_i, se_s = (math.sqrt(max(float(v), 0.0)) for v in np.diag(cov))
    return LineFit(slope, icpt - slope * x0, se_s, se_i, w, r, scale)


# ----------------------------------------------------------------------------- one pair


def search_band(overlap: int, rate: float, max_drift_ppm: float = MAX_DRIFT_PPM) -> int:
    """Frames searched on each side of the coarse offset: the largest drift over the overlap,
    plus a margin for the coarse offset's own error."""
    return int(math.ceil(max_drift_ppm * 1e-6 * overlap + BAND_MARGIN_SECONDS * rate))


def band_bytes(frames_a: int, band: int) -> int:
    """Memory of ``lag_band`` for A's frames and a band of +-``band`` frames: a float32 and a
    bool per frame and offset."""
    return frames_a * (2 * band + 1) * 5


def systematic_slope_error(extent: float, rate: float) -> float:
    """The slope error (1 sigma) that the learned offsets' motion-dependent biases cause when
    the windows' centres span ``extent`` frames: biases of BIAS_FRAMES, independent between
    stretches of BIAS_SECONDS (at least two), spread over the extent. A bias that changes
    slowly along the recording looks like drift, and no residual shows it."""
    if extent <= 0:
        return math.inf
    stretches = max(2.0, extent / (BIAS_SECONDS * rate))
    return BIAS_FRAMES * math.sqrt(12.0 / stretches) / extent


def estimate_drift(
    f_a: np.ndarray,
    f_b: np.ndarray,
    coarse_offset: float,
    rate: float,
    mask_a: np.ndarray | None = None,
    mask_b: np.ndarray | None = None,
    no_drift: bool = False,
    min_overlap_seconds: float = MIN_OVERLAP_SECONDS,
    window_seconds: float = WINDOW_SECONDS,
    hop_seconds: float = HOP_SECONDS,
    max_drift_ppm: float = MAX_DRIFT_PPM,
    max_bytes: float | None = None,
) -> DriftFit:
    """Offset at A's start and drift of B against A from embeddings f_a (M, D), f_b (N, D) at
    ``rate`` fps (masks as in ``window_offsets``) and a whole-recording offset
    ``coarse_offset`` (frames; e.g. ``sync.learned_search``'s). See the module doc. The band
    grows with the overlap (hours of recording: gigabytes); when it would need more than
    ``max_bytes``, no drift is measured and the note says so."""
    if no_drift:
        return DriftFit(coarse_offset, rate, None, note="drift not estimated: one offset forced")
    lo, hi = overlap_frames(len(f_a), len(f_b), coarse_offset)
    span = max(0, hi - lo)
    if span < min_overlap_seconds * rate:
        return DriftFit(
            coarse_offset,
            rate,
            None,
            note=(
                f"drift not estimated: the recordings share {span / rate:.1f} s; at least "
                f"{min_overlap_seconds:g} s are needed to measure it"
            ),
        )
    window = int(round(window_seconds * rate))
    band = search_band(span, rate, max_drift_ppm)
    need = band_bytes(len(f_a), band)
    if max_bytes is not None and need > max_bytes:
        return DriftFit(
            coarse_offset,
            rate,
            None,
            note=(
                f"drift not estimated: over {span / rate / 60:.0f} min the band of offsets "
                f"searched needs about {need / 1e9:.1f} GB of memory; {max_bytes / 1e9:.1f} GB "
                f"can be used"
            ),
        )
    starts = window_starts(lo, hi, window, max(1, int(round(hop_seconds * rate))))
    wins = window_offsets(f_a, f_b, coarse_offset, starts, window, band, mask_a, mask_b)
    used = int(np.count_nonzero(wins.confidence))
    if used < MIN_WINDOWS:
        return DriftFit(
            coarse_offset,
            rate,
            None,
            windows=wins,
            note=(
                f"drift not estimated: only {used} of {len(starts)} windows of "
                f"{window_seconds:g} s could be matched; at least {MIN_WINDOWS} are needed"
            ),
        )
    line = fit_line(wins.centres, wins.offsets, wins.confidence)
    good = (wins.confidence >= MATCHED) & (np.abs(line.residuals) <= INLIER_FRAMES)
    conf = float(np.mean(good & (line.weights > 0)))
    kept = wins.centres[line.weights > 0]
    stat = line.slope_stderr if math.isfinite(line.slope_stderr) else 0.0
    stderr = 1e6 * math.hypot(stat, systematic_slope_error(float(np.ptp(kept)), rate))
    m = np.arange(lo, hi)
    seen = np.isfinite(wins.frame_lags[lo:hi])
    along = line.intercept + line.slope * m[seen]
    agree = float(np.mean(np.abs(wins.frame_lags[lo:hi][seen] - along) <= AGREE_FRAMES))
    return DriftFit(
        offset=line.intercept,
        rate=rate,
        drift_ppm=line.slope * 1e6,
        drift_ppm_stderr=stderr,
        confidence=conf,
        windows=wins,
        line=line,
        span=(float(lo), float(hi)),
        agreement=agree,
    )


def pair_drift(
    pair: PairResult,
    f_a: np.ndarray,
    f_b: np.ndarray,
    inner_radius: int,
    rate: float,
    no_drift: bool = False,
) -> tuple[PairResult, DriftFit]:
    """The command's drift step for one pair matched by ``search.match_pair`` on embeddings
    f_a, f_b (frames within ``inner_radius`` of an end not trusted): the drift fit from the
    learned search's offset and the pair's answer with it. When a drift is measured, and at
    least LOW_CONFIDENCE of the windows agree with the line, the answer is the line (see the
    module doc); otherwise the pair is unchanged and the fit holds the pair's offset with the
    note saying why no drift was measured (a line that few windows follow, as around a wrong
    whole-recording offset, is not used), and so is a rate within DISTINGUISHABLE standard
    errors of 0 (as on a minute or two of recording without drift: the fit keeps it as
    ``measured_ppm``)."""
    learned = pair.searches.get("learned")
    if learned is None:
        note = "drift not estimated: the recordings are too short for the learned method"
        return pair, DriftFit(pair.offset, rate, None, note=note)
    masks = [inner_frames(f, inner_radius) for f in (f_a, f_b)]
    have = available_memory()
    fit = estimate_drift(
        f_a,
        f_b,
        learned.offset,
        rate,
        *masks,
        no_drift=no_drift,
        max_bytes=None if have is None else have / 2,
    )
    if fit.drift_ppm is not None and fit.confidence < LOW_CONFIDENCE:
        note = (
            f"drift not estimated: only {fit.confidence:.0%} of the windows agree with one line "
            f"(at least {LOW_CONFIDENCE:.0%} are needed)"
        )
        fit = dataclasses.replace(fit, drift_ppm=None, note=note)
    if fit.drift_ppm is not None and abs(fit.drift_ppm) < DISTINGUISHABLE * fit.drift_ppm_stderr:
        seconds = (fit.span[1] - fit.span[0]) / rate
        note = (
            f"drift not distinguishable from 0: {fit.drift_ppm:+.0f} +- "
            f"{fit.drift_ppm_stderr:.0f} ppm over {_duration(seconds)} (less than "
            f"{DISTINGUISHABLE:g} standard errors); one offset used, no drift"
        )
        fit = dataclasses.replace(fit, drift_ppm=None, note=note, measured_ppm=fit.drift_ppm)
    if fit.drift_ppm is None:
        return pair, dataclasses.replace(fit, offset=pair.offset)
    notes = pair.notes
    if pair.method != "learned":  # the warnings about the speed answer no longer apply
        notes = [n for n in notes if f"best {pair.method} offset" not in n]
    line = dataclasses.replace(
        pair, offset=fit.offset, confidence=fit.agreement, method="learned", notes=notes
    )
    return line, fit


# ----------------------------------------------------------------------------- several views


@dataclasses.dataclass
class ViewsFit:
    """Per recording k (n,): ``drift_ppm`` rho_k x 1e6 against the first recording (None for
    all when the pairs' rates do not connect every recording), ``offsets`` delta_k in frames of
    the model's rate (time t of the first = time (1 + rho_k) t + delta_k of k); per pair: the
    residuals of the rate fit (in 1e6 log(1 + r), within 0.2 % of ppm below 2000 ppm; nan
    for pairs without a rate) and of the offset fit (frames). ``note``: why rates are missing."""

    drift_ppm: list | None
    offsets: np.ndarray
    rate_residuals: np.ndarray
    offset_residuals: np.ndarray
    note: str | None = None


def fit_views(
    n: int,
    pairs: list[tuple[int, int, DriftFit, float]],
    fit_offsets: Callable,
    rate_huber_ppm: float = 25.0,
    rate_tukey_ppm: float = 100.0,
) -> ViewsFit:
    """Rates and offsets of n recordings from pairwise fits (i, j, DriftFit of j against i,
    weight, e.g. the pair's confidence), with the command's robust fit of pairwise
    differences, ``fit_offsets(n, [(i, j, d_ij, weight)], huber=, tukey=) -> (t, residuals)``
    with t[0] = 0 and d_ij ~ t_j - t_i, raising ValueError when the pairs do not connect every
    recording (``sync.fit_offsets``; passed in, so that the command can import this module).
    Rates: fitted to 1e6 log(1 + r_ij) of the pairs with a rate (Huber, then Tukey, at the
    given ppm). Offsets: fitted to d_ij / (1 + rho_j) = delta_j / (1 + rho_j) -
    delta_i / (1 + rho_i), every pair (those without a rate give their single offset); the
    error of ``fit_offsets`` when they do not connect every recording."""
    with_rate = [(i, j, f, w) for i, j, f, w in pairs if f.drift_ppm is not None]
    rate_resid = np.full(len(pairs), np.nan)
    note = None
    try:
        logs, res = fit_offsets(
            n,
            [(i, j, 1e6 * math.log1p(f.drift_ppm * 1e-6), w) for i, j, f, w in with_rate],
            huber=rate_huber_ppm,
            tukey=rate_tukey_ppm,
        )
        rho = np.expm1(logs * 1e-6)
        k = 0
        for p, (_, _, f, _) in enumerate(pairs):
            if f.drift_ppm is not None:
                rate_resid[p] = res[k]
                k += 1
        drift = [float(x) * 1e6 for x in rho]
    except ValueError:
        rho = np.zeros(n)
        drift = None
        note = (
            "drift not estimated for the views: the pairs with a measured drift do not "
            "connect every recording"
        )
    scaled = [(i, j, f.offset / (1 + rho[j]), w) for i, j, f, w in pairs]
    prime, off_resid = fit_offsets(n, scaled)
    return ViewsFit(drift, prime * (1 + rho), rate_resid, off_resid, note)


# ----------------------------------------------------------------------------- output


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def describe_drift(fit: DriftFit, a: str, b: str) -> str:
    """One line for the command's text output (the note when no drift was measured)."""
    if fit.drift_ppm is None:
        return fit.note
    ppm = fit.drift_ppm
    how = "fast" if ppm > 0 else "slow"
    err = f" +- {fit.drift_ppm_stderr:.0f}" if fit.drift_ppm_stderr is not None else ""
    lo, hi = fit.span
    seconds = (hi - lo) / fit.rate
    line = (
        f"drift: {b} runs {abs(ppm):.0f}{err} ppm {how} against {a}: "
        f"{ppm * 1e-6 * seconds:+.3f} s over {_duration(seconds)}; "
        f"{fit.confidence:.0%} of the windows lie on the line"
    )
    if fit.confidence < LOW_CONFIDENCE:
        line += " (low: few windows agree with the line)"
    return line


def drift_fields(fit: DriftFit, with_windows: bool = True) -> dict:
    """JSON-ready fields: ``offset_seconds`` (at A's start), ``drift_ppm`` (null with
    ``drift_note``, and ``drift_ppm_measured`` when a rate was measured but not told from 0),
    ``drift_ppm_stderr``, ``drift_confidence`` (the share of the windows on the line),
    ``agreement`` and, with
    ``with_windows``, ``drift_windows``: per window A's time, the offset (seconds), its
    confidence and whether the line fit kept it."""
    out: dict = {"offset_seconds": round(fit.offset_seconds, 4)}
    if fit.drift_ppm is None:
        out["drift_ppm"] = None
        out["drift_note"] = fit.note
        if fit.measured_ppm is not None:
            out["drift_ppm_measured"] = round(fit.measured_ppm, 1)
            out["drift_ppm_stderr"] = round(fit.drift_ppm_stderr, 1)
        return out
    out["drift_ppm"] = round(fit.drift_ppm, 1)
    if fit.drift_ppm_stderr is not None:
        out["drift_ppm_stderr"] = round(fit.drift_ppm_stderr, 1)
    out["drift_confidence"] = round(fit.confidence, 3)
    out["agreement"] = round(fit.agreement, 3)
    if with_windows and fit.windows is not None:
        w, r = fit.windows, fit.rate
        keep = fit.line.weights > 0
        out["drift_windows"] = [
            {
                "time_a_seconds": round(float(c) / r, 3),
                "offset_seconds": round(float(o) / r, 4),
                "confidence": round(float(q), 3),
                "inlier": bool(k),
            }
            for c, o, q, k in zip(w.centres, w.offsets, w.confidence, keep)
        ]
    return out


def plot_drift(fit: DriftFit, path: str, a: str = "A", b: str = "B") -> None:
    """PNG: each window's offset (seconds) against A's time, kept windows filled and dropped
    ones hollow (marker size by confidence), and the fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sesyn_jax.io import atomic_write

    if fit.windows is None:
        raise ValueError(f"no windows to plot: {fit.note}")
    r = fit.rate
    w = fit.windows
    name_a, name_b = (os.path.basename(x.rstrip("/")) for x in (a, b))
    t, off = w.centres / r, w.offsets / r
    keep = fit.line.weights > 0 if fit.line is not None else np.zeros(len(t), bool)
    size = 12 + 60 * w.confidence
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.scatter(t[keep], off[keep], s=size[keep], color="C0", label="windows (kept)")
    if (~keep).any():
        ax.scatter(
            t[~keep], off[~keep], s=size[~keep], facecolors="none", edgecolors="C3", label="dropped"
        )
    if fit.drift_ppm is not None:
        ends = np.array([0.0, t.max() + w.window / (2 * r)])
        ax.plot(ends, [fit.offset_at(v) for v in ends], color="k", lw=1, label="fit")
        title = describe_drift(fit, name_a, name_b)
    else:
        title = fit.note
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(f"time t of {name_a} (s)", fontsize=8)
    ax.set_ylabel(f"offset d (s): t of {name_a} is t + d of {name_b}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)
