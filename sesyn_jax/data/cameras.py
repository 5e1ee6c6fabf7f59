"""Virtual pinhole cameras and a detector-like corruption of projected joints.

Every function takes a ``numpy.random.Generator``: the same seed gives the same cameras, noise,
scores and missing joints.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Camera:
    """World -> camera: x_cam = R (x_world - center); pixels = f * (x, y) / z + (cx, cy).
    Camera axes: x right, y down, z forward (OpenCV); the world is y up."""

    rotation: np.ndarray  # (3, 3)
    center: np.ndarray  # (3,) metres
    focal: float  # pixels
    width: int
    height: int

    def to_dict(self) -> dict:
        return dict(
            rotation=self.rotation.round(6).tolist(),
            center=self.center.round(6).tolist(),
            focal=round(float(self.focal), 3),
            width=self.width,
            height=self.height,
        )


def look_at(
    center: np.ndarray, target: np.ndarray, focal: float, width: int = 1920, height: int = 1080
) -> Camera:
    forward = target - center
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    return Camera(
        np.stack([right, down, forward]),
        np.asarray(center, np.float64),
        float(focal),
        width,
        height,
    )


def project(cam: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points (..., 3) world -> (pixels (..., 2), depth (...,))."""
    x = (points - cam.center) @ cam.rotation.T
    z = x[..., 2]
    safe = np.where(z > 1e-6, z, 1e-6)
    uv = cam.focal * x[..., :2] / safe[..., None] + np.array([cam.width / 2, cam.height / 2])
    return uv, z


def sample_camera_pair(
    rng: np.random.Generator,
    joints: np.ndarray,
    width: int = 1920,
    height: int = 1080,
    min_separation_deg: float = 30.0,
    max_separation_deg: float = 150.0,
    focal_range: tuple = (1000.0, 1600.0),
    distance_range: tuple = (3.5, 6.5),
    height_range: tuple = (0.8, 2.0),
) -> tuple[Camera, Camera, dict]:
    """Two cameras looking at the motion ``joints`` (T, J, 3) from azimuths at least
    ``min_separation_deg`` apart, with their own heights, distances (metres) and focal lengths
    (pixels) drawn uniformly from the ranges, each placed farther when needed so that the whole
    motion stays in the image."""
    hips = joints[:, 11:13].mean(1)
    target = hips.mean(0)
    target = np.array([target[0], joints[..., 1].mean(), target[2]])
    spread = float(np.max(np.linalg.norm((joints - target)[..., [0, 2]], axis=-1)))
    vertical = float(np.ptp(joints[..., 1]))
    az1 = rng.uniform(0, 360)
    sep = rng.uniform(min_separation_deg, max_separation_deg) * rng.choice([-1, 1])
    cams, params = [], {"separation_deg": float(abs(sep))}
    for i, az in enumerate((az1, az1 + sep)):
        focal = rng.uniform(*focal_range)
        # distance so that the motion's extent fills at most ~80 % of the image height
        need = focal * max(vertical, 2 * spread * height / width) / (0.8 * height) + spread
        dist = max(rng.uniform(*distance_range), need)
        cam_h = rng.uniform(*height_range)
        a = np.deg2rad(az)
        center = target + np.array([dist * np.sin(a), 0.0, dist * np.cos(a)])
        center[1] = cam_h
        cams.append(look_at(center, target, focal, width, height))
        params[f"view{i + 1}"] = dict(
            azimuth_deg=float(az % 360),
            distance_m=float(dist),
            height_m=float(cam_h),
            focal_px=float(focal),
        )
    return cams[0], cams[1], params


@dataclasses.dataclass(frozen=True)
class Corruption:
    """Detector-like noise: Gaussian pixel noise with a per-view sigma drawn from
    [noise_px_min, noise_px_max]; per-joint scores in (0, 1] that drop with the noise drawn; a
    joint goes missing (score 0, coordinates 0) with probability ``missing_prob`` or when it
    leaves the image; whole frames are dropped (the person not detected) with
    ``drop_frame_prob``."""

    noise_px_min: float = 1.0
    noise_px_max: float = 4.0
    missing_prob: float = 0.02
    drop_frame_prob: float = 0.0


class DetectorDraws(NamedTuple):
    """The random numbers of one view's detection: T frames of J joints."""

    sigma: float  # pixel noise standard deviation
    noise: np.ndarray  # (T, J, 2) pixels
    score: np.ndarray  # (T, J) the score before its noise penalty, uniform in [0.75, 0.98)
    missing: np.ndarray  # (T, J) bool, the joint goes missing
    dropped: np.ndarray  # (T,) bool, the frame goes undetected


def draw_detector(
    rng: np.random.Generator, frames: int, joints: int, corruption: Corruption = Corruption()
) -> DetectorDraws:
    """The draws ``detect`` makes, in its order."""
    sigma = rng.uniform(corruption.noise_px_min, corruption.noise_px_max)
    noise = rng.normal(0.0, sigma, (frames, joints, 2))
    score = rng.uniform(0.75, 0.98, (frames, joints))
    missing = rng.random((frames, joints)) < corruption.missing_prob
    dropped = np.zeros(frames, bool)
    if corruption.drop_frame_prob > 0:
        dropped = rng.random(frames) < corruption.drop_frame_prob
    return DetectorDraws(sigma, noise, score, missing, dropped)


def detected(uv: np.ndarray, z: np.ndarray, width, height, d: DetectorDraws) -> np.ndarray:
    """Projected joints (pixels (T, J, 2), depths (T, J)) through the detector draws ``d``:
    (T, J, 3) float64 (x, y, score), every channel 0 where not detected."""
    uv = uv + d.noise
    # Larger error -> lower confidence, like a heatmap peak that is less sharp.
    err = np.linalg.norm(d.noise, axis=-1) / max(d.sigma, 1e-6)
    score = np.clip(d.score - 0.08 * err, 0.05, 1.0)
    inside = (z > 0.1) & (uv[..., 0] >= 0) & (uv[..., 0] < width)
    inside &= (uv[..., 1] >= 0) & (uv[..., 1] < height)
    keep = inside & ~d.missing & ~d.dropped[:, None]
    out = np.concatenate([uv, score[..., None]], axis=-1)
    out[~keep] = 0.0
    return out


def detect(
    rng: np.random.Generator, cam: Camera, joints: np.ndarray, corruption: Corruption = Corruption()
) -> np.ndarray:
    """(T, J, 3) world joints -> (T, J, 3) float32 (x, y, score) in pixels, as a 2D detector."""
    uv, z = project(cam, joints)
    d = draw_detector(rng, joints.shape[0], joints.shape[1], corruption)
    return detected(uv, z, cam.width, cam.height, d).astype(np.float32)
