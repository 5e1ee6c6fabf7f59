"""Accuracy of the sesyn-sync path (resample to the model's rate, normalize, embed in chunks,
diagonal search with sub-frame refinement) on the 'independent' MOCAP-SYN test pairs, per
method, at 30 fps and at 60 fps.

60 fps: the held-out test clips are interpolated to 60 fps and the pairs built from them as at
30 fps (240-frame views, offsets in [-60, 60] frames of 60 fps); the tool resamples each view
to the model's 30 fps, and its offset (seconds) is scored in 60 fps frames. 'no resampling'
runs the model on the 60 fps frames directly, to show what the resampling is for.

  python bench/sync_accuracy.py [--checkpoint default]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sesyn_jax import loading, metrics, sync  # noqa: E402
from sesyn_jax.data import mocap_syn, normalization  # noqa: E402
from sesyn_jax.data.mocap import Clip  # noqa: E402
from sesyn_jax.data.resample import interpolate, resample  # noqa: E402


def test_views(fps: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(view 1 pixels, view 2 pixels, true offset in frames of ``fps``) of the test split."""
    k = fps // 30
    cfg = mocap_syn.BuildConfig(
        frames=120 * k, max_offset=30 * k, train_stride=30 * k, test_stride=30 * k
    )
    clips = [c for c in mocap_syn.load_embedded() if c.name in cfg.test_clips]
    if k > 1:
        clips = [
            Clip(
                c.name,
                interpolate(c.joints, np.arange(0, len(c.joints) - 1 + 1e-9, 1 / k)),
                float(fps),
                c.source,
                c.licence,
            )
            for c in clips
        ]
    records, _ = mocap_syn.build_pairs(clips, cfg)
    out = []
    for r in records:
        p = r.to_pair(cfg.width, cfg.height)
        res = (cfg.width, cfg.height)
        out.append(
            (normalization.to_pixels(p.view1, res), normalization.to_pixels(p.view2, res), p.offset)
        )
    return out


def predict(loaded, views, fps, method, resample_to_model=True):
    rate = loaded.fps or 30.0
    work = rate if resample_to_model else fps
    model = loaded.model()
    radius = loaded.inner_radius
    preds, confs = [], []
    for a, b, _ in views:
        xa, xb = (
            normalization.normalize(resample(x, fps, work), loaded.normalization) for x in (a, b)
        )
        feats = None
        if method != "speed":
            feats = tuple(sync.embed(model, loaded.variables, x) for x in (xa, xb))
        r = sync.match_pair(
            feats, (xa, xb), ("a", "b"), method, radius, int(round(1.0 * work)), work
        )  # |d| <= 1 s
        preds.append(r.offset / work * fps)  # frames of the recordings' own rate
        confs.append(r.confidence)
    return np.array(preds), np.array(confs)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="default")
    args = p.parse_args()
    loaded = loading.load_model(args.checkpoint)
    print(f"model: {args.checkpoint} (trained at {loaded.fps or 30:g} fps, {loaded.normalization})")
    print(
        "| fps | method | pairs | frame error (own frames) | Acc@1 | error (s) | warned "
        "(confidence < 0.5) | frame error of the others | wrong by > 2 frames, not warned "
        "| s/pair |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for fps in (30, 60):
        views = test_views(fps)
        true = np.array([v[2] for v in views])
        rows = [("learned", True), ("speed", True), ("auto", True)]
        if fps != 30:
            rows.append(("learned", False))
        for method, resampled in rows:
            t0 = time.perf_counter()
            pred, conf = predict(loaded, views, fps, method, resampled)
            dt = (time.perf_counter() - t0) / len(views)
            m = metrics.sync_metrics(np.rint(pred).astype(int), true, fps)
            name = method + ("" if resampled else " (no resampling)")
            sure = conf >= sync.LOW_CONFIDENCE
            err = np.abs(np.rint(pred) - true)
            rest = f"{err[sure].mean():.2f}" if sure.any() else "-"
            print(
                f"| {fps} | {name} | {len(views)} | {m['frame_error']:.2f} | "
                f"{100 * m['acc@1']:.1f} | {m['abs_error']:.4f} | {int((~sure).sum())} | "
                f"{rest} | {int((sure & (err > 2)).sum())} | {dt:.3f} |"
            )
        zero = metrics.sync_metrics(np.zeros_like(true), true, fps)
        print(
            f"| {fps} | Zero | {len(views)} | {zero['frame_error']:.2f} | "
            f"{100 * zero['acc@1']:.1f} | {zero['abs_error']:.4f} | - | - | - | - |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
