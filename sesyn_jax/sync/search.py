"""One pair of recordings: the learned search on embeddings, the speed correlation, and the
choice between them (--method). 'auto' takes the learned answer unless its confidence is below
LOW_CONFIDENCE and the speed correlation's is at least LOW_CONFIDENCE: the two confidences
measure different things, so an unsure learned answer gives way only to a sure speed answer,
never to one that is merely a little less unsure.

Two things make an answer untrustworthy whatever its score says, and both are said:
  * a recording too short for the learned method: only frames whose receptive field lies inside
    the recording can be matched, and fewer than MIN_INNER of them gave confidently wrong
    offsets. 'learned' then refuses (saying how many seconds are needed); 'auto' answers with
    the speed correlation and a warning.
  * a best offset at the edge of the searched range (--max-offset, or the largest offset that
    still aligns --min-overlap of the shorter recording), or, with --max-offset, a best offset
    over all offsets that lies outside the range: the true offset may lie beyond it, so the
    confidence is lowered to at most EDGE_CONFIDENCE and a warning says which limit to widen.

Recordings at twice the model's rate or faster (60 fps for a 30 fps model) are matched at the
model's rate first, then the offset is refined at twice that rate: the diagonal rule on the
embeddings of the recordings at 2x the model's rate, over the FINE_WINDOW lags of that rate on
each side of the first answer. On the held-out 60 fps pairs of bench/sync_accuracy.py this took
the error from 0.86 to 0.55 frames of 60 fps (0.48 frames at 30 fps); the window keeps the
model's answer at its own rate, which is the more robust one (the model trained at 30 fps).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sesyn_jax.sync.errors import CannotSync

AGREE_WITHIN = 2  # frames
LOW_CONFIDENCE = 0.5
EDGE_CONFIDENCE = 0.4
MIN_INNER = 40  # frames at the model's rate whose receptive field lies inside the recording
FINE_FACTOR = 2  # the rate an offset is refined at, in multiples of the model's rate
FINE_WINDOW = 3  # lags of the fine rate searched on each side of the model-rate answer
METHODS = ("learned", "speed", "auto")
# The learned confidence: the agreement (``offset_search.agreement``) mapped through this monotone
# curve of (agreement, share of answers within 1/30 s), fitted by bench/sync_calibration.py on
# pairs rendered afresh from the training clips at 30 and 60 fps (docs/calibration.md).
CALIBRATION = (
    (0.0, 0.0),
    (0.309, 0.344),
    (0.772, 0.719),
    (0.938, 0.875),
    (0.998, 0.969),
    (1.0, 0.984),
)


def calibrated(agree: float) -> float:
    """The learned confidence of an agreement: linear between the CALIBRATION points."""
    xs, ys = zip(*CALIBRATION)
    return float(np.interp(agree, xs, ys))


@dataclasses.dataclass
class Search:
    """One method's outcome for one pair: offset in frames of the model's rate (fractional),
    confidence, and the score of every candidate offset (for the plot)."""

    method: str
    offset: float
    confidence: float
    lags: np.ndarray
    scores: np.ndarray
    edge: str | None = None  # the limit the best offset lies at: 'max_offset' or 'min_overlap'
    beyond: float | None = None  # the best offset of an unrestricted search, outside max_offset
    raw: float | None = None  # the score the confidence is calibrated from
    refined: bool = False  # the offset was refined at FINE_FACTOR x the model's rate


@dataclasses.dataclass
class PairResult:
    a: str
    b: str
    offset: float  # frames at the model's rate: the moment at frame m of a is at m + offset of b
    confidence: float
    method: str
    searches: dict  # method -> Search
    persons: list | None = None  # --all-persons: the matched person pairs behind this pair
    notes: list[str] = dataclasses.field(default_factory=list)  # warnings about this answer

    def seconds(self, rate: float) -> float:
        return self.offset / rate


def inner_frames(f, inner_radius: int) -> np.ndarray:
    """(T,) bool for embeddings ``f`` (T, C) of a whole recording: True on the frames that are
    not within ``inner_radius`` of an end (``model.inner_mask``), the frames it can match."""
    from sesyn_jax.model import inner_mask

    return np.asarray(inner_mask(np.ones(len(f), bool), inner_radius))


def learned_search(
    f_a,
    f_b,
    inner_radius: int = 0,
    max_offset: int | None = None,
    min_overlap=0.5,
    rate: float = 30.0,
    half: tuple | None = None,
    fine: tuple | None = None,
) -> Search:
    """The diagonal rule on embeddings (at ``rate`` fps), frames within ``inner_radius`` of an
    end left out; confidence as the command's description (``sesyn_jax.sync.cli``) says.
    ``half`` (h_a, h_b), either None: the embeddings of the recordings' half-frame phases
    (``recordings.phases``); every pairing of phases then finds the offset on its own (a's
    half phase against b's whole-frame one aligns d + 1/2, ...), and the median of their
    answers is the offset (``half_grid``). ``fine`` (g_a, g_b): the embeddings of both
    recordings at FINE_FACTOR x ``rate``; the answer is then refined at that rate
    (``fine_offset``), an answer at an edge of the range too (its confidence stays lowered)."""
    from sesyn_jax.offset_search import agreement

    def masked(f):
        return f, inner_frames(f, inner_radius)

    h_a, h_b = half or (None, None)
    # (features and mask of a, of b, the offset d of a whole frame of a against b that the
    # pairing's integer lag l aligns: d = l + shift)
    pairings = [(masked(f_a), masked(f_b), 0.0)]
    if h_a is not None:
        pairings.append((masked(h_a), masked(f_b), -0.5))
    if h_b is not None:
        pairings.append((masked(f_a), masked(h_b), 0.5))
    if h_a is not None and h_b is not None:
        pairings.append((masked(h_a), masked(h_b), 0.0))

    def search(limit):
        return half_grid(pairings, limit, min_overlap)

    s = _searched(search, max_offset)
    band = int(round(2 * rate))
    (fa, ma), (fb, mb), _ = pairings[0]
    agree, _ = agreement(fa, fb, ma, mb, offset=float(s.offset), band=band)
    found = Search("learned", float(s.offset), calibrated(agree), s.lags, s.scores, raw=agree)
    found = _trusted(found, search, max_offset)
    if fine is not None:
        refined = fine_offset(*fine, inner_radius, found.offset, min_overlap, max_offset)
        if refined is not None:
            found.offset, found.refined = refined, True
    return found


def fine_offset(
    g_a, g_b, inner_radius: int, coarse: float, min_overlap=0.5, max_offset: int | None = None
) -> float | None:
    """The offset (frames of the model's rate) that the diagonal rule finds on ``g_a``, ``g_b``
    (embeddings at FINE_FACTOR x the model's rate, frames within ``inner_radius`` of an end left
    out) among the FINE_WINDOW lags of that rate on each side of ``coarse`` (an offset at the
    model's rate) and within ``max_offset`` (model frames), refined by a parabola; None when no
    lag there aligns enough frames."""
    from sesyn_jax.offset_search import diagonal_scores, parabola_peak, resolve_min_overlap

    ma, mb = inner_frames(g_a, inner_radius), inner_frames(g_b, inner_radius)
    centre = int(round(coarse * FINE_FACTOR))
    lo, hi = centre - FINE_WINDOW - 1, centre + FINE_WINDOW + 1  # a neighbour for the parabola
    need = resolve_min_overlap(min_overlap, int(ma.sum()), int(mb.sum()))
    scores, _ = diagonal_scores(g_a, g_b, ma, mb, lo, hi, need)
    inside = scores[1:-1].copy()
    if max_offset is not None:
        lags = np.arange(lo + 1, hi)
        inside[np.abs(lags) > max_offset * FINE_FACTOR] = np.nan
    if not np.isfinite(inside).any():
        return None
    i = 1 + int(np.nanargmax(inside))
    return (lo + i + parabola_peak(scores, i)) / FINE_FACTOR


@dataclasses.dataclass
class _Curve:
    offset: float
    lags: np.ndarray
    scores: np.ndarray


def half_grid(pairings: list, max_offset: int | None, min_overlap) -> _Curve:
    """The diagonal rule over several pairings of phases ((f_u, mask_u), (f_v, mask_v), shift):
    each pairing's score at integer lag l is a score of the offset l + shift. The offset is
    the median of the pairings' own answers within AGREE_WITHIN of the best mean score's
    offset (a pairing that found another peak is left out; each answer is refined by a
    parabola, plus its shift: on
    the held-out 60 fps pairs of bench/sync_accuracy.py this measured 1.07 frames of 60 fps,
    against 1.12 for the best of the mean scores on the half-frame grid and 1.22 for the first
    pairing alone). The curve (for the plot and the edge checks) holds the offsets' scores, the
    mean over the pairings that score them, on a grid of half frames when a shift is 1/2,
    within the range the first (whole-frame) pairing scores, so that its edges stay the edges.
    One pairing with shift 0 is ``offset_search.search_offset`` itself."""
    from sesyn_jax.offset_search import search_offset

    total: dict[int, float] = {}
    count: dict[int, int] = {}
    answers = []  # each pairing's own refined offset, as an offset of a whole frame of a
    span = None  # the first pairing's candidates (half frames): the others only fill in
    for (fu, mu), (fv, mv), shift in pairings:
        try:
            s = search_offset(
                fu,
                fv,
                mu,
                mv,
                rule="diagonal",
                max_offset=max_offset,
                min_overlap=min_overlap,
                subframe=True,
            )
        except ValueError:
            if span is None:
                raise  # the whole-frame pairing must have candidates
            continue
        answers.append(float(s.offset) + shift)
        h = np.rint(2 * (s.lags + shift)).astype(int)  # offsets in half frames
        ok = np.isfinite(s.scores)
        if span is None:
            span = (h[ok].min(), h[ok].max())
        ok &= (h >= span[0]) & (h <= span[1])
        for k, score in zip(h[ok], s.scores[ok]):
            total[k] = total.get(k, 0.0) + float(score)
            count[k] = count.get(k, 0) + 1
    step = 1 if any(h % 2 for h in total) else 2  # half frames between grid points
    grid = np.arange(min(total), max(total) + 1, step)
    scores = np.array([total[h] / count[h] if h in total else np.nan for h in grid])
    best = grid[int(np.nanargmax(scores))] / 2.0
    near = [x for x in answers if abs(x - best) <= AGREE_WITHIN]  # a pairing off on its own
    return _Curve(float(np.median(near)) if near else best, grid / 2.0, scores)


def speed_search(a, b, max_offset: int | None = None, min_overlap=0.5) -> Search:
    """The correlation of the joints' vertical speeds (normalized poses, no model)."""
    from sesyn_jax.baselines import speed_search as speed

    def search(limit):
        return speed(a, b, max_offset=limit, min_overlap=min_overlap, subframe=True)

    s = _searched(search, max_offset)
    return _trusted(
        Search("speed", float(s.offset), float(s.confidence), s.lags, s.scores), search, max_offset
    )


def _searched(search, max_offset):
    try:
        return search(max_offset)
    except ValueError as e:  # the library's advice in the command's words
        raise CannotSync(str(e).replace("lower min_overlap", "lower --min-overlap")) from None


def _trusted(s: Search, search, max_offset: int | None) -> Search:
    """Mark a search whose best candidate is the first or last one scored (``edge``), or, with
    ``max_offset``, whose unrestricted search finds its best outside the range (``beyond``),
    and lower its confidence to at most EDGE_CONFIDENCE."""
    scored = np.flatnonzero(np.isfinite(s.scores))
    best = int(np.nanargmax(s.scores))
    if best in (scored[0], scored[-1]):
        bound = max_offset is not None and abs(int(s.lags[best])) >= max_offset
        s.edge = "max_offset" if bound else "min_overlap"
    if max_offset is not None:
        try:
            everywhere = float(search(None).offset)
        except ValueError:
            everywhere = None
        if everywhere is not None and abs(everywhere) > max_offset:
            s.edge, s.beyond = "max_offset", everywhere
    if s.edge:
        s.confidence = min(s.confidence, EDGE_CONFIDENCE)
    return s


def learned_frames(inner_radius: int) -> int:
    """The fewest frames (model's rate) the learned method matches: MIN_INNER inner frames."""
    return 2 * inner_radius + MIN_INNER


def too_short(lengths: tuple, names: tuple, inner_radius: int, rate: float) -> str | None:
    """Why the learned method cannot match these recordings (frames at ``rate``), or None."""
    need = learned_frames(inner_radius)
    for n, t in zip(names, lengths):
        if t < need:
            return (
                f"{n} lasts {t / rate:.2f} s; the learned method needs at least "
                f"{need / rate:.2f} s ({need} frames at the model's {rate:g} fps: frames within "
                f"{inner_radius / rate:.2f} s of an end cannot be matched)"
            )
    return None


def edge_note(s: Search, rate: float, max_offset: int | None, min_overlap: float) -> str:
    where = f"{s.offset / rate:+.3f} s"
    if s.edge == "max_offset":
        outside = (
            f"; over all offsets the best is {s.beyond / rate:+.3f} s"
            if s.beyond is not None
            else ""
        )
        return (
            f"warning: the best {s.method} offset within --max-offset {max_offset / rate:g} s is "
            f"{where}{outside}; the true offset may lie beyond the searched range: search a "
            f"wider range"
        )
    return (
        f"warning: the best {s.method} offset ({where}) is the largest that still aligns "
        f"{min_overlap:g} of the shorter recording (--min-overlap); the true offset may align "
        f"less of them: lower --min-overlap"
    )


def match_pair(
    feats: tuple | None,
    poses: tuple,
    names: tuple,
    method: str,
    inner_radius: int = 0,
    max_offset: int | None = None,
    rate: float = 30.0,
    min_overlap: float = 0.5,
    half: tuple | None = None,
    fine: tuple | None = None,
) -> PairResult:
    """One pair by ``method``: ``feats`` (f_a, f_b) embeddings (None for 'speed'), ``poses``
    (a, b) normalized poses at the model's rate, ``half`` the embeddings of their half-frame
    phases and ``fine`` those at twice the model's rate (``learned_search``)."""
    searches, notes, failed = {}, [], {}
    if method in ("learned", "auto"):
        short = too_short((len(poses[0]), len(poses[1])), names, inner_radius, rate)
        if short and method == "learned":
            raise CannotSync(short + "; --method speed can try")
        if short:
            notes.append(f"warning: {short}; the offset comes from the speed correlation")
        else:
            try:
                searches["learned"] = learned_search(
                    *feats,
                    inner_radius,
                    max_offset,
                    min_overlap=min_overlap,
                    rate=rate,
                    half=half,
                    fine=fine,
                )
            except CannotSync as e:
                if method == "learned":
                    raise
                failed["learned"] = str(e)
    if method in ("speed", "auto"):
        try:
            searches["speed"] = speed_search(*poses, max_offset, min_overlap)
        except CannotSync as e:
            if method == "speed" or not searches:
                raise CannotSync("; ".join([*failed.values(), str(e)])) from None
            failed["speed"] = str(e)
    for m, why in failed.items():  # auto: one method failed, the other answers alone
        other = "speed correlation" if m == "learned" else "learned method"
        notes.append(f"note: the {m} search found no offset ({why}); the {other} answers alone")
    best = searches.get("learned") or searches["speed"]
    speed = searches.get("speed")
    if speed is not None and best.confidence < LOW_CONFIDENCE <= speed.confidence:
        best = speed  # an unsure learned answer gives way only to a sure speed answer
    if best.edge:
        notes.append(edge_note(best, rate, max_offset, min_overlap))
    return PairResult(
        names[0], names[1], best.offset, best.confidence, best.method, searches, notes=notes
    )
