"""Accuracy of the sesyn-sync path (resample to the model's rate, normalize, embed in chunks,
diagonal search with sub-frame refinement) on the 'independent' MOCAP-SYN test pairs, per
method, at 30 fps and at 60 fps.

60 fps: the held-out test clips are interpolated to 60 fps and the pairs built from them as at
30 fps (240-frame views, offsets in [-60, 60] frames of 60 fps); the tool resamples each view
to the model's 30 fps at both phases (even and odd frames) and scores offsets on a half-frame
grid, then refines the offset at 60 fps (the model run on the 60 fps frames, a few lags around
the first answer), and its offset (seconds) is scored in 60 fps frames. 'not refined' stops
before the refinement; 'one phase' also uses the even frames only (the tool before the
half-frame grid); 'no resampling' runs the model on the 60 fps frames alone, over all offsets.

Frame error rounds each answer to the nearest frame, as the evaluation does; 'sub-frame error'
is the mean |answer - truth| of the unrounded answers.

  python bench/sync_accuracy.py [--checkpoint default] [--fps 30,60]
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
from sesyn_jax.data import mocap  # noqa: E402
from sesyn_jax.data.mocap import upsample  # noqa: E402
from sesyn_jax.sync import recordings  # noqa: E402


def test_views(fps: int, captured: str | None = None) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(view 1 pixels, view 2 pixels, true offset in frames of ``fps``) of the test split:
    the embedded 30 fps clips interpolated to ``fps``, or, with ``captured`` (the folder of
    ../shared/data/mocap), the test clips read from their 120 Hz captures at ``fps``."""
    k = fps // 30
    cfg = mocap_syn.BuildConfig(
        frames=120 * k, max_offset=30 * k, train_stride=30 * k, test_stride=30 * k
    )
    if captured:
        clips = [
            mocap.load_bvh_clip(os.path.join(captured, "cmu_bvh", "01_03.bvh"), out_fps=fps)[0],
            mocap.load_position_clip(
                os.path.join(captured, "climb", "mocap_climb_seq_4_joint_positions_f0-2303.npy"),
                out_fps=fps,
            )[0],
        ]
        if sorted(c.name for c in clips) != sorted(cfg.test_clips):
            raise SystemExit(f"the captured test clips are {cfg.test_clips}")
    else:
        clips = [c for c in mocap_syn.load_embedded() if c.name in cfg.test_clips]
        clips = [upsample(c, k) for c in clips]
    records, _ = mocap_syn.build_pairs(clips, cfg)
    out = []
    for r in records:
        p = r.to_pair(cfg.width, cfg.height)
        res = (cfg.width, cfg.height)
        out.append(
            (normalization.to_pixels(p.view1, res), normalization.to_pixels(p.view2, res), p.offset)
        )
    return out


def predict(loaded, views, fps, method, resample_to_model=True, both_phases=True, refine=True):
    """(answers in frames of ``fps``, confidences, raw learned scores or nan) for every view
    pair, through the tool's own steps (``sync.recordings.phases`` and ``fine_rate``,
    ``sync.embed``, ``sync.match_pair``) with |offset| <= 1 s."""
    from sesyn_jax.data.resample import resample

    rate = loaded.fps or 30.0
    work = rate if resample_to_model else fps
    fast = recordings.fine_rate(fps, work) if refine else None
    model = loaded.model()
    preds, confs, raws = [], [], []

    def normalized(x):
        return None if x is None else normalization.normalize(x, loaded.normalization)

    def embedded(x):
        return None if x is None else sync.embed(model, loaded.variables, x)

    for a, b, _ in views:
        (xa, ha), (xb, hb) = (
            [normalized(y) for y in recordings.phases(x, fps, work)] for x in (a, b)
        )
        feats = half = fine = None
        if method != "speed":
            feats = (embedded(xa), embedded(xb))
            half = (embedded(ha), embedded(hb)) if both_phases else None
            if fast:
                fine = tuple(embedded(normalized(resample(x, fps, fast))) for x in (a, b))
        r = sync.match_pair(
            feats,
            (xa, xb),
            ("a", "b"),
            method,
            loaded.inner_radius,
            int(round(1.0 * work)),
            work,
            half=half,
            fine=fine,
        )
        preds.append(r.offset / work * fps)  # frames of the recordings' own rate
        confs.append(r.confidence)
        learned = r.searches.get("learned")
        raws.append(learned.raw if learned is not None else np.nan)
    return np.array(preds), np.array(confs), np.array(raws)


def fps_list(text: str) -> list[int]:
    """'30,60' -> [30, 60]; argparse reports anything else as a usage error (exit 2)."""
    rates = [x.strip() for x in text.split(",")]
    if any(r not in ("30", "60") for r in rates):
        raise argparse.ArgumentTypeError(f"expected 30, 60 or 30,60, got {text!r}")
    return [int(r) for r in rates]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="default")
    p.add_argument(
        "--fps",
        default="30,60",
        type=fps_list,
        help="frame rates to measure, comma-separated: 30, 60 or 30,60 (the default)",
    )
    p.add_argument(
        "--captured",
        metavar="MOCAP_DIR",
        help="build the test clips at each rate from their 120 Hz captures in this folder "
        "(../shared/data/mocap) instead of interpolating the embedded 30 fps clips",
    )
    args = p.parse_args()
    loaded = loading.load_model(args.checkpoint)
    print(f"model: {args.checkpoint} (trained at {loaded.fps or 30:g} fps, {loaded.normalization})")
    print(
        "| fps | method | pairs | frame error (own frames) | sub-frame error | Acc@1 | "
        "error (s) | warned (confidence < 0.5) | frame error of the others | wrong by > 2 "
        "frames, not warned | s/pair |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for fps in args.fps:
        views = test_views(fps, args.captured)
        true = np.array([v[2] for v in views])
        rows = [("learned", True, True, True), ("speed", True, True, True)]
        rows += [("auto", True, True, True)]
        if fps != 30:
            rows += [("learned", True, True, False), ("learned", True, False, False)]
            rows += [("learned", False, True, False)]
        for method, resampled, both, refine in rows:
            t0 = time.perf_counter()
            pred, conf, _ = predict(loaded, views, fps, method, resampled, both, refine)
            dt = (time.perf_counter() - t0) / len(views)
            m = metrics.sync_metrics(np.rint(pred).astype(int), true, fps)
            name = method + ("" if resampled else " (no resampling)")
            name += "" if both else " (one phase)"
            name += "" if refine or not resampled else " (not refined at 60 fps)"
            sure = conf >= sync.LOW_CONFIDENCE
            err = np.abs(np.rint(pred) - true)
            rest = f"{err[sure].mean():.2f}" if sure.any() else "-"
            print(
                f"| {fps} | {name} | {len(views)} | {m['frame_error']:.2f} | "
                f"{np.abs(pred - true).mean():.2f} | {100 * m['acc@1']:.1f} | "
                f"{m['abs_error']:.4f} | {int((~sure).sum())} | {rest} | "
                f"{int((sure & (err > 2)).sum())} | {dt:.3f} |"
            )
        zero = metrics.sync_metrics(np.zeros_like(true), true, fps)
        print(
            f"| {fps} | Zero | {len(views)} | {zero['frame_error']:.2f} | "
            f"{np.abs(true).mean():.2f} | {100 * zero['acc@1']:.1f} | {zero['abs_error']:.4f} "
            f"| - | - | - | - |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
