"""Input normalizations of pose sequences (T, 17, 3) = (x, y, score), score 0 = not seen.

  'published'  x / width - 0.5, y / height - 0.5 (the published pipeline): the image size and
               where the person stands in the image shape the input.
  'person'     (x - c) / s, (y - c) / s with c the median centre of the person's box over the
               sequence and s the median of max(box width, box height): the same motion seen
               in a portrait or a landscape image, near or far, gives the same numbers, and x and
               y keep their common scale. Needs no resolution.

Either way every channel of a joint that is not seen is 0 and the score is kept.
"""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("published", "person")


def check_mode(mode: str) -> None:
    """ValueError unless ``mode`` is one of ``NORMALIZATIONS`` ('published', 'person')."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")


def person_box(poses: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (2,), size) of the person in pixel poses (..., T, 17, 3): medians over the frames
    with at least two joints seen of the box centre and of max(box width, box height). A
    sequence without such a frame gives centre 0 and size 1."""
    xy = poses[..., :2].reshape(-1, poses.shape[-2], 2)
    seen = poses[..., 2].reshape(-1, poses.shape[-2]) > 0
    ok = seen.sum(-1) >= 2
    if not ok.any():
        return np.zeros(2), 1.0
    big = np.where(seen[ok][..., None], xy[ok], np.inf)
    small = np.where(seen[ok][..., None], xy[ok], -np.inf)
    lo, hi = big.min(1), small.max(1)  # (F, 2)
    centre = np.median((lo + hi) / 2, axis=0)
    size = float(np.median((hi - lo).max(-1)))
    return centre, size if size > 0 else 1.0


def normalize(poses: np.ndarray, mode: str, resolution=None) -> np.ndarray:
    """Pixel poses (..., T, 17, 3) -> float32 normalized by ``mode``. 'published' needs the
    (width, height) ``resolution``.

    Args:
        poses: (..., T, 17, 3) x and y in pixels, and the detector score; score 0 = not seen.
        mode: 'published' (x / width - 0.5, y / height - 0.5) or 'person' (centred on the
            person's median box centre and divided by its median size over the sequence).
        resolution: (width, height) in pixels; needed by 'published' only.

    Returns:
        float32 array of the same shape: normalized x and y, the score unchanged; every channel
        of a joint with score 0 is 0.

    Raises:
        ValueError: an unknown ``mode``, or 'published' without ``resolution``.
    """
    check_mode(mode)
    out = np.asarray(poses, np.float32).copy()
    seen = out[..., 2] > 0
    if mode == "published":
        if resolution is None:
            raise ValueError("the 'published' normalization needs the image resolution")
        w, h = resolution
        out[..., 0] = out[..., 0] / w - 0.5
        out[..., 1] = out[..., 1] / h - 0.5
    else:
        centre, size = person_box(out)
        out[..., :2] = (out[..., :2] - centre.astype(np.float32)) / np.float32(size)
    out[~seen] = 0.0
    return out


def to_pixels(published: np.ndarray, resolution) -> np.ndarray:
    """Inverse of the 'published' normalization (joints not seen stay 0)."""
    out = np.asarray(published, np.float32).copy()
    seen = out[..., 2] > 0
    w, h = resolution
    out[..., 0] = (out[..., 0] + 0.5) * w
    out[..., 1] = (out[..., 1] + 0.5) * h
    out[~seen] = 0.0
    return out


def renormalize(published: np.ndarray, mode: str, resolution) -> np.ndarray:
    """A sequence already in the 'published' normalization -> ``mode``."""
    check_mode(mode)
    if mode == "published":
        return published
    return normalize(to_pixels(published, resolution), mode)
