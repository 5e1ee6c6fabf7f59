"""Inference checkpoints: a folder with the model's variables (orbax) and its config (JSON).

  DIR/model.json      {"format": "sesyn-jax-inference", "model": {...STGCNEmbedding kwargs},
                       "source": "...", ...}
  DIR/variables/      orbax StandardCheckpointer tree {'params', 'batch_stats'}
  DIR/extras.npz      optional: tensors the published PyTorch module carries but never uses

This module knows this folder format only; ``sesyn_jax.loading.load_model`` also takes a
PyTorch ``.pth`` (through ``convert``). Folders are written to a temporary name and renamed, so
an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from sesyn_jax import graph
from sesyn_jax.model import PADDINGS, STGCNEmbedding, init_variables, inner_radius

FORMAT = "sesyn-jax-inference"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as a SeSyn-Net model."""


@dataclasses.dataclass
class LoadedModel:
    """A model read from a checkpoint: ``variables`` ({'params', 'batch_stats'}) for
    ``model().apply``, the ``STGCNEmbedding`` keyword arguments (``model_config``), arrays kept
    beside the weights (``extras``) and model.json's other fields (``meta``: frame rate,
    normalization, inner frames, source)."""

    variables: dict
    model_config: dict
    extras: dict
    meta: dict

    def model(self):
        return STGCNEmbedding(**self.model_config)

    @property
    def inner_radius(self) -> int:
        """Frames to hide at each end when searching offsets: the receptive radius of a model
        trained on inner frames only (model.json "inner_frames"), else 0."""
        return inner_radius(self.model(), bool(self.meta.get("inner_frames")))

    @property
    def normalization(self) -> str:
        """The input normalization the model was trained with (model.json "normalization";
        'published' when absent, as in checkpoints converted from PyTorch)."""
        return self.meta.get("normalization", "published")

    @property
    def fps(self) -> float | None:
        """The frame rate of the training data (model.json "fps"), if known."""
        fps = self.meta.get("fps")
        return float(fps) if fps else None


def _jsonable_config(config: Mapping) -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def save_inference(
    path: str,
    variables: Mapping,
    model_config: Mapping,
    extras: Mapping[str, np.ndarray] | None = None,
    source: str = "",
    meta: Mapping | None = None,
) -> str:
    """Write an inference checkpoint folder (params and batch_stats only): written beside
    ``path`` under a temporary name and renamed into place (replacing an existing folder), so
    a failed save leaves no half folder. ``model_config`` holds the ``STGCNEmbedding`` keyword
    arguments, ``meta`` the model.json fields read back as ``LoadedModel.meta``. Returns the
    folder's absolute path."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(path))
    try:
        tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        tree = jax.tree_util.tree_map(lambda x: np.asarray(x), tree)
        # written by the calling process alone: no barrier that other processes never reach
        alone = ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}
        )
        ckptr = ocp.StandardCheckpointer(multiprocessing_options=alone)
        ckptr.save(os.path.join(tmp, "variables"), tree)
        ckptr.wait_until_finished()
        info = {"format": FORMAT, "model": _jsonable_config(model_config), "source": source}
        info.update(dict(meta or {}))
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(info, f, indent=2)
        if extras:
            np.savez(
                os.path.join(tmp, "extras.npz"), **{k: np.asarray(v) for k, v in extras.items()}
            )
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=".old-" + os.path.basename(path))
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def model_config_problem(cfg: Mapping) -> tuple[str, str] | None:
    """The first network field of ``cfg`` (STGCNEmbedding keyword arguments, from a config or a
    model.json) that cannot build a network, as (field, what is wrong), or None."""
    widths = cfg.get("widths", STGCNEmbedding.widths)
    if (
        not isinstance(widths, (list, tuple))
        or not widths
        or not all(_whole(w) and w > 0 for w in widths)
    ):
        return "widths", (
            f"must be a non-empty list of positive whole numbers (the channels of each block, "
            f"e.g. (32, 64)), got {widths!r}"
        )
    k = cfg.get("kernel_size", STGCNEmbedding.kernel_size)
    if not (_whole(k) and k >= 1 and k % 2 == 1):
        return "kernel_size", f"must be an odd whole number >= 1 (frames), got {k!r}"
    padding = cfg.get("padding", STGCNEmbedding.padding)
    if padding not in PADDINGS:
        return "padding", f"must be one of {PADDINGS}, got {padding!r}"
    strategy = cfg.get("strategy", STGCNEmbedding.strategy)
    if strategy not in graph.STRATEGIES:
        return "strategy", f"must be one of {graph.STRATEGIES}, got {strategy!r}"
    layout = cfg.get("layout", STGCNEmbedding.layout)
    try:
        graph.get_layout(layout)
    except ValueError:
        return "layout", f"must be one of {sorted(graph.LAYOUTS)}, got {layout!r}"
    return None


def _whole(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and float(x).is_integer()


def _model_config_from_json(info, where: str) -> dict:
    if not isinstance(info, Mapping):
        raise CheckpointError(
            f"{where}: expected a JSON object with 'format' and 'model', got a "
            f"{type(info).__name__}"
        )
    if info.get("format") != FORMAT or not isinstance(info.get("model"), Mapping):
        raise CheckpointError(
            f"{where}: field 'format' must be {FORMAT!r} with a 'model' "
            f"object; got format={info.get('format')!r}"
        )
    cfg = dict(info["model"])
    known = {f.name for f in dataclasses.fields(STGCNEmbedding)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise CheckpointError(f"{where}: field 'model' has unknown keys {unknown}")
    problem = model_config_problem(cfg)
    if problem:
        raise CheckpointError(f"{where}: field 'model.{problem[0]}' {problem[1]}")
    if "widths" in cfg:
        cfg["widths"] = tuple(int(w) for w in cfg["widths"])
    if "kernel_size" in cfg:
        cfg["kernel_size"] = int(cfg["kernel_size"])
    return cfg


def restore_failure(e: BaseException) -> str:
    """What to say of a failed orbax restore: the first sentence of its error's first line
    (at most 200 characters)."""
    return (str(e).splitlines() or [""])[0].split(". ")[0][:200]


def drop_closed_loop_reports() -> None:
    """Call before an orbax restore. When a restore fails, the reads still in flight finish
    on orbax's asyncio loop after it has closed, and Python reports each as an unraisable
    "Event loop is closed" error: tracebacks around the one-line error, during the failing
    restore and after it. Those reports are dropped from then on; any other unraisable error
    is reported as before."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop", False):
        return

    def hook(unraisable):
        e = unraisable.exc_value
        if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
            return
        previous(unraisable)

    hook.drops_closed_loop = True
    sys.unraisablehook = hook


