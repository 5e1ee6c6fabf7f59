"""Draw the two views of a pair side by side: python -m sesyn_jax.data.plot_pair A.json B.json
[--frames 0,40,80] [--out pair.png]

A and B are SYN JSON view files (e.g. ..._C001.json and ..._C002.json of a MOCAP-SYN pair) or
any recording the readers take. Each row is one moment: the frame of A and the frame of B that
show it (after each file's category_id cut, so a correctly built pair shows the same pose).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from sesyn_jax.graph import COCO_JOINTS, LAYOUTS

_LEFT = np.array([i for i, name in enumerate(COCO_JOINTS) if name.startswith("left_")])


def draw_skeleton(ax, pose: np.ndarray, color: str = "C0") -> None:
    seen = pose[:, 2] > 0
    for a, b in LAYOUTS["coco"].edges:
        if seen[a] and seen[b]:
            ax.plot(pose[[a, b], 0], pose[[a, b], 1], "-", color=color, lw=2)
    ax.scatter(pose[seen, 0], pose[seen, 1], s=10, c="k", zorder=3)
    ls = _LEFT[seen[_LEFT]]
    ax.scatter(pose[ls, 0], pose[ls, 1], s=14, c="C3", zorder=4)  # left side in red


def zoom(view, frames) -> tuple | None:
    """(x limits, y limits) around the person in the shown frames of a view, in image axes
    (y down); None when no joint is seen."""
    shown = view.poses[[f for f in frames if view.category_id <= f < len(view.poses)]]
    xy = shown[..., :2][shown[..., 2] > 0]
    if not len(xy):
        return None
    lo, hi = xy.min(0), xy.max(0)
    half = 0.6 * max(hi - lo) + 20
    mid = (lo + hi) / 2
    return (mid[0] - half, mid[0] + half), (mid[1] + half, mid[1] - half)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sesyn_jax.data.plot_pair",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("view1")
    p.add_argument("view2")
    p.add_argument("--frames", default="0,40,80", help="frames of the common timeline")
    p.add_argument("--out", default="pair.png")
    args = p.parse_args(argv)
    from sesyn_jax.data.syn_json import PoseFormatError, read_syn_view

    try:
        v1, v2 = read_syn_view(args.view1), read_syn_view(args.view2)
    except PoseFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [int(f) for f in args.frames.split(",")]
    fig, axes = plt.subplots(len(frames), 2, figsize=(8, 3.2 * len(frames)), squeeze=False)
    views = (v1, v2)
    limits = [zoom(v, frames) for v in views]
    for r, t in enumerate(frames):
        for c, v in enumerate(views):
            ax = axes[r, c]
            i = t - v.category_id  # frame index in the file that shows moment t
            if 0 <= i < len(v.poses) - v.category_id:
                draw_skeleton(ax, v.poses[v.category_id + i], f"C{c}")
            if limits[c] is not None:
                ax.set_xlim(*limits[c][0])
                ax.set_ylim(*limits[c][1])
            ax.set_aspect("equal")
            ax.set_title(
                f"{os.path.basename([args.view1, args.view2][c])}\nmoment {t}: "
                f"frame {i} after the cut of {v.category_id}",
                fontsize=8,
            )
    fig.suptitle("the same moments seen by both cameras (left joints red)", fontsize=10)
    fig.tight_layout()
    from sesyn_jax.io import atomic_write

    atomic_write(args.out, lambda f: fig.savefig(f, format="png", dpi=90), binary=True)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
