"""JAX vs PyTorch numerics, layer by layer: ``python -m sesyn_jax.parity``.

Runs the same weights and inputs through ``STGCNEmbedding`` and our PyTorch implementation of
the published network (``torch_model``) and prints, per layer, the maximum absolute difference
and the relative difference max|jax - torch| / max|torch| (per element relative errors blow up
where values cross zero, so they are normalized by the layer's scale). Sections: eval forward,
train-mode forward with the updated BatchNorm running statistics, the loss and its gradient with
respect to the embeddings, and the parameters after a few SGD-Nesterov steps on both sides
(published per-view BatchNorm); in float32 and in float64 (JAX x64 against torch double).

Weights are random with perturbed BatchNorm statistics, biases and edge importances unless
``--torch-checkpoint`` names a .pth (published or exported). On a GPU, matrix products are set
to full float32 on both sides (TF32 is the default there) and the tool says so.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from sesyn_jax.torch_model import (
    build_torch_model,
    poses_to_torch_layout,
    require_torch,
    torch_sesyn_loss,
)

PAPER_MU = {"ntu": (0.5, 0.035), "cmu": (0.7, 0.015)}


def diff(a, b) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return err, err / scale if scale > 0 else err


def perturb_torch_model(
    tmodel, seed: int = 0, calibrate_on: np.ndarray | None = None, bn_scale: float = 1.0
):
    """Move every tensor away from its initial value: random BN statistics and affine
    parameters, random edge importances, non-zero biases; conv weights ~ N(0, 0.02) as the
    published training initialises them (larger would explode through nine blocks).
    BatchNorm weights are ~ bn_scale * (1 + 0.1 N(0, 1)) and its biases ~ bn_scale * 0.05 N(0, 1):
    the scale of the embeddings, and so of the distances the loss sees, follows bn_scale.

    ``calibrate_on`` (B, T, V, 3) poses: afterwards set every BN's running statistics to the
    statistics of these poses, as a trained model's would be, so that eval-mode embeddings are
    spread like real ones. Random running statistics that do not fit the data make all frames
    embed to almost the same point, where |a|^2 + |b|^2 - 2ab cancels catastrophically in
    float32 in any framework.
    """
    torch = require_torch()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(tmodel.named_parameters()) + list(tmodel.named_buffers()):
            if name == "A" or name.endswith("num_batches_tracked"):
                continue
            shape = p.shape
            if name.endswith("running_var"):
                new = 0.5 + 1.5 * torch.rand(shape, generator=g)
            elif name.endswith("running_mean"):
                new = 0.1 * torch.randn(shape, generator=g)
            elif name.startswith("edge_importance"):
                new = 0.5 + torch.rand(shape, generator=g)
            elif name.endswith("bias") and p.dim() == 1 and _is_bn_param(tmodel, name):
                new = bn_scale * 0.05 * torch.randn(shape, generator=g)
            elif name.endswith("bias"):
                new = 0.05 * torch.randn(shape, generator=g)
            elif p.dim() == 1:  # BN weight
                new = bn_scale * (1.0 + 0.1 * torch.randn(shape, generator=g))
            else:
                new = 0.02 * torch.randn(shape, generator=g)
            p.copy_(new.to(p.dtype))
    if calibrate_on is not None:
        bns = [m for m in tmodel.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        was_training = tmodel.training
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, exactly its statistics
        tmodel.train()
        with torch.no_grad():
            x = torch.from_numpy(poses_to_torch_layout(calibrate_on))
            tmodel(x.to(next(tmodel.parameters()).dtype))
        for m in bns:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
        tmodel.train(was_training)
    return tmodel


def _is_bn_param(tmodel, name: str) -> bool:
    torch = require_torch()
    module = tmodel.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)


def make_poses(frames: int, seed: int) -> np.ndarray:
    """(1, T, 17, 3) pose-like input: smooth normalized coordinates and scores in (0, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None]
    xy = 0.2 * np.sin(0.07 * t * rng.uniform(0.5, 2, (1, 17, 2)) + rng.uniform(0, 6, (1, 17, 2)))
    xy = xy + 0.01 * rng.normal(size=(frames, 17, 2))
    score = rng.uniform(0.3, 1.0, (frames, 17, 1))
    return np.concatenate([xy, score], -1)[None].astype(np.float32)