def load_inference(path: str) -> LoadedModel:
    """Load a model from an inference folder or a train.py workdir (its ``export`` folder)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    if os.path.isfile(path):
        raise CheckpointError(
            f"{path}: a file, not a checkpoint folder (a PyTorch .pth loads "
            f"through sesyn_jax.loading.load_model)"
        )
    if not os.path.exists(os.path.join(path, "model.json")) and os.path.exists(
        os.path.join(path, "export", "model.json")
    ):
        path = os.path.join(path, "export")
    info_path = os.path.join(path, "model.json")
    if not os.path.exists(info_path):
        raise CheckpointError(_no_model_json(path))
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{info_path}: cannot be read as a file ({_reason(e)})") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{info_path}: not valid JSON ({e})") from None
    config = _model_config_from_json(info, info_path)

    target = jax.eval_shape(
        lambda: init_variables(STGCNEmbedding(**config), jax.random.PRNGKey(0), 8)
    )
    target = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
    weights = os.path.join(path, "variables")
    if not os.path.isdir(weights):
        what = "not a folder" if os.path.exists(weights) else "missing"
        raise CheckpointError(
            f"{weights}: {what}; a checkpoint folder holds model.json and the variables folder "
            f"beside it (copy the whole folder)"
        )
    drop_closed_loop_reports()
    try:
        variables = ocp.StandardCheckpointer().restore(os.path.abspath(weights), target)
    except Exception as e:
        detail = restore_failure(e)
        raise CheckpointError(
            f"{weights}: cannot be restored as the network that model.json's 'model' fields "
            f"(widths, kernel_size, layout, strategy) describe: the weights do not fit it, or "
            f"the folder is damaged or incomplete ({detail})"
        ) from None
    _check_shapes(variables, target, f"{path}/variables")
    extras = {}
    if os.path.exists(os.path.join(path, "extras.npz")):
        try:
            with np.load(os.path.join(path, "extras.npz")) as z:
                extras = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}/extras.npz: not a readable .npz ({e})") from None
    return LoadedModel(dict(variables), config, extras, info)


def _check_shapes(variables, target, where: str) -> None:
    """orbax restores the shapes it stored whatever the target says: compare them here."""
    got = jax.tree_util.tree_flatten_with_path(variables)[0]
    want = dict(jax.tree_util.tree_flatten_with_path(target)[0])
    for key, x in got:
        if key in want and tuple(x.shape) != tuple(want[key].shape):
            name = "/".join(str(getattr(k, "key", k)) for k in key)
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(x.shape)}, but model.json's 'model' fields "
                f"(widths, kernel_size, layout, strategy) describe {tuple(want[key].shape)}"
            )


def _reason(e: OSError | UnicodeDecodeError) -> str:
    return getattr(e, "strerror", None) or str(e)


def _last_metrics_row(workdir: str) -> dict:
    """The last row of a workdir's metrics.jsonl ({} when it has none or cannot be read)."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
            lines = f.read().splitlines()
        row = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}
    return row if isinstance(row, dict) else {}


def _no_model_json(path: str) -> str:
    """Why a folder without model.json is not a checkpoint; a train.py workdir that has no
    export yet was interrupted (or is still running)."""
    steps_dir = os.path.join(path, "checkpoints")
    names = os.listdir(steps_dir) if os.path.isdir(steps_dir) else []
    steps = sorted(int(n) for n in names if n.isdigit())
    if not steps and not os.path.exists(os.path.join(path, "config.json")):
        return (
            f"{path}: not a sesyn-jax checkpoint folder (no model.json; "
            f"expected an inference export, a train.py workdir or a .pth)"
        )
    last = (
        f"its last training checkpoint is {os.path.join(steps_dir, str(steps[-1]))}"
        if steps
        else "it has no training checkpoint yet"
    )
    stopped = _last_metrics_row(path).get("stopped")
    if stopped == "non-finite":
        return (
            f"{path}: a train.py workdir without an export: the run stopped because its loss "
            f"diverged ({last}); resuming it would diverge again: lower train.lr or change "
            f"the loss weights, and train in a new --workdir"
        )
    return (
        f"{path}: a train.py workdir without an export: the run was interrupted before its "
        f"end ({last}); run the same train.py command with --workdir {path} to resume it, "
        f"and it writes {os.path.join(path, 'export')} when it finishes"
    )
