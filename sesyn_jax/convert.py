"""PyTorch state_dict <-> Flax variables for the SeSyn-Net embedding network.

A table of name rules, one layout transform per layer kind:

  torch key                                  flax path                                 kind
  data_bn.{weight,bias}                      params/data_bn/{scale,bias}               identity
  data_bn.running_{mean,var}                 batch_stats/data_bn/{mean,var}            identity
  st_gcn_networks.i.gcn.conv.weight          params/block_i/gcn/kernel                 conv1x1
  st_gcn_networks.i.tcn.0.* / .tcn.3.*       block_i/tcn_bn1 / tcn_bn2                 (BN as above)
  st_gcn_networks.i.tcn.2.weight             params/block_i/tcn_conv/kernel            tconv
  st_gcn_networks.i.residual.0.weight        params/block_i/residual_conv/kernel       conv1x1
  st_gcn_networks.i.residual.1.*             block_i/residual_bn                       (BN)
  edge_importance.i                          params/edge_importance_i                  identity

conv1x1: (C_out, C_in, 1, 1) -> (C_in, C_out); tconv: (C_out, C_in, k, 1) -> (k, C_in, C_out).
``A`` is checked against ``graph.adjacency`` (not stored: Flax rebuilds it). The published
module's unused tensors (channel gate, mlp) and the ``num_batches_tracked`` counters are returned
separately by ``torch_to_flax(..., return_unused=True)`` and put back by ``flax_to_torch``, so an
export loads into the published network with ``strict=True``.

Command line (``sesyn_jax.convert_cli``):
  python -m sesyn_jax.convert_cli torch2flax IN.pth OUT_DIR
  python -m sesyn_jax.convert_cli flax2torch CKPT OUT.pth
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import jax
import numpy as np

from sesyn_jax import graph as graph_lib
from sesyn_jax.checkpoint import LoadedModel
from sesyn_jax.model import STGCNEmbedding, init_variables
from sesyn_jax.torch_model import require_torch


class ConversionError(ValueError):
    """A state_dict or variables tree that does not describe a SeSyn-Net network."""


_BN = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}

# (torch key regex, flax module path template, kind). Groups: block index, BN field.
_RULES = [
    (r"data_bn\.(weight|bias|running_mean|running_var)", ("data_bn",), "bn"),
    (r"st_gcn_networks\.(\d+)\.gcn\.conv\.(weight|bias)", ("block_{0}", "gcn"), "conv1x1"),
    (
        r"st_gcn_networks\.(\d+)\.tcn\.0\.(weight|bias|running_mean|running_var)",
        ("block_{0}", "tcn_bn1"),
        "bn",
    ),
    (r"st_gcn_networks\.(\d+)\.tcn\.2\.(weight|bias)", ("block_{0}", "tcn_conv"), "tconv"),
    (
        r"st_gcn_networks\.(\d+)\.tcn\.3\.(weight|bias|running_mean|running_var)",
        ("block_{0}", "tcn_bn2"),
        "bn",
    ),
    (
        r"st_gcn_networks\.(\d+)\.residual\.0\.(weight|bias)",
        ("block_{0}", "residual_conv"),
        "conv1x1",
    ),
    (
        r"st_gcn_networks\.(\d+)\.residual\.1\.(weight|bias|running_mean|running_var)",
        ("block_{0}", "residual_bn"),
        "bn",
    ),
    (r"edge_importance\.(\d+)", ("edge_importance_{0}",), "param"),
]
_LAYOUT_BY_JOINTS = {17: "coco", 13: "coco13", 9: "coco9", 5: "coco5"}
_STRATEGY_BY_PARTITIONS = {1: "uniform", 2: "distance", 3: "spatial"}
_UNUSED = re.compile(r"(channel\..*|mlp\..*|.*num_batches_tracked)")


def _to_torch_layout(kind: str, field: str, x: np.ndarray) -> np.ndarray:
    if field == "bias" or kind in ("bn", "param"):
        return x
    if kind == "conv1x1":
        return x.T[:, :, None, None]
    if kind == "tconv":
        return x.transpose(2, 1, 0)[..., None]
    raise AssertionError(kind)


def _to_flax_layout(kind: str, field: str, x: np.ndarray) -> np.ndarray:
    if field == "bias" or kind in ("bn", "param"):
        return x
    if kind == "conv1x1":
        return x[:, :, 0, 0].T
    if kind == "tconv":
        return x[..., 0].transpose(2, 1, 0)
    raise AssertionError(kind)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def unwrap_checkpoint(obj: Any) -> Mapping[str, Any]:
    """The state_dict inside a published checkpoint ({'model': ..., ...}) or a bare one."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        return obj["model"]
    if isinstance(obj, Mapping):
        return obj
    raise ConversionError(
        f"expected a state_dict or a checkpoint dict with a 'model' entry, got {type(obj).__name__}"
    )


