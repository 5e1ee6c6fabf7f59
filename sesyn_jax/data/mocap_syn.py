"""MOCAP-SYN: a two-view synchronization benchmark from real 3D motion capture (SPEC section 9).

Each clip (COCO-17, 30 fps, metres) is cut into windows of ``frames`` frames; every window is
seen by pairs of virtual cameras (azimuths at least 30 degrees apart), passed through a
detector-like corruption, and made asynchronous by cutting the first category_id frames of
one view, with the true offset drawn uniformly from [-max_offset, max_offset]. Train and test
are split by clip, never by window. Every random draw comes from a generator seeded by
(seed, clip, window, camera pair), so the same parameters give the same data.

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

EMBEDDED = os.path.join(os.path.dirname(__file__), "embedded", "clips.npz")
# Held-out clips: a CMU playground recording and one climbing recording.
TEST_CLIPS = ("cmu_01_03", "mocap_climb_seq_4_f0-2303")


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


@dataclasses.dataclass
class PairRecord:
    """One built pair in pixels, before the published normalization."""

    name: str
    clip: str
    split: str
    view1: np.ndarray   # (frames, 17, 3) pixels, uncut
    view2: np.ndarray
    category_id1: int
    category_id2: int
    meta: dict

    @property
    def offset(self) -> int:
        return self.category_id1 - self.category_id2

    def to_pair(self, width: int, height: int) -> Pair:
        v1 = SynView(self.view1, self.category_id1, (width, height), self.name)
        v2 = SynView(self.view2, self.category_id2, (width, height), self.name)
        return Pair(self.name, normalize_view(v1), normalize_view(v2), self.offset,
                    (width, height))


def save_embedded(clips: list[Clip], path: str = EMBEDDED) -> None:
    from sesyn_jax.checkpoint import atomic_write

    meta = [{"name": c.name, "frames": int(len(c.joints)), "fps": c.fps,
             "source": os.path.relpath(c.source, os.path.dirname(os.path.dirname(c.source)))
             if os.path.isabs(c.source) else c.source, "licence": c.licence} for c in clips]
    arrays = {f"clip_{i:02d}": c.joints.astype(np.float16) for i, c in enumerate(clips)}
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays), binary=True)


def load_embedded(path: str = EMBEDDED) -> list[Clip]:
    """The clips shipped with the package (float16 positions, metres; ~1 mm precision)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the embedded clips are missing from this install; "
                                f"rebuild them with python -m sesyn_jax.data.build_mocap_syn "
                                f"--mocap-dir ../shared/data/mocap --write-embedded")
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return [Clip(m["name"], z[f"clip_{i:02d}"].astype(np.float32), m["fps"], m["source"],
                     m["licence"]) for i, m in enumerate(meta)]


def _rng(seed: int, *keys) -> np.random.Generator:
    words = [seed] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def build_pairs(clips: list[Clip], cfg: BuildConfig) -> tuple[list[PairRecord], dict]:
    """All pairs of both splits and a summary {split: {clips, windows, pairs}, skipped: ...}."""
    corruption = cam_lib.Corruption(cfg.noise_px_min, cfg.noise_px_max, cfg.missing_prob,
                                    cfg.drop_frame_prob)
    records, summary = [], {"train": {"clips": [], "windows": 0, "pairs": 0},
                            "test": {"clips": [], "windows": 0, "pairs": 0}, "skipped": {}}
    for clip in clips:
        split = "test" if clip.name in cfg.test_clips else "train"
        n = len(clip.joints)
        if n < cfg.frames:
            summary["skipped"][clip.name] = f"{n} frames < window of {cfg.frames}"
            continue
        stride = cfg.test_stride if split == "test" else cfg.train_stride
        starts = list(range(0, n - cfg.frames + 1, stride))
        summary[split]["clips"].append(clip.name)
        summary[split]["windows"] += len(starts)
        for w, start in enumerate(starts):
            window = clip.joints[start:start + cfg.frames].astype(np.float64)
            for p in range(cfg.camera_pairs):
                rng = _rng(cfg.seed, clip.name, cfg.frames, w, p)
                cam1, cam2, cam_meta = cam_lib.sample_camera_pair(rng, window, cfg.width,
                                                                  cfg.height)
                v1 = _round(cam_lib.detect(rng, cam1, window, corruption))
                v2 = _round(cam_lib.detect(rng, cam2, window, corruption))
                offset = int(rng.integers(-cfg.max_offset, cfg.max_offset + 1))
                c1, c2 = (offset, 0) if offset >= 0 else (0, -offset)
                name = f"{clip.name}_F{cfg.frames:03d}_W{w:03d}_P{p}"
                records.append(PairRecord(name, clip.name, split, v1, v2, c1, c2,
                                          {"start": start, "cameras": cam_meta,
                                           "camera1": cam1.to_dict(), "camera2": cam2.to_dict()}))
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
