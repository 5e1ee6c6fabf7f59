"""Pose recordings resampled to another frame rate, and linear interpolation at fractional
frame positions.

Output frame k shows time k / fps_out; it lies at position p = k * fps_in / fps_out of the input.
A joint seen (score > 0) in both input frames around p is interpolated linearly; otherwise it
takes the nearest input frame's values (so a joint is never made up between detections). The
score always comes from the nearest frame. The output spans the input's duration:
floor((T - 1) * fps_out / fps_in) + 1 frames.
"""

from __future__ import annotations

import numpy as np


def _brackets(positions: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For positions in [0, t - 1]: the frames around each (lo, hi = lo + 1 or the last) and
    the weight of hi, position - lo."""
    lo = np.minimum(np.floor(positions).astype(np.int64), t - 1)
    return lo, np.minimum(lo + 1, t - 1), positions - lo


def interpolate(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(T, ...) values at integer frames -> linear interpolation at fractional ``positions``
    (clipped to [0, T - 1]); every value is taken as seen (3D motion, not detections)."""
    positions = np.clip(positions, 0, len(x) - 1)
    lo, hi, w = _brackets(positions, len(x))
    w = w.reshape((-1,) + (1,) * (x.ndim - 1))
    return x[lo] * (1 - w) + x[hi] * w


def resample(poses: np.ndarray, fps_in: float, fps_out: float, start: float = 0.0) -> np.ndarray:
    """(..., T, J, 3) at fps_in -> (..., T', J, 3) at fps_out (see the module doc); with
    ``start`` (seconds, >= 0) output frame k shows time start + k / fps_out.

    Args:
        poses: (..., T, J, 3) x, y and score per joint; time is axis -3.
        fps_in: the frame rate of ``poses``, frames per second.
        fps_out: the frame rate wanted, frames per second.
        start: the time of output frame 0, in seconds after input frame 0.

    Returns:
        float32 (..., T', J, 3): the output frames that fall within the input's time span
        (none when ``start`` lies beyond it); a copy when the rates are equal and
        ``start`` is 0.

    Raises:
        ValueError: a frame rate that is not a positive finite number, or a negative or
            infinite ``start``.
    """
    for name, v in (("fps_in", fps_in), ("fps_out", fps_out)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive frame rate, got {v}")
    poses = np.asarray(poses, np.float32)
    t = poses.shape[-3]
    if not (np.isfinite(start) and start >= 0):
        raise ValueError(f"start must be a time >= 0 in seconds, got {start}")
    first = start * fps_in  # input position of output frame 0
    if (fps_in == fps_out and first == 0) or t == 0:
        return poses.copy()
    if first > t - 1:
        return poses[..., :0, :, :].copy()
    n = int(np.floor((t - 1 - first) * fps_out / fps_in + 1e-9)) + 1
    lo, hi, w = _brackets(first + np.arange(n, dtype=np.float64) * (fps_in / fps_out), t)
    w = w.astype(np.float32)
    nearest = np.where(w < 0.5, lo, hi)
    a, b = np.take(poses, lo, axis=-3), np.take(poses, hi, axis=-3)
    out = np.take(poses, nearest, axis=-3).copy()
    both = (a[..., 2] > 0) & (b[..., 2] > 0)
    wb = w.reshape((n, 1))
    xy = a[..., :2] * (1 - wb[..., None]) + b[..., :2] * wb[..., None]
    out[..., :2] = np.where(both[..., None], xy, out[..., :2])
    return out
