"""The plot (--plot): the score of every candidate offset for each method, the chosen one
marked."""

from __future__ import annotations

import os

import numpy as np

from sesyn_jax.sync.search import PairResult


def plot_pair(result: PairResult, path: str, rate: float) -> None:
    """The score of every candidate offset (seconds) for each method, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sesyn_jax.io import atomic_write

    fig, axes = plt.subplots(
        len(result.searches), 1, figsize=(7, 2.6 * len(result.searches)), squeeze=False
    )
    for ax, (name, s) in zip(axes[:, 0], result.searches.items()):
        ok = np.isfinite(s.scores)
        ax.plot(s.lags[ok] / rate, s.scores[ok], lw=1)
        ax.axvline(s.offset / rate, color="r", ls="--", lw=1)
        label = "mean similarity" if name == "learned" else "speed correlation"
        ax.set_ylabel(label, fontsize=8)
        chosen = " (chosen)" if name == result.method else ""
        ax.set_title(
            f"{name}{chosen}: {s.offset / rate:+.3f} s, confidence {s.confidence:.0%}", fontsize=9
        )
    a, b = os.path.basename(result.a.rstrip("/")), os.path.basename(result.b.rstrip("/"))
    axes[-1, 0].set_xlabel(f"offset d in seconds (A = {a}, B = {b}; B = A + d)", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)
