"""One pair of recordings: the learned search on embeddings, the speed correlation, and the
choice between them (--method)."""

from __future__ import annotations

import dataclasses

import numpy as np

from sesyn_jax.sync.errors import CannotSync

AGREE_WITHIN = 2  # frames
LOW_CONFIDENCE = 0.5
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


@dataclasses.dataclass
class PairResult:
    a: str
    b: str
    offset: float  # frames at the model's rate: the moment at frame m of a is at m + offset of b
    confidence: float
    method: str
    searches: dict  # method -> Search
    persons: list | None = None  # --all-persons: the matched person pairs behind this pair

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
    end left out; confidence as the command's description
    (``sesyn_jax.sync.cli``) says."""
    from sesyn_jax.inference import agreement, search_offset
    from sesyn_jax.model import inner_mask

    mask_a = np.asarray(inner_mask(np.ones(len(f_a), bool), inner_radius))
    mask_b = np.asarray(inner_mask(np.ones(len(f_b), bool), inner_radius))
    try:
        s = search_offset(
            f_a,
            f_b,
            mask_a,
            mask_b,
            rule="diagonal",
            max_offset=max_offset,
            min_overlap=min_overlap,
            subframe=True,
        )
    except ValueError as e:
        raise CannotSync(str(e)) from None
    band = int(round(2 * rate))
    agree, _ = agreement(f_a, f_b, mask_a, mask_b, offset=float(s.offset), band=band)
    return Search("learned", float(s.offset), agree, s.lags, s.scores)


def speed_search(a, b, max_offset: int | None = None, min_overlap=0.5) -> Search:
    """The correlation of the joints' vertical speeds (normalized poses, no model)."""
    from sesyn_jax.baselines import speed_search as search

    try:
        s = search(a, b, max_offset=max_offset, min_overlap=min_overlap, subframe=True)
    except ValueError as e:
        raise CannotSync(str(e)) from None
    return Search("speed", float(s.offset), float(s.confidence), s.lags, s.scores)


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
    searches = {}
    if method in ("learned", "auto"):
        searches["learned"] = learned_search(
            *feats, inner_radius, max_offset, min_overlap=min_overlap, rate=rate
        )
    if method in ("speed", "auto"):
        searches["speed"] = speed_search(*poses, max_offset, min_overlap)
    best = searches.get("learned") or searches["speed"]
    if "speed" in searches and best.confidence < LOW_CONFIDENCE:
        best = max(best, searches["speed"], key=lambda s: s.confidence)
    return PairResult(names[0], names[1], best.offset, best.confidence, best.method, searches)
