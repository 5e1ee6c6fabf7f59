"""The evaluation report behind evaluate.py: Table 1 on the same pairs for two sanity
predictors (Zero, Length), the training-free Speed correlation, the paper's Simple and SSM
baselines and SeSyn-Net, all but Zero and Length through the same offset search; the
robustness sweeps; and the frame-error-against-offset plot. Nothing is written until all of it
is computed, and then the whole output folder at once: a failed evaluation leaves no folder."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from typing import Mapping, Sequence

import numpy as np

from sesyn_jax import baselines, evaluation, metrics
from sesyn_jax.checkpoint import LoadedModel
from sesyn_jax.data.pairs import corrupt_pairs
from sesyn_jax.data.splits import load_pairs
from sesyn_jax.loading import SHIPPED, is_shipped

SHIPPED_OUT = f"eval_{SHIPPED}"  # evaluate.py --checkpoint default: ./eval_default


class OutputError(OSError):
    """The results could not be written (no space, no permission); nothing was left behind."""


def default_out(checkpoint: str) -> str:
    """Where evaluate.py writes without --out: eval/ in the checkpoint folder, beside a .pth,
    or ./eval_default for the shipped model (the package folder is no place for results)."""
    if is_shipped(checkpoint):
        return SHIPPED_OUT
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
    out = out or default_out(checkpoint)
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
    png = plot_error_vs_offset({k: preds[k] for k in TABLE1_ROWS if k != "Length"}, true)
    md += ["", "Frame error against the true offset: error_vs_offset.png"]
    result["markdown"] = "\n".join(md)
    result["out"] = out
    saved = json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1)
    files = {
        "results.json": saved.encode(),
        "results.md": (result["markdown"] + "\n").encode(),
        "error_vs_offset.png": png,
    }
    try:
        write_folder(out, files)
    except OSError as e:
        raise OutputError(
            f"{out}: the results cannot be written ({e.strerror or e}); nothing was written"
        ) from None
    return result


def write_folder(out: str, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (name -> content) into the folder ``out`` all together: into a temporary
    folder beside it first, then moved into place (the folder renamed when it is new, file by
    file into an existing one). An OSError (no space, no permission) leaves nothing behind,
    neither the folder nor the folders above it that did not exist."""
    out = os.path.abspath(out)
    created = []  # parent folders made here, innermost last
    parent = os.path.dirname(out)
    while not os.path.exists(parent):
        created.insert(0, parent)
        parent = os.path.dirname(parent)
    tmp = None
    try:
        for d in created:
            os.mkdir(d)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=".tmp-" + os.path.basename(out))
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
            os.chmod(os.path.join(tmp, name), 0o644)
        if not os.path.exists(out):
            os.chmod(tmp, 0o755)  # mkdtemp creates 0700
            os.rename(tmp, out)
            tmp = None
        else:
            for name in files:
                os.replace(os.path.join(tmp, name), os.path.join(out, name))
    except BaseException:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        raise
    finally:
        if tmp and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def plot_error_vs_offset(preds: dict, true: np.ndarray) -> bytes:
    """Mean frame error per true offset (the paper's Figure 3), one line per method, as PNG."""
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