def torch_layer_outputs(tmodel, poses: np.ndarray, dtype) -> dict[str, np.ndarray]:
    """Outputs of data_bn and every block, in the Flax layout (B, T, ...)."""
    torch = require_torch()
    outs: dict[str, np.ndarray] = {}
    hooks = [
        tmodel.data_bn.register_forward_hook(
            lambda m, i, o: outs.__setitem__("data_bn", o.detach().permute(0, 2, 1).numpy())
        )
    ]
    for i, blk in enumerate(tmodel.st_gcn_networks):
        hooks.append(
            blk.register_forward_hook(
                lambda m, inp, o, i=i: outs.__setitem__(
                    f"block_{i}", o.detach().permute(0, 2, 3, 1).numpy()
                )
            )
        )
    try:
        x = torch.from_numpy(poses_to_torch_layout(poses)).to(dtype)
        outs["output"] = tmodel(x).detach().numpy()
    finally:
        for h in hooks:
            h.remove()
    return outs


def flax_layer_outputs(model, variables, poses, train: bool):
    import jax.numpy as jnp

    kw = dict(
        capture_intermediates=True, mutable=["intermediates"] + (["batch_stats"] if train else [])
    )
    out, state = model.apply(variables, jnp.asarray(poses), train=train, **kw)
    inter = state["intermediates"]
    res = {"data_bn": np.asarray(inter["data_bn"]["__call__"][0])}
    i = 0
    while f"block_{i}" in inter:
        res[f"block_{i}"] = np.asarray(inter[f"block_{i}"]["__call__"][0])
        i += 1
    res["output"] = np.asarray(out)
    return res, state.get("batch_stats")


def run_parity(
    seed: int = 0,
    frames: int = 48,
    steps: int = 3,
    state_dict=None,
    dtypes=("float32", "float64"),
    mu=PAPER_MU["ntu"],
    bn_scale: float = 0.05,
) -> list[tuple]:
    """Rows (section, name, max_abs, rel) of every comparison. bn_scale: see
    ``perturb_torch_model`` (ignored with a state_dict)."""
    import jax
    import jax.numpy as jnp
    import torch

    from sesyn_jax import convert, losses
    from sesyn_jax.model import STGCNEmbedding

    if state_dict is not None:
        config = convert.infer_model_config(state_dict)
    else:
        config = dict(
            layout="coco",
            strategy="spatial",
            widths=(64, 64, 64, 64, 128, 128, 128, 128, 128),
            kernel_size=9,
            in_channels=3,
        )
    rows = []
    poses1 = make_poses(frames, seed + 1)
    poses2 = make_poses(frames - 7, seed + 2)
    for dt in dtypes:
        tdtype = torch.float64 if dt == "float64" else torch.float32
        ctx = jax.enable_x64(True) if dt == "float64" else contextlib.nullcontext()
        with ctx:
            jdtype = jnp.float64 if dt == "float64" else jnp.float32
            base = build_torch_model(**config)
            if state_dict is not None:
                base.load_state_dict(convert.unwrap_checkpoint(state_dict), strict=False)
            else:
                perturb_torch_model(
                    base,
                    seed,
                    calibrate_on=np.concatenate(
                        [make_poses(frames, seed + 3), make_poses(frames, seed + 4)]
                    ),
                    bn_scale=bn_scale,
                )
            tmodel = base.to(tdtype)
            sd0 = {k: v.detach().clone() for k, v in tmodel.state_dict().items()}
            variables = convert.torch_to_flax(sd0, model_config=config)
            variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jdtype), variables)
            model = STGCNEmbedding(**config, dtype=jdtype)
            p1 = poses1.astype(np.float64 if dt == "float64" else np.float32)
            p2 = poses2.astype(p1.dtype)

            # eval forward, per layer
            tmodel.eval()
            with torch.no_grad():
                t_out = torch_layer_outputs(tmodel, p1, tdtype)
            j_out, _ = flax_layer_outputs(model, variables, p1, train=False)
            rows += [(f"eval forward {dt}", k) + diff(j_out[k], t_out[k]) for k in t_out]

            # train forward, per layer, then the updated running statistics
            tmodel.train()
            with torch.no_grad():
                t_out = torch_layer_outputs(tmodel, p1, tdtype)
            j_out, new_bs = flax_layer_outputs(model, variables, p1, train=True)
            rows += [(f"train forward {dt}", k) + diff(j_out[k], t_out[k]) for k in t_out]
            t_bs = convert.torch_to_flax(tmodel.state_dict(), model_config=config)["batch_stats"]
            rows += _leaf_rows(f"running stats {dt}", new_bs, t_bs)
            tmodel.load_state_dict(sd0)

            # loss and its gradient with respect to the embeddings (u = view 2, v = view 1)
            tmodel.eval()
            with torch.no_grad():
                e1 = tmodel(torch.from_numpy(poses_to_torch_layout(p1)).to(tdtype))[0]
                e2 = tmodel(torch.from_numpy(poses_to_torch_layout(p2)).to(tdtype))[0]
            fu = e2.clone().requires_grad_(True)
            fv = e1.clone().requires_grad_(True)
            t_loss, t_aux = torch_sesyn_loss(fu, fv, *mu)
            t_loss.backward()
            j_loss_fn = lambda a, b: losses.sesyn_loss(a, b, mu1=mu[0], mu2=mu[1])
            (j_loss, j_aux), (gu, gv) = jax.value_and_grad(j_loss_fn, argnums=(0, 1), has_aux=True)(
                jnp.asarray(e2.numpy()), jnp.asarray(e1.numpy())
            )
            rows.append((f"loss {dt}", "loss") + diff(j_loss, t_loss.item()))
            for k in ("identity", "deviation", "interval"):
                rows.append((f"loss {dt}", k) + diff(j_aux[k], t_aux[k].item()))
            rows.append((f"loss {dt}", "d loss / d f_u") + diff(gu, fu.grad.numpy()))
            rows.append((f"loss {dt}", "d loss / d f_v") + diff(gv, fv.grad.numpy()))

            # a few SGD-Nesterov steps on both sides, one pair per step, per-view BatchNorm
            if steps:
                rows += _optimizer_rows(
                    f"after {steps} steps {dt}",
                    tmodel,
                    sd0,
                    model,
                    variables,
                    p1,
                    p2,
                    steps,
                    mu,
                    tdtype,
                    jdtype,
                    config,
                )
    return rows


