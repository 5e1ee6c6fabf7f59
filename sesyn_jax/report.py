"""The evaluation report behind evaluate.py: Table 1 on the same pairs for two sanity
predictors (Zero, Length), the training-free Speed correlation, the paper's Simple and SSM
baselines and SeSyn-Net, all but Zero and Length through the same offset search; the
robustness sweeps; and the frame-error-against-offset plot."""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from sesyn_jax import baselines, evaluation, metrics
from sesyn_jax.checkpoint import LoadedModel
from sesyn_jax.io import atomic_write
from sesyn_jax.data.pairs import corrupt_pairs
from sesyn_jax.data.splits import load_pairs


def _default_out(checkpoint: str) -> str:
    if os.path.isfile(checkpoint):
        return os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "eval")
    return os.path.join(checkpoint, "eval")


TABLE1_ROWS = ("Zero", "Length", "Speed", "Simple", "SSM", "SeSyn")


def evaluate_checkpoint(
    config,
    loaded: LoadedModel,
    checkpoint: str,
    out: str | None = None,
    sweeps: bool = True,
    drop_rates: Sequence[float] = (0, 1, 3, 5, 10),
    noise_px: Sequence[float] = (0, 3, 6, 9),
    progress: bool = True,
    pairs: Sequence | None = None,
) -> dict:
    """Table 1, the sweeps and the plot for ``loaded`` on the config's test split (or on
    ``pairs``), written to ``out``; returns what results.json holds plus the Markdown."""
    search = evaluation.search_settings(config.eval)
    out = out or _default_out(checkpoint)
    os.makedirs(out, exist_ok=True)
    pairs = load_pairs(config, "test") if pairs is None else list(pairs)
    if not pairs:
        raise ValueError("the test split has no pairs")
    fps = config.data.fps
    evaluator = evaluation.evaluator_for(loaded, config)
    variables = evaluator.place(loaded.variables)  # on the device once, for every table

    def sesyn(ps):
        return evaluator.predict(variables, ps, progress)

    true = np.array([p.offset for p in pairs])
    preds = {name: fn(pairs, **search) for name, fn in baselines.PREDICTORS.items()}
    for name, fn in baselines.BASELINES.items():
        preds[name] = evaluation.feature_offsets(fn, pairs, search)
    preds["SeSyn"] = sesyn(pairs)
    rows = {name: metrics.sync_metrics(preds[name], true, fps) for name in TABLE1_ROWS}
    limit = f", |offset| <= {search['max_offset']}" if search["max_offset"] else ""
    md = [
        f"# Evaluation of {checkpoint}",
        "",
        f"{len(pairs)} test pairs, {fps:g} fps; offset search: {search['rule']} rule"
        f"{limit} (Speed: correlation of joint speeds; Zero and Length: sanity predictors "
        f"that look only at the lengths).",
        "",
        "## Table 1",
        "",
        metrics.format_table(rows),
    ]
    result = {
        "checkpoint": checkpoint,
        "pairs": len(pairs),
        "search": search,
        "table1": rows,
        "predictions": {k: np.asarray(preds[k]).tolist() for k in TABLE1_ROWS},
        "true": true.tolist(),
    }

    if sweeps:
        drop, noise = {}, {}
        for rate in drop_rates:
            ps = corrupt_pairs(pairs, drop_fraction=rate / 100.0, seed=1) if rate else pairs
            drop[f"{rate:g}%"] = metrics.sync_metrics(sesyn(ps), true, fps)
        for sigma in noise_px:
            ps = corrupt_pairs(pairs, noise_px=sigma, seed=2) if sigma else pairs
            noise[f"{sigma:g} px"] = metrics.sync_metrics(sesyn(ps), true, fps)
        result["drop_frames"], result["noise"] = drop, noise
        md += [
            "",
            "## Dropped frames (SeSyn, Table 5)",
            "",
            metrics.format_table(drop, "Drop rate"),
            "",
            "## Gaussian noise on every joint (SeSyn, Table 6)",
            "",
            metrics.format_table(noise, "Noise"),
        ]
    png = os.path.join(out, "error_vs_offset.png")
    plot_error_vs_offset({k: preds[k] for k in TABLE1_ROWS if k != "Length"}, true, png)
    md += ["", f"Frame error against the true offset: {os.path.basename(png)}"]
    result["markdown"] = "\n".join(md)
    result["out"] = out
    atomic_write(
        os.path.join(out, "results.json"),
        lambda f: json.dump({k: v for k, v in result.items() if k != "markdown"}, f, indent=1),
    )
    atomic_write(os.path.join(out, "results.md"), lambda f: f.write(result["markdown"] + "\n"))
    return result


def plot_error_vs_offset(preds: dict, true: np.ndarray, path: str) -> None:
    """Mean frame error per true offset (the paper's Figure 3), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    offsets = np.unique(true)
    for name, p in preds.items():
        err = np.abs(np.asarray(p) - true)
        ax.plot(offsets, [err[true == o].mean() for o in offsets], marker="o", ms=3, label=name)
    ax.set_xlabel("true offset (frames)")
    ax.set_ylabel("mean frame error")
    ax.set_title("Frame error against the true offset")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), binary=True)
    plt.close(fig)
