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
import tempfile
from typing import Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from sesyn_jax.model import STGCNEmbedding, init_variables, inner_radius

FORMAT = "sesyn-jax-inference"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as a SeSyn-Net model."""


@dataclasses.dataclass
class LoadedModel:
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
    """Write an inference checkpoint folder (params and batch_stats only)."""
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


def _model_config_from_json(info: Mapping, where: str) -> dict:
    if info.get("format") != FORMAT or not isinstance(info.get("model"), Mapping):
        raise CheckpointError(
            f"{where}: field 'format' must be {FORMAT!r} with a 'model' "
            f"object; got format={info.get('format')!r}"
        )
    cfg = dict(info["model"])
    if "widths" in cfg:
        cfg["widths"] = tuple(int(w) for w in cfg["widths"])
    known = {f.name for f in dataclasses.fields(STGCNEmbedding)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise CheckpointError(f"{where}: field 'model' has unknown keys {unknown}")
    return cfg


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
        raise CheckpointError(
            f"{path}: not a sesyn-jax checkpoint folder (no model.json; "
            f"expected an inference export, a train.py workdir or a .pth)"
        )
    try:
        with open(info_path) as f:
            info = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{info_path}: not valid JSON ({e})") from e
    config = _model_config_from_json(info, info_path)

    target = jax.eval_shape(
        lambda: init_variables(STGCNEmbedding(**config), jax.random.PRNGKey(0), 8)
    )
    target = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
    try:
        variables = ocp.StandardCheckpointer().restore(
            os.path.abspath(os.path.join(path, "variables")), target
        )
    except Exception as e:
        raise CheckpointError(
            f"{path}/variables: cannot be restored as the model in "
            f"model.json ({type(e).__name__}: {e})"
        ) from e
    extras = {}
    if os.path.exists(os.path.join(path, "extras.npz")):
        with np.load(os.path.join(path, "extras.npz")) as z:
            extras = {k: z[k] for k in z.files}
    return LoadedModel(dict(variables), config, extras, info)
