"""MOCAP-SYN: a two-view synchronization benchmark from real 3D motion capture.

Each clip (COCO-17, 30 fps, metres) is cut into windows; every window is seen by pairs of
virtual cameras (azimuths at least 30 degrees apart), passed through a detector-like
corruption, and made asynchronous by cutting the first category_id frames of one view, with the
true offset drawn uniformly from [-max_offset, max_offset]. Train and test are split by clip,
never by window. Every random draw comes from a generator seeded by (seed, clip, window, camera
pair), so the same parameters give the same data.

Two protocols:
  'paper'        as NTU-SYN and CMU-SYN: windows of ``frames`` frames, only the starts are cut.
                 Both views end at the same moment, so the true offset equals
                 len(view 2) - len(view 1): the answer can be read off the lengths or the ends.
  'independent'  windows of ``frames + max_offset`` frames; after the start cut each view keeps
                 a length drawn uniformly from [frames - max_offset, frames], independently of
                 the offset and of the other view (its end loses whatever is left). Lengths and
                 ends then say nothing about the offset, and the views have the lengths of the
                 'paper' protocol.

The embedded default (``embedded/clips.npz``, shipped in the package) holds the clips already
converted to COCO-17 at 30 fps, so training runs without ../shared; ``build_mocap_syn
--write-embedded`` rebuilds it from ../shared/data/mocap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

import numpy as np

from sesyn_jax.data import cameras as cam_lib
from sesyn_jax.data.mocap import Clip
from sesyn_jax.data.syn_json import Pair, SynView, normalize_view
from sesyn_jax.io import atomic_write

EMBEDDED = os.path.join(os.path.dirname(__file__), "embedded", "clips.npz")
# Held-out clips: a CMU playground recording and one climbing recording.
TEST_CLIPS = ("cmu_01_03", "mocap_climb_seq_4_f0-2303")
PROTOCOLS = ("paper", "independent")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    frames: int = 120
    max_offset: int = 30
    train_stride: int = 30
    test_stride: int = 30
    camera_pairs: int = 2
    width: int = 1920
    height: int = 1080
    noise_px_min: float = 1.0
    noise_px_max: float = 4.0
    missing_prob: float = 0.02
    drop_frame_prob: float = 0.0
    seed: int = 0
    test_clips: tuple = TEST_CLIPS
    protocol: str = "independent"

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 0 <= self.max_offset < self.frames:
            raise ValueError(f"max_offset must be in [0, frames), got {self.max_offset}")

    @property
    def window(self) -> int:
        """Frames of motion behind one pair, before any cut."""
        return self.frames + (self.max_offset if self.protocol == "independent" else 0)


@dataclasses.dataclass
class PairRecord:
    """One built pair in pixels, before the published normalization. The views hold the whole
    synchronized window; the pair is view k's frames [category_idk, category_idk + lengthk)."""

    name: str
    clip: str
    split: str
    view1: np.ndarray  # (window, 17, 3) pixels, uncut
    view2: np.ndarray
    category_id1: int
    category_id2: int
    length1: int
    length2: int
    meta: dict

    @property
    def offset(self) -> int:
        return self.category_id1 - self.category_id2

    def view_frames(self, view: int) -> np.ndarray:
        """The frames a SYN JSON view file holds: up to the end of the crop (the reader then
        drops the first category_id, as the published loader does)."""
        if view == 1:
            return self.view1[: self.category_id1 + self.length1]
        return self.view2[: self.category_id2 + self.length2]

    def to_pair(self, width: int, height: int) -> Pair:
        v1 = SynView(self.view_frames(1), self.category_id1, (width, height), self.name)
        v2 = SynView(self.view_frames(2), self.category_id2, (width, height), self.name)
        return Pair(self.name, normalize_view(v1), normalize_view(v2), self.offset, (width, height))


@dataclasses.dataclass(frozen=True)
class Crop:
    """Where the two views of a pair lie in their synchronized window: view k keeps the frames
    [category_idk, category_idk + lengthk)."""

    category_id1: int
    category_id2: int
    length1: int
    length2: int

    @property
    def offset(self) -> int:
        return self.category_id1 - self.category_id2

    def apply(self, whole: Pair) -> Pair:
        """The pair this crop cuts from the synchronized, uncut views of ``whole``."""
        c1, c2 = self.category_id1, self.category_id2
        return Pair(
            whole.name,
            whole.view1[c1 : c1 + self.length1],
            whole.view2[c2 : c2 + self.length2],
            self.offset,
            whole.resolution,
        )


def draw_crop(rng: np.random.Generator, cfg: BuildConfig) -> Crop:
    """The crop of one pair under cfg.protocol. The offset is drawn first, so that 'paper'
    draws exactly what it always drew; 'independent' then draws both lengths from
    [frames - max_offset, frames], independently of the offset."""
    offset = int(rng.integers(-cfg.max_offset, cfg.max_offset + 1))
    c1, c2 = (offset, 0) if offset >= 0 else (0, -offset)
    if cfg.protocol == "paper":
        return Crop(c1, c2, cfg.frames - c1, cfg.frames - c2)
    lo = cfg.frames - cfg.max_offset
    l1, l2 = (int(x) for x in rng.integers(lo, cfg.frames + 1, size=2))
    return Crop(c1, c2, l1, l2)