def _leaf_rows(section, ours, ref) -> list:
    import jax

    flat_ref = {
        tuple(p.key for p in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(ref)[0]
    }
    rows = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(ours)[0]:
        keys = tuple(p.key for p in path)
        rows.append((section, "/".join(keys)) + diff(leaf, flat_ref[keys]))
    return rows


def _optimizer_rows(
    section, tmodel, sd0, model, variables, p1, p2, steps, mu, tdtype, jdtype, config
) -> list:
    import jax
    import jax.numpy as jnp
    import torch

    from sesyn_jax import convert, losses
    from sesyn_jax.train.state import create_state, make_optimizer
    from sesyn_jax.train.step import make_train_step

    lr, wd = 0.005, 1e-4

    def torch_steps(m, dtype):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
        x1 = torch.from_numpy(poses_to_torch_layout(p1)).to(dtype)
        x2 = torch.from_numpy(poses_to_torch_layout(p2)).to(dtype)
        for _ in range(steps):
            out1, out2 = m(x1), m(x2)
            loss, _ = torch_sesyn_loss(out2[0], out1[0], *mu)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return m

    tmodel.load_state_dict(sd0)
    truth = None
    if tdtype != torch.float64:  # the same steps in float64: how far is each float32 run?
        import copy

        truth = torch_steps(copy.deepcopy(tmodel).double(), torch.float64)
    torch_steps(tmodel, tdtype)

    tx = make_optimizer(lr, 0.9, True, wd)
    state = create_state(variables, tx)
    t = p1.shape[1]
    pad2 = np.zeros_like(p1)
    pad2[:, : p2.shape[1]] = p2
    pad2[:, p2.shape[1] :] = 3.0  # garbage in padded frames
    mask2 = np.arange(t)[None] < p2.shape[1]
    batch = {
        "poses1": jnp.asarray(p1),
        "mask1": jnp.ones((1, t), bool),
        "poses2": jnp.asarray(pad2),
        "mask2": jnp.asarray(mask2),
    }
    pair = losses.make_loss_fn({"identity": 1.0, "deviation": mu[0], "interval": mu[1]})
    step = jax.jit(make_train_step(model, pair, tx, bn_mode="per_view"))
    for _ in range(steps):
        state, _ = step(state, batch)
    ref = convert.torch_to_flax(tmodel.state_dict(), model_config=config)

    def flat(params) -> np.ndarray:
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(params)])

    ours, theirs, start = flat(state.params), flat(ref["params"]), flat(variables["params"])
    global_err = np.linalg.norm(ours - theirs)
    upd = np.linalg.norm(theirs - start)
    rows = [
        (
            section,
            "all params: ||diff|| / ||params||",
            global_err,
            global_err / np.linalg.norm(theirs),
        ),
        (section, "all params: ||diff|| / ||update||", global_err, global_err / upd),
    ]
    if truth is not None:
        t64 = convert.torch_to_flax(
            {k: v.float() if v.is_floating_point() else v for k, v in truth.state_dict().items()},
            model_config=config,
        )
        exact = flat(t64["params"])
        for who, vec in (("jax", ours), ("torch", theirs)):
            e = np.linalg.norm(vec - exact)
            rows.append(
                (section, f"all params: ||{who} f32 - torch f64|| / ||update||", e, e / upd)
            )
            rows.append(
                (
                    section,
                    f"all params: ||{who} f32 - torch f64|| / ||params||",
                    e,
                    e / np.linalg.norm(exact),
                )
            )
    return (
        rows
        + _leaf_rows(section, {"params": state.params}, {"params": ref["params"]})
        + _leaf_rows(
            section, {"batch_stats": state.batch_stats}, {"batch_stats": ref["batch_stats"]}
        )
    )


