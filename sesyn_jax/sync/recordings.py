"""Reading the recordings, resampling them to the model's frame rate and normalizing them as
the model expects, and refusing those that cannot be synchronized."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from sesyn_jax.data.tracking import MOVING, motion_level
from sesyn_jax.sync.errors import BadInput, CannotSync
from sesyn_jax.sync.search import FINE_FACTOR

MIN_FRAMES = 16  # frames with a person, at the model's frame rate
MIN_MOTION = MOVING  # joint spread over time, in person sizes (see ``motion_level``)
FPS_RANGE = (1.0, 10000.0)  # plausible camera frame rates
MAX_HOURS = 24.0  # the longest plausible recording
BASE_BYTES = 500e6  # JAX, the compiled network and its work buffer
SEARCH_BYTES = 8192  # per frame: resampling, normalizing and the FFT offset search


@dataclasses.dataclass
class Prepared:
    """One recording at the model's rate: pixel poses and the normalized poses the model and
    the speed method see, (T, 17, 3) or, with all persons, (P, T, 17, 3). A recording faster
    than the model's rate also gives ``half``: the normalized poses on the grid shifted by half
    a frame of the model's rate (a 60 fps recording's odd frames for a 30 fps model), which
    the learned search uses to score offsets on a half-frame grid. A recording at twice the
    model's rate or faster also gives ``fine``: its normalized poses at twice the model's rate,
    which the learned search refines offsets on (``search.fine_offset``)."""

    pixels: np.ndarray
    normalized: np.ndarray
    half: np.ndarray | None = None
    fine: np.ndarray | None = None


def check_distinct(names: list[str]) -> None:
    """BadInput when one recording is given twice (the same path, or two paths to one file)."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = os.path.realpath(n)
        if key in seen:
            j = seen[key]
            what = (
                f"{n} is given twice" if names[j] == n else f"{names[j]} and {n} are the same file"
            )
            raise BadInput(f"{what} (recordings {j + 1} and {i + 1}); give each recording once")
        seen[key] = i


def check_fps(x: float, where: str) -> float:
    """A plausible camera frame rate, or BadInput naming ``where`` (a flag or a file)."""
    lo, hi = FPS_RANGE
    if not lo <= x <= hi:
        raise BadInput(
            f"{where}: {x:g} fps is not a plausible camera frame rate (expected {lo:g} to {hi:g})"
        )
    return x


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
        fps[r.path] = check_fps(r.fps, f"{r.path}: field 'fps'") if r.fps else rate
    return fps


def check_size(recs, fps: dict, rate: float, embedding_size: int) -> None:
    """Refuse, before any work, recordings longer than MAX_HOURS or whose work at the model's
    rate (both phases of a recording faster than it: ``phases``; the poses at ``fine_rate``)
    would not fit in the memory
    available now (CannotSync saying how much is needed)."""
    frames = 0
    for r in recs:
        t = r.poses.shape[-3]
        hours = t / fps[r.path] / 3600
        if hours > MAX_HOURS:
            raise CannotSync(
                f"{r.path}: {t} frames at {fps[r.path]:g} fps last {hours:.1f} hours; recordings "
                f"longer than {MAX_HOURS:g} hours are not plausible (check --fps)"
            )
        persons = r.poses.shape[0] if r.poses.ndim == 4 else 1
        copies = 2 if fps[r.path] > rate else 1  # a faster recording is embedded at two phases
        if fine_rate(fps[r.path], rate):  # and one twice as fast at twice the rate
            copies += 2
        frames += copies * persons * (int(np.floor((t - 1) * rate / fps[r.path])) + 1)
    need = BASE_BYTES + frames * (8 * embedding_size + SEARCH_BYTES)
    have = available_memory()
    if have is not None and need > have:
        raise CannotSync(
            f"the recordings make {frames} frames to embed at the model's {rate:g} fps, which "
            f"need about {need / 1e9:.1f} GB of memory; {have / 1e9:.1f} GB are available"
        )


def available_memory() -> float | None:
    """Bytes of memory available now (MemAvailable, and the cgroup's limit where one is set),
    None where the system does not say."""
    have = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    have = float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = float(f.read().strip())
        if limit != "max":
            left = float(limit) - used
            have = left if have is None else min(have, left)
    except (OSError, ValueError):
        pass
    return have


def prepare(recs, fps: dict, rate: float, mode: str, notes: list[str]) -> list[Prepared]:
    """Resample every recording to ``rate`` and normalize it by ``mode`` (and its half-frame
    phase, ``phases``, for a recording faster than ``rate``, and its poses at ``fine_rate``
    for one at least that fast)."""
    from sesyn_jax.data import normalization
    from sesyn_jax.data.resample import resample

    out = []
    for r in recs:
        poses, half = phases(r.poses, fps[r.path], rate)
        fast = fine_rate(fps[r.path], rate)
        fine = None if fast is None else resample(r.poses, fps[r.path], fast)
        res = r.resolution
        if mode == "published" and res is None:
            res = _extent(poses)
            notes.append(f"{r.path}: no resolution given; the detections' extent stands in")
        norm = [
            None if x is None else normalization.normalize(x, mode, res)
            for x in (poses, half, fine)
        ]
        out.append(Prepared(poses, *norm))
    return out


def fine_rate(fps: float, rate: float) -> float | None:
    """The rate offsets are refined at (``search.FINE_FACTOR`` x ``rate``) when a recording at
    ``fps`` is that fast (within 1 %: 59.94 fps counts as 60), else None."""
    fast = FINE_FACTOR * rate
    return fast if fps >= 0.99 * fast else None


def phases(poses: np.ndarray, fps: float, rate: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(poses at ``rate`` from the first frame, poses at ``rate`` from half a frame of ``rate``
    later); the second is None unless the recording is faster than ``rate`` (it then holds
    real frames between the first grid's: a 60 fps recording's odd frames at 30 fps)."""
    from sesyn_jax.data.resample import resample

    whole = resample(poses, fps, rate)
    if fps <= rate:
        return whole, None
    half = resample(poses, fps, rate, start=0.5 / rate)
    return whole, (half if half.shape[-3] else None)


def _extent(poses):
    xy = poses[..., :2][poses[..., 2] > 0]
    if not len(xy):
        return (1.0, 1.0)
    return (max(float(np.ceil(xy[:, 0].max())), 1.0), max(float(np.ceil(xy[:, 1].max())), 1.0))


def check_recording(poses: np.ndarray, name: str, rate: float | None = None) -> None:
    """Refuse a (T, 17, 3) recording (at ``rate`` fps) that cannot be synchronized."""
    person = (poses[..., 2] > 0).any(-1)
    if not person.any():
        raise CannotSync(f"{name}: no person detected in any frame")
    if person.sum() < MIN_FRAMES:
        raise CannotSync(
            f"{name}: a person is seen in only {int(person.sum())} "
            f"frame{'s' * (int(person.sum()) != 1)}"
            + (f" at the model's {rate:g} fps" if rate else "")
            + f"; at least {MIN_FRAMES} are needed"
        )
    level = motion_level(poses)
    if level < MIN_MOTION:
        raise CannotSync(
            f"{name}: almost no motion (the joints move {level:.3f} of the person's size; at "
            f"least {MIN_MOTION} is needed); every offset would fit equally well"
        )
