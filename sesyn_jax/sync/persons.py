"""Several people (--all-persons): every person of A matched with every person of B, the most
confident one-to-one pairs kept, and their offsets fused by a confidence-weighted median. The
fused confidence is the share of the pairs' confidence that agrees with the fused offset times
the mean confidence of the agreeing pairs: one matched pair keeps its own confidence, and
disagreeing pairs lower it."""

from __future__ import annotations

import numpy as np

from sesyn_jax.sync.errors import CannotSync
from sesyn_jax.sync.recordings import check_recording
from sesyn_jax.sync.search import AGREE_WITHIN, LOW_CONFIDENCE, PairResult, match_pair


def fuse_persons(results: list[PairResult]) -> tuple[float, float]:
    """Confidence-weighted median of the matched person pairs' offsets, and its confidence: the
    share of the pairs' confidence that agrees with it within AGREE_WITHIN frames, times the
    mean confidence of those agreeing pairs (never more than the most confident pair's)."""
    offs = np.array([r.offset for r in results], np.float64)
    w = np.array([max(r.confidence, 1e-6) for r in results])
    order = np.argsort(offs)
    cum = np.cumsum(w[order]) / w.sum()
    fused = float(offs[order][np.searchsorted(cum, 0.5)])
    agreeing = w[np.abs(offs - fused) <= AGREE_WITHIN]
    return fused, float(agreeing.sum() / w.sum() * agreeing.mean())


def match_persons(
    embed_fn,
    a: np.ndarray,
    b: np.ndarray,
    names: tuple,
    method: str,
    inner_radius: int = 0,
    max_offset: int | None = None,
    min_confidence: float = LOW_CONFIDENCE,
    rate: float = 30.0,
    min_overlap: float = 0.5,
) -> list[PairResult]:
    """a (P, T, 17, 3), b (Q, T', 17, 3) normalized poses; ``embed_fn(poses) -> (T, D)`` or
    None for 'speed': one-to-one person pairs by confidence."""
    usable_a, usable_b = _usable(a, names[0]), _usable(b, names[1])
    if not usable_a or not usable_b:
        raise CannotSync(
            f"no person with enough frames and motion in {names[0] if not usable_a else names[1]}"
        )
    use = method != "speed"
    fa = {p: embed_fn(a[p]) if use else None for p in usable_a}
    fb = {q: embed_fn(b[q]) if use else None for q in usable_b}
    cands = []
    for p in usable_a:
        for q in usable_b:
            try:
                r = match_pair(
                    (fa[p], fb[q]) if use else None,
                    (a[p], b[q]),
                    (f"{names[0]}#{p}", f"{names[1]}#{q}"),
                    method,
                    inner_radius,
                    max_offset,
                    rate,
                    min_overlap,
                )
            except CannotSync:
                continue
            cands.append((r, p, q))
    cands.sort(key=lambda x: -x[0].confidence)
    used_a, used_b, out = set(), set(), []
    for r, p, q in cands:
        if p in used_a or q in used_b or r.confidence < min_confidence:
            continue
        used_a.add(p)
        used_b.add(q)
        out.append(r)
    if not out:
        raise CannotSync(
            f"no person of {names[0]} matches a person of {names[1]} with confidence "
            f">= {min_confidence}"
        )
    return out


def match_fused(embed_fn, a, b, names: tuple, **search) -> PairResult:
    """A pair of recordings of several people: the fused offset of their matched persons."""
    persons = match_persons(embed_fn, a, b, names, **search)
    off, conf = fuse_persons(persons)
    first = persons[0]
    notes = [f"{p.a} ~ {p.b}: {n}" for p in persons for n in p.notes]
    return PairResult(names[0], names[1], off, conf, first.method, first.searches, persons, notes)


def _usable(x: np.ndarray, name: str) -> list[int]:
    ok = []
    for p in range(len(x)):
        try:
            check_recording(x[p], f"{name}#{p}")
            ok.append(p)
        except CannotSync:
            pass
    return ok