def infer_model_config(state_dict: Mapping[str, Any]) -> dict:
    """STGCNEmbedding keyword arguments that fit a torch state_dict."""
    sd = unwrap_checkpoint(state_dict)
    if "A" not in sd:
        raise ConversionError(
            "state_dict has no 'A' (adjacency) entry; is this a SeSyn-Net checkpoint?"
        )
    a = _as_numpy(sd["A"])
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ConversionError(f"'A' must have shape (K, V, V), got {a.shape}")
    k, v = a.shape[:2]
    layout = _LAYOUT_BY_JOINTS.get(v)
    strategy = _STRATEGY_BY_PARTITIONS.get(k)
    if layout is None or strategy is None:
        raise ConversionError(
            f"'A' has shape {a.shape}: no layout with {v} joints and "
            f"{k} partitions (expected V in 17/13/9/5, K in 1/2/3)"
        )
    widths, i = [], 0
    while f"st_gcn_networks.{i}.tcn.2.weight" in sd:
        widths.append(int(_as_numpy(sd[f"st_gcn_networks.{i}.tcn.2.weight"]).shape[0]))
        i += 1
    if not widths:
        raise ConversionError(
            "state_dict has no 'st_gcn_networks.0.tcn.2.weight': no ST-GCN blocks found"
        )
    kernel = int(_as_numpy(sd["st_gcn_networks.0.tcn.2.weight"]).shape[2])
    in_ch = (
        int(_as_numpy(sd["st_gcn_networks.0.gcn.conv.weight"]).shape[1])
        if "st_gcn_networks.0.gcn.conv.weight" in sd
        else 3
    )
    expected = graph_lib.adjacency(layout, strategy)
    if not np.allclose(a, expected, atol=1e-6):
        raise ConversionError(
            f"'A' differs from the {layout}/{strategy} adjacency this project "
            f"builds (max abs diff {np.abs(a - expected).max():.3g})"
        )
    return dict(
        layout=layout,
        strategy=strategy,
        widths=tuple(widths),
        kernel_size=kernel,
        in_channels=in_ch,
    )


def _expected_shapes(model_config: Mapping) -> dict[tuple, tuple]:
    """Flax leaf path -> shape, from an abstract init of the model."""
    model = STGCNEmbedding(**model_config)
    shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), 8))
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        out[tuple(p.key for p in path)] = tuple(leaf.shape)
    return out


