"""Training pairs rendered afresh from 3D motion capture: new cameras, crops and corruptions
for every pair of every epoch, so that a model trained on a few clips cannot learn the clips'
views, image sizes or lengths.

One pair, drawn by ``RenderedPairs.pair(i, rng)``:
  1. a clip, with probability proportional to the frames it can give, and a window of it;
  2. time-stretch: the window covers ``stretch`` x as much motion time, resampled (linear
     interpolation of the 3D joints) to the training frame rate; both views alike, so the true
     offset stays an integer number of frames;
  3. mirroring: the motion reflected left-right (x -> -x in the world, left and right joints
     swapped) with probability ``mirror``;
  4. two cameras (``cameras.sample_camera_pair``) on an image of a size drawn from ``sizes``
     (portrait and landscape), focal lengths drawn relative to the image size, camera heights
     and distances drawn from ranges;
  5. each view through a detector-like corruption with a pixel noise relative to the person's
     size, missing joints and undetected frames (``cameras.detect``);
  6. an independent crop (``mocap_syn.draw_crop``: the offset and both lengths drawn
     independently, so lengths and ends say nothing about the offset); clips shorter than the
     window give shorter pairs with proportionally smaller offsets;
  7. the 'published' normalization of each view with its image size, as every dataset's pairs
     (the batcher brings them to the model's input normalization).

``__getitem__(i)`` gives a fixed pair (seeded by the dataset seed and i), for reproducible
inspection; training draws ``pair(i, rng)`` with the generator the batcher seeds by
(seed, epoch, i).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sesyn_jax.data import cameras as cam_lib
from sesyn_jax.data import normalization
from sesyn_jax.data.mocap import Clip
from sesyn_jax.data.mocap_syn import BuildConfig, Crop, draw_crop
from sesyn_jax.data.resample import interpolate
from sesyn_jax.data.syn_json import Pair
from sesyn_jax.graph import MIRROR

MIN_SHIFT = 10  # a short clip is drawn only if its pairs can be offset by +-5 frames
LANDSCAPE_AND_PORTRAIT = ((1920, 1080), (1080, 1920), (1280, 720), (720, 1280), (640, 480))


@dataclasses.dataclass(frozen=True)
class Augment:
    """The random draws of one rendered pair (see the module doc)."""

    sizes: tuple = LANDSCAPE_AND_PORTRAIT
    stretch: tuple = (0.8, 1.25)  # motion time per output time; log-uniform
    mirror: float = 0.5
    focal: tuple = (0.5, 1.2)  # x max(width, height)
    distance_m: tuple = (2.5, 8.0)
    height_m: tuple = (0.3, 2.5)
    noise: tuple = (0.002, 0.02)  # pixel noise sigma, x the person's height in pixels
    missing_prob: tuple = (0.0, 0.1)
    drop_frame_prob: tuple = (0.0, 0.05)

    def __post_init__(self):
        if not self.sizes or any(len(s) != 2 or min(s) < 1 for s in self.sizes):
            raise ValueError(f"sizes must be (width, height) pairs >= 1, got {self.sizes}")
        if not 0 <= self.mirror <= 1:
            raise ValueError(f"mirror is a probability in [0, 1], got {self.mirror}")
        for name, lo_min in (
            ("stretch", 1e-3),
            ("focal", 1e-3),
            ("distance_m", 1e-3),
            ("height_m", -np.inf),
            ("noise", 0.0),
            ("missing_prob", 0.0),
            ("drop_frame_prob", 0.0),
        ):
            r = getattr(self, name)
            if len(r) != 2 or not (lo_min <= r[0] <= r[1]) or not np.isfinite(r).all():
                raise ValueError(f"{name} must be a range (low, high), low <= high, got {r}")
        for name in ("missing_prob", "drop_frame_prob"):
            if getattr(self, name)[1] >= 1:
                raise ValueError(f"{name} must stay below 1, got {getattr(self, name)}")


class RenderedPairs:
    """Pairs rendered from ``clips`` (3D, metres, at the training frame rate) with fresh random
    cameras, crops and corruptions every time ``pair`` is called. ``cfg`` gives the crop:
    frames, max_offset (protocol 'independent')."""

    def __init__(
        self,
        clips: list[Clip],
        cfg: BuildConfig,
        augment: Augment = Augment(),
        pairs_per_epoch: int = 256,
        seed: int = 0,
        min_length: int = 32,
    ):
        if cfg.protocol != "independent":
            raise ValueError("rendered pairs are cropped under the 'independent' protocol")
        self.min_length = min(int(min_length), cfg.frames - cfg.max_offset)
        # a clip must give a window of min_length + MIN_SHIFT frames at the largest stretch
        lo = (self.min_length + MIN_SHIFT - 1) * max(augment.stretch) + 1
        self.clips = [c for c in clips if len(c.joints) >= lo]
        if not self.clips:
            raise ValueError(f"no clip has the {lo:.0f} frames a rendered pair needs")
        self.cfg, self.augment = cfg, augment
        self.pairs_per_epoch = int(pairs_per_epoch)
        self.seed = seed
        frames = np.array([len(c.joints) for c in self.clips], np.float64)
        self.weights = frames / frames.sum()

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def __getitem__(self, i: int) -> Pair:
        return self.pair(i, np.random.default_rng([self.seed, 1 << 20, i]))

    @property
    def max_length(self) -> int:
        return self.cfg.frames

    def pair(self, i: int, rng: np.random.Generator) -> Pair:
        aug, cfg = self.augment, self.cfg
        k = int(rng.choice(len(self.clips), p=self.weights))
        clip = self.clips[k]
        stretch = float(np.exp(rng.uniform(*np.log(aug.stretch))))
        # output frames the clip can give at this stretch, and the window of this pair
        available = int((len(clip.joints) - 1) / stretch) + 1
        window = min(cfg.window, available)
        start = rng.uniform(0, len(clip.joints) - 1 - (window - 1) * stretch)
        joints = interpolate(clip.joints, start + stretch * np.arange(window))
        if rng.random() < aug.mirror:
            joints = mirror(joints)
        width, height = aug.sizes[int(rng.integers(len(aug.sizes)))]
        cam1, cam2, _ = cam_lib.sample_camera_pair(
            rng,
            joints,
            width,
            height,
            focal_range=tuple(f * max(width, height) for f in aug.focal),
            distance_range=aug.distance_m,
            height_range=aug.height_m,
        )
        views = []
        for cam in (cam1, cam2):
            px_height = _person_pixels(cam, joints)
            sigma = rng.uniform(*aug.noise) * px_height
            corruption = cam_lib.Corruption(
                sigma, sigma, rng.uniform(*aug.missing_prob), rng.uniform(*aug.drop_frame_prob)
            )
            views.append(cam_lib.detect(rng, cam, joints, corruption))
        crop = scaled_crop(rng, cfg, window, self.min_length)
        whole = Pair(clip.name, views[0], views[1], 0, (width, height))
        cut = crop.apply(whole)
        return Pair(
            f"{clip.name}#{i}",
            normalization.normalize(cut.view1, "published", (width, height)),
            normalization.normalize(cut.view2, "published", (width, height)),
            cut.offset,
            (width, height),
        )


def scaled_crop(rng: np.random.Generator, cfg: BuildConfig, window: int, min_length: int) -> Crop:
    """``draw_crop`` for a window of ``window`` frames: the configured crop when the window is
    full (frames + max_offset), else a smaller max_offset (at most (window - min_length) / 2)
    and frames = window - max_offset, so that both views keep at least ``min_length`` frames."""
    if window >= cfg.window:
        return draw_crop(rng, cfg)
    shift = min(cfg.max_offset, max((window - min_length) // 2, 0))
    return draw_crop(rng, dataclasses.replace(cfg, frames=window - shift, max_offset=shift))


def mirror(joints: np.ndarray) -> np.ndarray:
    """The motion reflected in the world's x = 0 plane, left and right joints swapped, so that
    the result is again a plausible person."""
    out = joints[:, MIRROR].copy()
    out[..., 0] = -out[..., 0]
    return out


def _person_pixels(cam: cam_lib.Camera, joints: np.ndarray) -> float:
    """Median height in pixels of the person's box in this camera."""
    uv, _ = cam_lib.project(cam, joints)
    return float(np.median(np.ptp(uv[..., 1], axis=1)))
