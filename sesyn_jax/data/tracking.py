"""People followed across frames: from per-frame detections (N_t, 17, 3) to one pose sequence
per person, and the main person among them.

A person's track continues with the detection of a later frame whose box overlaps its last box
or whose box centre lies within STEP person sizes per elapsed frame of it (the nearest such
detection, one detection per track); a track unseen for more than MAX_GAP frames is closed,
and a detection that continues no track starts a new one. So a person missed for a few frames
keeps their track, and a bystander far away is never taken for them.

The main person is the one who moves (``motion_level`` at least MOVING) with the most detected
joint confidence over the recording; when nobody moves, the one with the most confidence.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sesyn_jax.data.normalization import normalize

MAX_GAP = 30  # frames a person may go undetected and keep their track
STEP = 0.5  # person sizes a box centre may move per frame
MOVING = 0.02  # motion_level of a moving person (a still one scores its detector jitter, ~0.005)


@dataclasses.dataclass
class Followed:
    """Which person the main-person sequence follows, when several were tracked."""

    person: int  # index among the tracks (as --all-persons numbers them)
    persons: int  # how many people were tracked
    frames_seen: int
    frames: int
    centre: tuple[float, float]  # median box centre, pixels

    def to_dict(self) -> dict:
        return {
            "person": self.person,
            "persons": self.persons,
            "frames_seen": self.frames_seen,
            "frames": self.frames,
            "centre_px": [round(self.centre[0], 1), round(self.centre[1], 1)],
        }

    def describe(self) -> str:
        return (
            f"{self.persons} people tracked; followed person {self.person}, seen in "
            f"{self.frames_seen} of {self.frames} frames around ({self.centre[0]:.0f}, "
            f"{self.centre[1]:.0f}) px (--all-persons matches every person)"
        )


def _box(det: np.ndarray) -> np.ndarray | None:
    """(x0, y0, x1, y1) of a detection's seen joints, or None when fewer than two are seen."""
    seen = det[:, 2] > 0
    if seen.sum() < 2:
        return None
    xy = det[seen, :2].astype(np.float64)
    return np.concatenate([xy.min(0), xy.max(0)])


def _size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_all(frames: list[np.ndarray], max_gap: int = MAX_GAP, step: float = STEP) -> np.ndarray:
    """Per-frame detections (N_t, 17, 3) -> (P, T, 17, 3), every person followed as the module
    doc says, persons ordered by how many frames they are seen in (most first)."""
    tracks: list[dict] = []
    for t, dets in enumerate(frames):
        boxes = [_box(d) for d in dets]
        cand = []
        for ti, tr in enumerate(tracks):
            gap = t - tr["t"]
            if gap > max_gap + 1:
                continue
            for di, box in enumerate(boxes):
                if box is None:
                    continue
                size = max(_size(tr["box"]), _size(box), 1.0)
                dist = np.linalg.norm((box[:2] + box[2:]) / 2 - (tr["box"][:2] + tr["box"][2:]) / 2)
                dist /= size
                iou = _overlap(box, tr["box"])
                if iou > 0 or dist <= step * gap:
                    cand.append((dist - iou, ti, di))
        used_t, used_d = set(), set()
        for _, ti, di in sorted(cand):
            if ti in used_t or di in used_d:
                continue
            tracks[ti]["frames"][t] = dets[di]
            tracks[ti]["box"], tracks[ti]["t"] = boxes[di], t
            used_t.add(ti)
            used_d.add(di)
        for di, box in enumerate(boxes):
            if di not in used_d and box is not None:
                tracks.append({"frames": {t: dets[di]}, "box": box, "t": t})
    tracks.sort(key=lambda tr: -len(tr["frames"]))
    out = np.zeros((len(tracks), len(frames), 17, 3), np.float32)
    for p, tr in enumerate(tracks):
        for t, d in tr["frames"].items():
            out[p, t] = d
    return out


def motion_level(poses: np.ndarray) -> float:
    """How much the person moves, in person sizes: per joint seen in at least 30 % of the
    frames where the person is detected (and 3), the 90th percentile over frames of its
    distance from its median position, then the 75th percentile over those joints. Frames
    without the person do not count, so a person who enters late or leaves early scores as
    they move. A still person scores about its detector jitter (~0.005); real motion 0.1 and
    more."""
    seen = poses[..., 2] > 0
    detected = int(seen.any(-1).sum())
    xy = normalize(poses, "person")[..., :2]
    spreads = []
    for j in range(poses.shape[-2]):
        m = seen[:, j]
        if m.sum() >= max(3, 0.3 * detected):
            d = np.linalg.norm(xy[m, j] - np.median(xy[m, j], axis=0), axis=-1)
            spreads.append(np.percentile(d, 90))
    return float(np.percentile(spreads, 75)) if spreads else 0.0


def main_person(tracks: np.ndarray) -> int:
    """Index of the main person among (P, T, 17, 3) tracks (P >= 1), as the module doc says."""
    moving = [motion_level(tr) >= MOVING for tr in tracks]
    mass = [float(tr[..., 2].sum()) for tr in tracks]
    return max(range(len(tracks)), key=lambda p: (moving[p], mass[p]))


def track_main(frames: list[np.ndarray]) -> tuple[np.ndarray, Followed | None]:
    """Per-frame detections -> (T, 17, 3) of the main person, and which person that is when
    several were tracked (None for one or nobody)."""
    tracks = track_all(frames)
    if len(tracks) == 0:
        return np.zeros((len(frames), 17, 3), np.float32), None
    k = main_person(tracks)
    if len(tracks) == 1:
        return tracks[0], None
    seen = (tracks[k, ..., 2] > 0).any(-1)
    boxes = [b for t in np.flatnonzero(seen) if (b := _box(tracks[k, t])) is not None]
    centre = np.median([(b[:2] + b[2:]) / 2 for b in boxes], axis=0) if boxes else np.zeros(2)
    followed = Followed(k, len(tracks), int(seen.sum()), len(frames), (centre[0], centre[1]))
    return tracks[k], followed
