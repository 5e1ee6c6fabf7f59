"""Reading the recordings, resampling them to the model's frame rate and normalizing them as
the model expects, and refusing those that cannot be synchronized."""

from __future__ import annotations

import dataclasses

import numpy as np

from sesyn_jax.sync.errors import BadInput, CannotSync

MIN_FRAMES = 16  # frames with a person, at the model's frame rate
MIN_MOTION = 0.02  # joint spread over time, in person sizes (see ``motion_level``)


@dataclasses.dataclass
class Prepared:
    """One recording at the model's rate: pixel poses and the normalized poses the model and
    the speed method see, (T, 17, 3) or, with all persons, (P, T, 17, 3)."""

    pixels: np.ndarray
    normalized: np.ndarray


def read_all(names, rates, resolution, all_persons: bool, openpose_model: str) -> list:
    """Every recording through ``data.readers`` (``readers.Recording``); a file that cannot be
    read is BadInput naming it."""
    from sesyn_jax.data import readers
    from sesyn_jax.data.syn_json import PoseFormatError

    try:
        return [
            readers.read_recording(p, all_persons, openpose_model, r, resolution)
            for p, r in zip(names, rates)
        ]
    except PoseFormatError as e:
        raise BadInput(str(e)) from None


def frame_rates(recs, rate: float, notes: list[str]) -> dict[str, float]:
    """Each recording's frame rate (path -> fps): given, from its file, or the model's (noted)."""
    fps = {}
    for r in recs:
        if r.fps is None:
            notes.append(f"{r.path}: frame rate not given; assuming {rate:g} fps (use --fps)")
        fps[r.path] = r.fps or rate
    return fps


def prepare(recs, fps: dict, rate: float, mode: str, notes: list[str]) -> list[Prepared]:
    """Resample every recording to ``rate`` and normalize it by ``mode``."""
    from sesyn_jax.data import normalization
    from sesyn_jax.data.resample import resample

    out = []
    for r in recs:
        poses = resample(r.poses, fps[r.path], rate)
        res = r.resolution
        if mode == "published" and res is None:
            res = _extent(poses)
            notes.append(f"{r.path}: no resolution given; the detections' extent stands in")
        out.append(Prepared(poses, normalization.normalize(poses, mode, res)))
    return out


def _extent(poses):
    xy = poses[..., :2][poses[..., 2] > 0]
    if not len(xy):
        return (1.0, 1.0)
    return (max(float(np.ceil(xy[:, 0].max())), 1.0), max(float(np.ceil(xy[:, 1].max())), 1.0))


def motion_level(poses: np.ndarray) -> float:
    """How much the person moves, in person sizes: per joint seen in at least 30 % of the
    frames (and 3), the 90th percentile over frames of its distance from its median position,
    then the 75th percentile over those joints. A still person scores about its detector
    jitter (~0.005); real motion 0.1 and more."""
    from sesyn_jax.data.normalization import normalize

    seen = poses[..., 2] > 0
    xy = normalize(poses, "person")[..., :2]
    spreads = []
    for j in range(poses.shape[-2]):
        m = seen[:, j]
        if m.sum() >= max(3, 0.3 * len(poses)):
            d = np.linalg.norm(xy[m, j] - np.median(xy[m, j], axis=0), axis=-1)
            spreads.append(np.percentile(d, 90))
    return float(np.percentile(spreads, 75)) if spreads else 0.0


def check_recording(poses: np.ndarray, name: str, rate: float | None = None) -> None:
    """Refuse a (T, 17, 3) recording (at ``rate`` fps) that cannot be synchronized."""
    person = (poses[..., 2] > 0).any(-1)
    if not person.any():
        raise CannotSync(f"{name}: no person detected in any frame")
    if person.sum() < MIN_FRAMES:
        raise CannotSync(
            f"{name}: a person is seen in only {int(person.sum())} frames"
            + (f" at the model's {rate:g} fps" if rate else "")
            + f"; at least {MIN_FRAMES} are needed"
        )
    level = motion_level(poses)
    if level < MIN_MOTION:
        raise CannotSync(
            f"{name}: almost no motion (the joints move {level:.3f} of the person's size; at "
            f"least {MIN_MOTION} is needed); every offset would fit equally well"
        )