def torch_to_flax(
    state_dict: Mapping[str, Any], return_unused: bool = False, model_config: Mapping | None = None
):
    """A torch state_dict (or published checkpoint; tensors or numpy arrays) -> Flax variables
    {'params': ..., 'batch_stats': ...}. With ``return_unused``: (variables, unused), unused
    being the tensors forward() never reads, as numpy arrays."""
    sd = unwrap_checkpoint(state_dict)
    config = dict(model_config) if model_config is not None else infer_model_config(sd)
    expected = _expected_shapes(config)
    variables: dict = {"params": {}, "batch_stats": {}}
    unused, unexpected, produced = {}, [], {}
    for key, value in sd.items():
        if key == "A":
            continue
        if _UNUSED.fullmatch(key):
            unused[key] = _as_numpy(value)
            continue
        for pattern, template, kind in _RULES:
            m = re.fullmatch(pattern, key)
            if m is None:
                continue
            groups = m.groups()
            field = groups[-1] if kind != "param" else "param"
            module = tuple(t.format(*groups) for t in template)
            if kind == "bn":
                collection, leaf = _BN[field]
                path = (collection,) + module + (leaf,)
            elif kind == "param":
                path = ("params",) + module
            else:
                path = ("params",) + module + ("kernel" if field == "weight" else field,)
            raw = _as_numpy(value)
            want_ndim = 4 if kind in ("conv1x1", "tconv") and field == "weight" else None
            if want_ndim is not None and raw.ndim != want_ndim:
                raise ConversionError(
                    f"{key}: shape {tuple(raw.shape)}, expected a 4-d conv "
                    f"weight (C_out, C_in, k, 1)"
                )
            arr = _to_flax_layout(kind, field, raw)
            produced[path] = (key, arr)
            break
        else:
            unexpected.append(key)
    missing = [path for path in expected if path not in produced]
    extra = [produced[p][0] for p in produced if p not in expected]
    problems = []
    if unexpected or extra:
        problems.append(f"unexpected keys: {sorted(unexpected + extra)}")
    if missing:
        problems.append("missing keys: " + str(sorted(_torch_key(p) for p in missing)))
    for path, (key, arr) in produced.items():
        if path in expected and tuple(arr.shape) != expected[path]:
            torch_shape = tuple(_as_numpy(sd[key]).shape)
            problems.append(
                f"{key}: shape {torch_shape} does not fit the model "
                f"(Flax {'/'.join(path)} expects {expected[path]})"
            )
    if problems:
        raise ConversionError(
            f"state_dict does not match the SeSyn-Net network ({config}): " + "; ".join(problems)
        )
    for path, (_, arr) in produced.items():
        node = variables
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.asarray(arr, np.float32) if arr.dtype != np.float64 else arr
    return (variables, unused) if return_unused else variables


def _torch_key(path: tuple) -> str:
    """The torch key of a Flax leaf path (inverse of the rules)."""
    collection, module = path[0], path[1:-1]
    leaf = path[-1]
    if module == () and leaf.startswith("edge_importance_"):
        return f"edge_importance.{leaf.rsplit('_', 1)[1]}"
    bn_field = {
        ("params", "scale"): "weight",
        ("params", "bias"): "bias",
        ("batch_stats", "mean"): "running_mean",
        ("batch_stats", "var"): "running_var",
    }
    if module == ("data_bn",):
        return f"data_bn.{bn_field[(collection, leaf)]}"
    block = module[0].split("_")[1]
    sub = {
        "gcn": "gcn.conv",
        "tcn_bn1": "tcn.0",
        "tcn_conv": "tcn.2",
        "tcn_bn2": "tcn.3",
        "residual_conv": "residual.0",
        "residual_bn": "residual.1",
    }[module[1]]
    if module[1].endswith(("bn", "bn1", "bn2")):
        field = bn_field[(collection, leaf)]
    else:
        field = "weight" if leaf == "kernel" else leaf
    return f"st_gcn_networks.{block}.{sub}.{field}"


def _kind(path: tuple) -> str:
    module = path[1:-1]
    if not module:
        return "param"
    if module[-1] in ("gcn", "residual_conv"):
        return "conv1x1"
    if module[-1] == "tcn_conv":
        return "tconv"
    return "bn"


