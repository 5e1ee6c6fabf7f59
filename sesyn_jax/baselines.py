"""The paper's baselines: per-frame features that go through the same offset inference.

Simple: the normalized raw poses themselves, flattened (index v * 3 + c).
SSM: a self-similarity descriptor (after Junejo et al., "View-independent action recognition
from temporal self-similarities", the SSM baseline the paper cites): per sequence the matrix
D(i, j) of Euclidean distances between the (centred, scale-normalized) 2D poses of frames i and
j, and as frame i's feature the band D(i, i + k) for k in [-w, w], clamped at the ends. Distances
between poses change far less with the viewpoint than the poses themselves.
"""

from __future__ import annotations

import numpy as np


def simple_features(poses: np.ndarray) -> np.ndarray:
    """(T, V, 3) normalized poses -> (T, V * 3)."""
    return np.asarray(poses, np.float32).reshape(len(poses), -1)


def _normalized_xy(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(poses[..., :2], np.float64)
    seen = poses[..., 2] > 0
    w = seen.astype(np.float64)[..., None]
    center = (xy * w).sum(1, keepdims=True) / np.maximum(w.sum(1, keepdims=True), 1)
    xy = (xy - center) * w
    scale = np.sqrt(np.sum(xy ** 2) / max(w.sum(), 1.0)) + 1e-9
    return xy / scale, seen


def ssm_features(poses: np.ndarray, half_window: int = 15) -> np.ndarray:
    """(T, V, 3) normalized poses -> (T, 2 * half_window + 1) self-similarity descriptor."""
    xy, seen = _normalized_xy(poses)
    t = len(xy)
    both = seen[:, None, :] & seen[None, :, :]                       # (T, T, V)
    d2 = np.sum((xy[:, None] - xy[None, :]) ** 2, axis=-1)           # (T, T, V)
    dist = np.sqrt(np.sum(d2 * both, -1) / np.maximum(both.sum(-1), 1))
    k = np.arange(-half_window, half_window + 1)
    cols = np.clip(np.arange(t)[:, None] + k[None, :], 0, t - 1)
    return dist[np.arange(t)[:, None], cols].astype(np.float32)


BASELINES = {"Simple": simple_features, "SSM": ssm_features}