def summarize(rows) -> list[tuple]:
    """Per section: the worst row (by relative difference)."""
    worst: dict[str, tuple] = {}
    for r in rows:
        if r[0] not in worst or r[3] > worst[r[0]][3]:
            worst[r[0]] = r
    return list(worst.values())


def format_rows(rows) -> str:
    lines = [f"{'section':<28} {'layer / tensor':<42} {'max abs diff':>13} {'rel diff':>10}"]
    for sec, name, a, r in rows:
        lines.append(f"{sec:<28} {name:<42} {a:>13.3e} {r:>10.2e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sesyn_jax.parity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--torch-checkpoint", help="a .pth (published or exported) to compare with")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bn-scale",
        type=float,
        default=0.05,
        help="scale of the random BatchNorm weights (default 0.05: embeddings "
        "whose squared distances are O(1-10), where all three loss terms are "
        "active; 1.0: the published initialisation's scale, where distances are "
        "thousands and float32 |a|^2+|b|^2-2ab cancels: there PyTorch's own "
        "float32 loss gradient is ~4e-4 from float64)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="print every tensor, not only the "
        "per-layer forward rows and each section's worst parameter",
    )
    args = parser.parse_args(argv)

    import jax
    import torch

    from sesyn_jax import convert

    device = jax.devices()[0]
    if device.platform == "gpu":
        jax.config.update("jax_default_matmul_precision", "highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print("GPU: matrix products set to full float32 on both sides (TF32 off).")
    print(f"JAX {jax.__version__} on {device.platform}; PyTorch {torch.__version__} on cpu")
    sd = None
    if args.torch_checkpoint:
        try:
            sd = convert.unwrap_checkpoint(convert.load_torch_checkpoint(args.torch_checkpoint))
            convert.torch_to_flax(sd)
        except (convert.ConversionError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    rows = run_parity(args.seed, args.frames, args.steps, sd, bn_scale=args.bn_scale)
    if args.all:
        print(format_rows(rows))
    else:
        forward = [r for r in rows if "forward" in r[0] or r[0].startswith("loss")]
        print(format_rows(forward))
        print("\nworst tensor per section:")
        print(format_rows(summarize(r for r in rows if r not in forward)))
        print("\nall parameters after the optimizer steps:")
        print(format_rows([r for r in rows if r[1].startswith("all params")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
