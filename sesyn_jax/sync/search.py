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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sesyn_jax.sync.errors import CannotSync

AGREE_WITHIN = 2  # frames
LOW_CONFIDENCE = 0.5
EDGE_CONFIDENCE = 0.4
MIN_INNER = 40  # frames at the model's rate whose receptive field lies inside the recording
METHODS = ("learned", "speed", "auto")


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


def learned_search(
    f_a,
    f_b,
    inner_radius: int = 0,
    max_offset: int | None = None,
    min_overlap=0.5,
    rate: float = 30.0,
) -> Search:
    """The diagonal rule on embeddings (at ``rate`` fps), frames within ``inner_radius`` of an
    end left out; confidence as the command's description (``sesyn_jax.sync.cli``) says."""
    from sesyn_jax.offset_search import agreement, search_offset
    from sesyn_jax.model import inner_mask

    mask_a = np.asarray(inner_mask(np.ones(len(f_a), bool), inner_radius))
    mask_b = np.asarray(inner_mask(np.ones(len(f_b), bool), inner_radius))

    def search(limit):
        return search_offset(
            f_a,
            f_b,
            mask_a,
            mask_b,
            rule="diagonal",
            max_offset=limit,
            min_overlap=min_overlap,
            subframe=True,
        )

    s = _searched(search, max_offset)
    band = int(round(2 * rate))
    agree, _ = agreement(f_a, f_b, mask_a, mask_b, offset=float(s.offset), band=band)
    return _trusted(Search("learned", float(s.offset), agree, s.lags, s.scores), search, max_offset)


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
    except ValueError as e:
        raise CannotSync(str(e)) from None


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
) -> PairResult:
    """One pair by ``method``: ``feats`` (f_a, f_b) embeddings (None for 'speed'), ``poses``
    (a, b) normalized poses at the model's rate."""
    searches, notes = {}, []
    if method in ("learned", "auto"):
        short = too_short((len(poses[0]), len(poses[1])), names, inner_radius, rate)
        if short and method == "learned":
            raise CannotSync(short + "; --method speed can try")
        if short:
            notes.append(f"warning: {short}; the offset comes from the speed correlation")
        else:
            searches["learned"] = learned_search(
                *feats, inner_radius, max_offset, min_overlap=min_overlap, rate=rate
            )
    if method in ("speed", "auto"):
        searches["speed"] = speed_search(*poses, max_offset, min_overlap)
    best = searches.get("learned") or searches["speed"]
    speed = searches.get("speed")
    if speed is not None and best.confidence < LOW_CONFIDENCE <= speed.confidence:
        best = speed  # an unsure learned answer gives way only to a sure speed answer
    if best.edge:
        notes.append(edge_note(best, rate, max_offset, min_overlap))
    return PairResult(
        names[0], names[1], best.offset, best.confidence, best.method, searches, notes=notes
    )
