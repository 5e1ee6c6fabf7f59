"""Baselines: the paper's per-frame features that go through the same offset search, a
training-free motion cross-correlation, and two sanity predictors.

Zero: always 0. Length: len(view 2) - len(view 1), the true offset whenever both views end at
the same moment (the 'paper' layout); a benchmark on which either does well can be answered
without looking at the motion.
Speed: per frame, the mean absolute vertical speed of the joints seen in this frame and the
previous one (the idea behind Pose2Sim's synchronization step); every candidate offset is
scored by the Pearson correlation of the two views' speeds over the frames it aligns, and the
best wins. It needs no training and no model, and fails when there is little motion.
Simple: the normalized raw poses themselves, flattened (index v * 3 + c).
SSM: a self-similarity descriptor (after Junejo et al., "View-independent action recognition
from temporal self-similarities", the SSM baseline the paper cites): per sequence the matrix
D(i, j) of Euclidean distances between the (centred, scale-normalized) 2D poses of frames i and
j, and as frame i's feature the band D(i, i + k) for k in [-w, w], clamped at the ends. Distances
between poses change far less with the viewpoint than the poses themselves.
"""

from __future__ import annotations

import numpy as np

from sesyn_jax import offset_search


def simple_features(poses: np.ndarray) -> np.ndarray:
    """(T, V, 3) normalized poses -> (T, V * 3)."""
    return np.asarray(poses, np.float32).reshape(len(poses), -1)


def _normalized_xy(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(poses[..., :2], np.float64)
    seen = poses[..., 2] > 0
    w = seen.astype(np.float64)[..., None]
    center = (xy * w).sum(1, keepdims=True) / np.maximum(w.sum(1, keepdims=True), 1)
    xy = (xy - center) * w
    scale = np.sqrt(np.sum(xy**2) / max(w.sum(), 1.0)) + 1e-9
    return xy / scale, seen


def ssm_features(poses: np.ndarray, half_window: int = 15) -> np.ndarray:
    """(T, V, 3) normalized poses -> (T, 2 * half_window + 1) self-similarity descriptor."""
    xy, seen = _normalized_xy(poses)
    t = len(xy)
    both = seen[:, None, :] & seen[None, :, :]  # (T, T, V)
    d2 = np.sum((xy[:, None] - xy[None, :]) ** 2, axis=-1)  # (T, T, V)
    dist = np.sqrt(np.sum(d2 * both, -1) / np.maximum(both.sum(-1), 1))
    k = np.arange(-half_window, half_window + 1)
    cols = np.clip(np.arange(t)[:, None] + k[None, :], 0, t - 1)
    return dist[np.arange(t)[:, None], cols].astype(np.float32)


def speed_signal(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, V, 3) poses -> speed (T,) and its mask (T,): frame t's mean |y_t - y_(t-1)| over the
    joints seen in both frames; frame 0 and frames sharing no seen joint with the previous one
    have no speed (mask False)."""
    y = np.asarray(poses[..., 1], np.float64)
    seen = np.asarray(poses[..., 2]) > 0
    both = seen[1:] & seen[:-1]
    count = both.sum(1)
    speed = np.zeros(len(poses), np.float64)
    mask = np.zeros(len(poses), bool)
    speed[1:] = np.where(both, np.abs(y[1:] - y[:-1]), 0.0).sum(1) / np.maximum(count, 1)
    mask[1:] = count > 0
    return speed, mask


def speed_search(
    poses_u: np.ndarray,
    poses_v: np.ndarray,
    *,
    max_offset: int | None = None,
    min_overlap: int | float = 0.5,
    subframe: bool = False,
) -> offset_search.OffsetSearch:
    """Offset of u against v (frame m of u = frame m + d of v) by the correlation of their
    joint speeds; scores are Pearson correlations over the aligned frames with speed."""
    a, ma = speed_signal(poses_u)
    b, mb = speed_signal(poses_v)
    if not ma.any() or not mb.any():
        raise ValueError("a sequence has no two consecutive frames with a seen joint")
    lo, hi = offset_search.lag_range(len(a), len(b), max_offset)
    lags = np.arange(lo, hi + 1)
    need = max(2, offset_search.resolve_min_overlap(min_overlap, int(ma.sum()), int(mb.sum())))
    a, b = a * ma, b * mb
    fa, fb = ma.astype(np.float64), mb.astype(np.float64)
    n = np.rint(offset_search.lag_sums(fa, fb, lo, hi))
    sa, sb = offset_search.lag_sums(a, fb, lo, hi), offset_search.lag_sums(fa, b, lo, hi)
    saa, sbb = offset_search.lag_sums(a * a, fb, lo, hi), offset_search.lag_sums(fa, b * b, lo, hi)
    sab = offset_search.lag_sums(a, b, lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.maximum(n, 1)
        cov = sab - sa * sb / nn
        var = np.maximum(saa - sa * sa / nn, 0) * np.maximum(sbb - sb * sb / nn, 0)
        r = np.where((n >= need) & (var > 0), cov / np.sqrt(var), np.nan)
    offset, conf = offset_search.pick_offset(lags, r, subframe)
    return offset_search.OffsetSearch(offset, conf, lags, r, n.astype(np.int64), "correlation")


def zero_offsets(pairs) -> np.ndarray:
    return np.zeros(len(pairs), np.int64)


def length_offsets(pairs) -> np.ndarray:
    return np.array([len(p.view2) - len(p.view1) for p in pairs], np.int64)


def speed_offsets(pairs, **search) -> np.ndarray:
    """Speed predictions; ``search``: max_offset and min_overlap as for the learned features
    (a 1-D speed has no per-frame matches, so it always scores whole offsets)."""
    kw = {k: v for k, v in search.items() if k in ("max_offset", "min_overlap")}
    return np.array([speed_search(p.view1, p.view2, **kw).offset for p in pairs], np.int64)


# Per-frame features that go through the same offset search as the learned embeddings.
BASELINES = {"Simple": simple_features, "SSM": ssm_features}
# Predictors of whole pairs: name -> fn(pairs, **search) -> offsets.
PREDICTORS = {
    "Zero": lambda pairs, **_: zero_offsets(pairs),
    "Length": lambda pairs, **_: length_offsets(pairs),
    "Speed": speed_offsets,
}