class FreshCrops:
    """Training pairs cropped anew every epoch: each source is a synchronized pair of views of
    one window (normalized, uncut), and ``pair(i, rng)`` draws a new crop of source i with
    ``draw_crop``. Indexable like a list of the sources' fixed crops."""

    def __init__(self, records: list[PairRecord], cfg: BuildConfig):
        self.cfg = cfg
        self.sources = []
        self.crops = []  # each record's own crop, what the evaluation sees
        for r in records:
            n = len(r.view1)
            whole = dataclasses.replace(r, category_id1=0, category_id2=0, length1=n, length2=n)
            self.sources.append(whole.to_pair(cfg.width, cfg.height))
            self.crops.append(Crop(r.category_id1, r.category_id2, r.length1, r.length2))

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> Pair:
        return self.crops[i].apply(self.sources[i])

    @property
    def max_length(self) -> int:
        return self.cfg.frames

    def pair(self, i: int, rng: np.random.Generator) -> Pair:
        return draw_crop(rng, self.cfg).apply(self.sources[i])


def save_embedded(clips: list[Clip], path: str = EMBEDDED) -> None:

    meta = [
        {
            "name": c.name,
            "frames": int(len(c.joints)),
            "fps": c.fps,
            "source": os.path.relpath(c.source, os.path.dirname(os.path.dirname(c.source)))
            if os.path.isabs(c.source)
            else c.source,
            "licence": c.licence,
        }
        for c in clips
    ]
    arrays = {f"clip_{i:02d}": c.joints.astype(np.float16) for i, c in enumerate(clips)}
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays), binary=True)


def load_embedded(path: str = EMBEDDED) -> list[Clip]:
    """The clips shipped with the package (float16 positions, metres; ~1 mm precision)."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: the embedded clips are missing from this install; "
            f"rebuild them with python -m sesyn_jax.data.build_mocap_syn "
            f"--mocap-dir ../shared/data/mocap --write-embedded"
        )
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return [
            Clip(
                m["name"],
                z[f"clip_{i:02d}"].astype(np.float32),
                m["fps"],
                m["source"],
                m["licence"],
            )
            for i, m in enumerate(meta)
        ]


def _rng(seed: int, *keys) -> np.random.Generator:
    words = [seed] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def build_pairs(clips: list[Clip], cfg: BuildConfig) -> tuple[list[PairRecord], dict]:
    """All pairs of both splits and a summary {split: {clips, windows, pairs}, skipped: ...}."""
    corruption = cam_lib.Corruption(
        cfg.noise_px_min, cfg.noise_px_max, cfg.missing_prob, cfg.drop_frame_prob
    )
    records, summary = (
        [],
        {
            "train": {"clips": [], "windows": 0, "pairs": 0},
            "test": {"clips": [], "windows": 0, "pairs": 0},
            "skipped": {},
        },
    )
    for clip in clips:
        split = "test" if clip.name in cfg.test_clips else "train"
        n = len(clip.joints)
        if n < cfg.window:
            summary["skipped"][clip.name] = f"{n} frames < window of {cfg.window}"
            continue
        stride = cfg.test_stride if split == "test" else cfg.train_stride
        starts = list(range(0, n - cfg.window + 1, stride))
        summary[split]["clips"].append(clip.name)
        summary[split]["windows"] += len(starts)
        for w, start in enumerate(starts):
            window = clip.joints[start : start + cfg.window].astype(np.float64)
            for p in range(cfg.camera_pairs):
                rng = _rng(cfg.seed, clip.name, cfg.frames, w, p)
                cam1, cam2, cam_meta = cam_lib.sample_camera_pair(
                    rng, window, cfg.width, cfg.height
                )
                v1 = _round(cam_lib.detect(rng, cam1, window, corruption))
                v2 = _round(cam_lib.detect(rng, cam2, window, corruption))
                crop = draw_crop(rng, cfg)
                name = f"{clip.name}_F{cfg.frames:03d}_W{w:03d}_P{p}"
                records.append(
                    PairRecord(
                        name,
                        clip.name,
                        split,
                        v1,
                        v2,
                        crop.category_id1,
                        crop.category_id2,
                        crop.length1,
                        crop.length2,
                        {
                            "start": start,
                            "cameras": cam_meta,
                            "camera1": cam1.to_dict(),
                            "camera2": cam2.to_dict(),
                        },
                    )
                )
                summary[split]["pairs"] += 1
    return records, summary


def _round(x: np.ndarray) -> np.ndarray:
    """The precision of the JSON files (0.01 px, 0.001 score), so that in-memory pairs equal
    the pairs read back from disk."""
    out = x.copy()
    out[..., :2] = np.round(out[..., :2], 2)
    out[..., 2] = np.round(out[..., 2], 3)
    return out.astype(np.float32)


def embedded_pairs(cfg: BuildConfig, split: str) -> list[Pair]:
    """The MOCAP-SYN pairs of one split built in memory from the embedded clips."""
    records, _ = build_pairs(load_embedded(), cfg)
    return [r.to_pair(cfg.width, cfg.height) for r in records if r.split == split]


def embedded_fresh_crops(cfg: BuildConfig, split: str) -> FreshCrops:
    """The windows of one split as ``FreshCrops`` (cfg.protocol must be 'independent'): the
    built pairs' own crops by index, new crops of the same views on demand."""
    if cfg.protocol != "independent":
        raise ValueError(
            "fresh crops need the 'independent' protocol (the 'paper' protocol "
            "keeps both ends aligned)"
        )
    records, _ = build_pairs(load_embedded(), cfg)
    return FreshCrops([r for r in records if r.split == split], cfg)