def _unused_defaults(config: Mapping, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors the published module has but never uses, re-created (seeded)."""
    rng = np.random.default_rng(0)
    out = {
        "channel.ChannelGate.mlp.1.weight": rng.uniform(-0.25, 0.25, (8, 17)),
        "channel.ChannelGate.mlp.1.bias": rng.uniform(-0.25, 0.25, (8,)),
        "channel.ChannelGate.mlp.3.weight": rng.uniform(-0.35, 0.35, (17, 8)),
        "channel.ChannelGate.mlp.3.bias": rng.uniform(-0.35, 0.35, (17,)),
        "mlp.multi_layer.0.weight": rng.uniform(-0.7, 0.7, (1, 2, 1, 1)),
        "mlp.multi_layer.0.bias": rng.uniform(-0.7, 0.7, (1,)),
    }
    out = {k: v.astype(np.float32) for k, v in out.items()}
    for key in state:
        if key.endswith("running_mean"):
            out[key.replace("running_mean", "num_batches_tracked")] = np.zeros((), np.int64)
    return out


def flax_to_torch(
    variables: Mapping, unused: Mapping[str, Any] | None = None, model_config: Mapping | None = None
) -> dict:
    """Flax variables -> a torch state_dict (dict of torch tensors) that the published network
    loads with strict=True. ``unused``: tensors carried from an import (else re-created)."""
    config = dict(model_config) if model_config is not None else _config_from_variables(variables)
    # model.json may leave out fields at their defaults (layout, strategy)
    config = {"layout": STGCNEmbedding.layout, "strategy": STGCNEmbedding.strategy, **config}
    padding = config.get("padding", "zero")
    if padding != "zero":
        raise ConversionError(
            f"this model pads its temporal convolutions with {padding!r}; the published PyTorch "
            f"module zero-pads them, so exported weights would compute different embeddings "
            f"near both ends of every sequence there. Only models with padding='zero' export."
        )
    torch = require_torch()
    expected = _expected_shapes(config)
    state: dict[str, np.ndarray] = {}
    got = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    )[0]:
        got[tuple(p.key for p in path)] = np.asarray(leaf)
    missing = [p for p in expected if p not in got]
    extra = [p for p in got if p not in expected]
    if missing or extra:
        raise ConversionError(
            f"variables do not match the network {config}: missing "
            f"{['/'.join(p) for p in missing]}, unexpected "
            f"{['/'.join(p) for p in extra]}"
        )
    for path, arr in got.items():
        if arr.shape != expected[path]:
            raise ConversionError(f"{'/'.join(path)}: shape {arr.shape}, expected {expected[path]}")
        field = path[-1]
        kind = _kind(path)
        tfield = "bias" if field == "bias" else field
        state[_torch_key(path)] = _to_torch_layout(kind, tfield, arr)
    state["A"] = graph_lib.adjacency(config["layout"], config["strategy"]).astype(np.float32)
    extras = _unused_defaults(config, state)
    for key, value in (unused or {}).items():
        extras[key] = _as_numpy(value)
    state.update(extras)
    # np.array, not np.ascontiguousarray: the latter turns 0-d counters into shape (1,)
    return {k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in state.items()}


def _config_from_variables(variables: Mapping) -> dict:
    """Model config from the shapes of a variables tree (published graph defaults)."""
    params = variables["params"]
    widths, i = [], 0
    while f"block_{i}" in params:
        widths.append(int(np.shape(params[f"block_{i}"]["tcn_conv"]["kernel"])[2]))
        i += 1
    if not widths:
        raise ConversionError("variables have no 'block_0': not an STGCNEmbedding")
    imp = params.get("edge_importance_0")
    k_v = np.shape(imp) if imp is not None else None
    v = k_v[1] if k_v else 17
    k = k_v[0] if k_v else 3
    layout = _LAYOUT_BY_JOINTS[v]
    strategy = _STRATEGY_BY_PARTITIONS[k]
    kern = np.shape(params["block_0"]["tcn_conv"]["kernel"])
    in_ch = int(np.shape(params["block_0"]["gcn"]["kernel"])[0])
    return dict(
        layout=layout,
        strategy=strategy,
        widths=tuple(widths),
        kernel_size=int(kern[0]),
        in_channels=in_ch,
    )


def check_torch_file(path: str) -> None:
    """Refuse what cannot be a PyTorch checkpoint (torch.save writes a zip archive, or a pickle
    in the legacy format) before torch is needed to read it."""
    if os.path.isdir(path):
        raise ConversionError(
            f"{path}: a folder; expected a PyTorch .pth file (a sesyn-jax export folder or "
            f"train.py workdir converts the other way, with flax2torch)"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ConversionError(f"{path}: cannot be read ({e.strerror})") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ConversionError(
            f"{path}: not a checkpoint (a PyTorch .pth is a zip archive or a pickle; a "
            f"sesyn-jax export is a folder with model.json)"
        )


def load_torch_checkpoint(path: str):
    """A .pth file -> the object torch.load returns (weights only, on the CPU)."""
    check_torch_file(path)
    torch = require_torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt file
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({e})") from e


def load_torch_inference(path: str) -> LoadedModel:
    """A PyTorch .pth (published or exported) as a model ready for inference."""
    sd = unwrap_checkpoint(load_torch_checkpoint(path))
    config = infer_model_config(sd)
    variables, unused = torch_to_flax(sd, return_unused=True, model_config=config)
    return LoadedModel(variables, config, unused, {"source": f"PyTorch checkpoint {path}"})
