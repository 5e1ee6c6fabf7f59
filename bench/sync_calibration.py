"""Calibration of sesyn-sync's learned confidence: fits the monotone curve
``sync.search.CALIBRATION`` (raw agreement -> share of answers within one frame of the model's
rate, 1/30 s) on pairs rendered afresh from the TRAINING clips, and prints the reliability
table of the curve on other rendered pairs and on the held-out MOCAP-SYN test pairs.

No clip is left over for a validation split: the shipped model was trained on every embedded
clip but the two test clips (the short DeepMimic clips included), and the test clips must not
tune what the test measures. The fitting pairs are therefore new renderings (new cameras,
image sizes, time-stretch, mirroring, detector noise and crops, ``data.render``) of motion the
model saw in training: the agreement is likely higher on them than on unseen motion, which
the table on the test pairs checks.

Fit: every pair through the tool's own path (``sync_accuracy.predict``, |offset| <= 1 s) at 30
and 60 fps, the pairs pooled, sorted by raw agreement, cut into BINS bins of equal count; each
bin's share within 1/30 s, (k + 1) / (n + 2) for k of n (Laplace's rule: no bin of a few dozen
pairs reads 0 or 1), made monotone by pool-adjacent-violators, is a point (mean raw agreement
of the bin, share); bins of equal mean agreement are merged. A first point (0, 0)
says that no agreeing frame means no evidence (the fitting pairs all share their moments, so
they hold few low agreements); above the last point the share is the last's.

  python bench/sync_calibration.py [--pairs 160] [--checkpoint default] [--keep-curve]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sync_accuracy import predict, test_views  # noqa: E402

from sesyn_jax import loading, sync  # noqa: E402
from sesyn_jax.data import mocap_syn, normalization, render  # noqa: E402
from sesyn_jax.data.mocap import upsample  # noqa: E402
from sesyn_jax.sync import search  # noqa: E402

BINS = 8
FIT_SEED, CHECK_SEED = 101, 202  # the rendering seeds of the fitting and the checking pairs
CONFIDENCE_BINS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0001)


def rendered_views(fps: int, pairs: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(view 1 pixels, view 2 pixels, true offset in frames of ``fps``) of ``pairs`` pairs
    rendered from the training clips (at ``fps``: the clips interpolated, as the 60 fps test
    pairs of ``sync_accuracy.test_views``)."""
    k = fps // 30
    cfg = mocap_syn.BuildConfig(frames=120 * k, max_offset=30 * k)
    clips = [c for c in mocap_syn.load_embedded() if c.name not in cfg.test_clips]
    clips = [upsample(c, k) for c in clips]
    data = render.RenderedPairs(clips, cfg, render.Augment(), pairs, seed, min_length=100 * k)
    out = []
    for i in range(pairs):
        p = data[i]
        r1, r2 = p.resolutions
        out.append(
            (normalization.to_pixels(p.view1, r1), normalization.to_pixels(p.view2, r2), p.offset)
        )
    return out


def pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``y`` in weighted least squares."""
    blocks = []  # [value, weight, count]
    for v, wt in zip(y.astype(np.float64), w.astype(np.float64)):
        blocks.append([v, wt, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def fit(raw: np.ndarray, good: np.ndarray, bins: int = BINS) -> list[tuple[float, float]]:
    """The calibration points (see the module doc): (0, 0), then one point per bin of equal
    count, bins of equal mean agreement (ties, as many answers of agreement 1) merged."""
    order = np.argsort(raw, kind="stable")
    merged: list[list] = []  # [sum of raw, sum of good, count]
    for part in np.array_split(order, bins):
        x, y, n = float(raw[part].sum()), float(good[part].sum()), len(part)
        if merged and np.isclose(merged[-1][0] / merged[-1][2], x / n):
            merged[-1] = [merged[-1][0] + x, merged[-1][1] + y, merged[-1][2] + n]
        else:
            merged.append([x, y, n])
    xs = np.array([m[0] / m[2] for m in merged])
    # Laplace's rule of succession: a bin of n answers, k of them good, reads (k + 1) / (n + 2),
    # so that a few dozen answers never make a confidence of exactly 0 or 1.
    ys = pool_adjacent_violators(
        np.array([(m[1] + 1.0) / (m[2] + 2.0) for m in merged]),
        np.array([m[2] + 2.0 for m in merged], np.float64),
    )
    points = [(0.0, 0.0)] + [(round(float(a), 3), round(float(b), 3)) for a, b in zip(xs, ys)]
    return [p for i, p in enumerate(points) if i == 0 or p[0] > points[i - 1][0]]


def reliability(conf, err_own, err_model) -> list[str]:
    """Markdown rows: per confidence bin, pairs, share within 1 own frame (the answer rounded
    to a frame, as the evaluation does), within 1/30 s (unrounded) and within 2 own frames."""
    rows = []
    for lo, hi in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:]):
        m = (conf >= lo) & (conf < hi)
        if not m.any():
            rows.append(f"| {lo:.1f}-{min(hi, 1):.1f} | 0 | - | - | - |")
            continue
        shares = [100 * np.mean(e[m] <= k) for e, k in ((err_own, 1), (err_model, 1), (err_own, 2))]
        rows.append(
            f"| {lo:.1f}-{min(hi, 1):.1f} | {int(m.sum())} | "
            + " | ".join(f"{s:.0f} %" for s in shares)
            + " |"
        )
    return rows


def run(loaded, views, fps):
    """(raw agreement, confidence, |error| in own frames, |error| in frames of 1/30 s)."""
    pred, conf, raw = predict(loaded, views, fps, "learned")
    true = np.array([v[2] for v in views])
    err = np.abs(pred - true)
    return raw, conf, err, err * 30.0 / fps


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="default")
    p.add_argument("--pairs", type=int, default=160, help="rendered pairs per frame rate and set")
    p.add_argument(
        "--keep-curve",
        action="store_true",
        help="judge the curve in sesyn_jax/sync/search.py in the tables instead of the fitted one",
    )
    args = p.parse_args()
    loaded = loading.load_model(args.checkpoint)
    raws, goods = [], []
    for fps in (30, 60):
        raw, _, _, err_model = run(loaded, rendered_views(fps, args.pairs, FIT_SEED), fps)
        ok = np.isfinite(raw)
        raws.append(raw[ok])
        goods.append(err_model[ok] <= 1)
    points = fit(np.concatenate(raws), np.concatenate(goods))
    print(f"CALIBRATION = {tuple(points)}")
    if args.keep_curve:
        print(f"the tables judge the curve in the code: {search.CALIBRATION}")
    else:
        search.CALIBRATION = tuple(points)  # the tables below use the fitted curve
    head = (
        "| confidence | pairs | within 1 frame | within 1/30 s | within 2 frames |\n"
        "|---|---|---|---|---|"
    )
    for fps in (30, 60):
        for name, views in (
            (f"rendered from the training clips (seed {CHECK_SEED})", None),
            ("held-out MOCAP-SYN test pairs", test_views(fps)),
        ):
            views = views or rendered_views(fps, args.pairs, CHECK_SEED)
            _, conf, err, err_model = run(loaded, views, fps)
            sure = conf >= sync.LOW_CONFIDENCE
            share = f"{100 * np.mean(np.rint(err[sure]) <= 2):.1f} %" if sure.any() else "-"
            print(
                f"\n{fps} fps, {name}: {len(views)} pairs, {int(sure.sum())} at confidence >= "
                f"{sync.LOW_CONFIDENCE}, of which {share} within 2 frames"
            )
            print(head)
            print("\n".join(reliability(conf, np.rint(err), err_model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
