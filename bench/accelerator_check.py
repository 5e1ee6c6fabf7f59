"""A few minutes' check of an accelerator (GPU or TPU): numerics against float64, training
throughput and model FLOP utilization, the input pipeline, and several devices against one.

  python bench/accelerator_check.py [--small | --full] [--json]

Prints one JSON line (last) with:
  numerics     the loss and its gradient of one fixed batch of rendered pairs, computed by the
               train step on the first device in float32 and in bfloat16, against the same step in
               float64 on the CPU: relative error of the loss, of the whole gradient (norm of the
               difference / norm) and the largest error of one gradient entry / the largest
               entry;
  throughput   per compute dtype and batch size: the train step's time (median of the timed
               steps after one warm-up), pairs/s, FLOPs of one device's compiled step (XLA's cost
               analysis), achieved FLOP/s and the model FLOP utilization, FLOP/s / the device's
               peak for that dtype (null where the peak is not known, as on the CPU);
  input        pairs/s of the device renderer (data/render_jax.py) at the largest batch and of
               the numpy renderer with the batcher's padding, on this host;
  scaling      with several devices: the largest batch on one device against all of them.
Full size (default on GPU and TPU): the published network (configs/default.py) at NTU-SYN size,
120 frames, batches 8, 16, 32 and 64, float32 and bfloat16, about 2-4 minutes. --small (default
on the CPU): 32 frames, batch 2 and a two-block network of width 16, under a minute; --full on
the CPU takes many minutes. A configuration that would start after --budget seconds is listed
under "skipped" instead of run.

Peak dense FLOP/s per device by device kind (the first name contained in jax's device_kind):
float32 products run at the backend's default precision, which is TF32 on NVIDIA GPUs since
Ampere and one bfloat16 pass on TPUs, so their float32 peak is that one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# device_kind substring -> peak dense FLOP/s {compute dtype: FLOP/s}; vendors' data sheets
PEAK_FLOPS = {
    "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},
    "H100": {"bfloat16": 989e12, "float32": 495e12},
    "H200": {"bfloat16": 989e12, "float32": 495e12},
    "GH200": {"bfloat16": 989e12, "float32": 495e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "L4": {"bfloat16": 121e12, "float32": 60e12},
    "V100": {"bfloat16": None, "float32": 15.7e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12, "float32": 918e12},
}
SMALL = dict(frames=32, batches=(2,), widths=(16, 16), numerics_batch=2)
FULL = dict(frames=120, batches=(8, 16, 32, 64), widths=None, numerics_batch=4)


def peak_flops(device_kind: str, dtype: str) -> float | None:
    for name in sorted(PEAK_FLOPS, key=len, reverse=True):
        if name.lower() in device_kind.lower():
            return PEAK_FLOPS[name][dtype]
    return None


def relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


def capture_gradient():
    """An optax transformation that applies no update and keeps the gradient as its state: the
    train step then hands back exactly the gradient it computed."""
    import jax
    import jax.numpy as jnp
    import optax

    def init(params):
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    def update(grads, state, params=None):
        return jax.tree_util.tree_map(jnp.zeros_like, grads), grads

    return optax.GradientTransformation(init, update)


class Setup:
    """The network, loss and train step of configs/default.py at one size."""

    def __init__(self, frames: int, widths):
        from configs import default
        from sesyn_jax import losses
        from sesyn_jax.data import mocap_syn, render

        self.config = default.get_config()
        if widths:
            self.config.model.widths = tuple(widths)
        self.frames = frames
        self.pair_loss = losses.make_loss_fn(
            dict(self.config.loss.weights), self.config.loss.options.to_dict()
        )
        clips = [c for c in mocap_syn.load_embedded() if c.name not in mocap_syn.TEST_CLIPS]
        cfg = mocap_syn.BuildConfig(frames=frames, max_offset=frames // 4)
        self.pairs = render.RenderedPairs(clips, cfg, render.Augment(), 64, 0, min_length=16)
        self._renderers = {}

    def renderer(self, batch_size: int, devices):
        """The device renderer of batch_size pairs split over ``devices`` (one per layout)."""
        import jax
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from sesyn_jax.data import render_jax

        key = (batch_size, tuple(d.id for d in devices))
        if key not in self._renderers:
            mesh = jax.make_mesh((len(devices),), ("data",), devices=devices)
            self._renderers[key] = render_jax.make_device_renderer(
                self.pairs,
                batch_size,
                (self.frames,),
                self.config.model.normalization,
                NamedSharding(mesh, P("data")),
            )
        return self._renderers[key]

    def model(self, dtype: str):
        from sesyn_jax.train.state import make_model

        self.config.model.dtype = dtype
        return make_model(self.config)

    def step(self, dtype: str, tx):
        from sesyn_jax.train import step as train_step_lib

        c = self.config
        return train_step_lib.make_train_step(
            self.model(dtype), self.pair_loss, tx, c.train.bn_mode
        )

    def variables(self):
        import jax

        from sesyn_jax.model import init_variables

        return init_variables(self.model("float32"), jax.random.PRNGKey(0))

    def numpy_batch(self, size: int) -> dict:
        """A fixed batch: the dataset's first pairs (seeded by index), padded to ``frames``."""
        from sesyn_jax.data.pairs import PairBatcher
        from sesyn_jax.train.distributed import TRAIN_KEYS

        batcher = PairBatcher(
            [self.pairs[i] for i in range(size)],
            size,
            (self.frames,),
            train=False,
            normalization=self.config.model.normalization,
        )
        batch = batcher.make_batch(np.arange(size))
        return {k: batch[k] for k in TRAIN_KEYS}


def numerics(setup: Setup, size: int) -> dict:
    """Loss and gradient of one batch: the train step on the first device in float32 and
    bfloat16 against the same step in float64 on the CPU."""
    import jax
    import jax.numpy as jnp

    from sesyn_jax.train import state as training

    batch = setup.numpy_batch(size)
    variables = setup.variables()
    tx = capture_gradient()

    def loss_and_grad(dtype: str, device):
        with jax.default_device(device):
            cast = jnp.float64 if dtype == "float64" else jnp.float32
            v = jax.tree_util.tree_map(lambda x: jnp.asarray(x, cast), variables)
            b = {k: jnp.asarray(x, cast) if x.dtype.kind == "f" else x for k, x in batch.items()}
            state = training.create_state(v, tx)
            new, metrics = jax.jit(setup.step(dtype, tx))(state, b)
            return jax.device_get((metrics["loss"], new.opt_state))

    cpu = jax.devices("cpu")[0]
    with jax.enable_x64(True):
        want_loss, want_grad = loss_and_grad("float64", cpu)
    flat_want = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(want_grad)])
    out = {"batch": size, "frames": setup.frames, "loss_float64": float(want_loss)}
    for dtype in ("float32", "bfloat16"):
        loss, grad = loss_and_grad(dtype, jax.devices()[0])
        flat = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(grad)])
        out[dtype] = {
            "loss": float(loss),
            "loss_rel_err": abs(float(loss) - float(want_loss)) / abs(float(want_loss)),
            "grad_rel_err": relative_error(flat, flat_want),
            "grad_max_abs_err_over_max": float(
                np.abs(flat - flat_want).max() / np.abs(flat_want).max()
            ),
        }
    return out


def throughput(setup: Setup, dtype: str, batch_size: int, devices, steps: int) -> dict:
    """The train step (configs/default.py's optimizer) at one dtype and batch size, the batch
    rendered on the devices and split over them."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from sesyn_jax.train import state as training
    from sesyn_jax.data import render_jax

    mesh = jax.make_mesh((len(devices),), ("data",), devices=devices)
    data, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    c = setup.config.train
    tx = training.make_optimizer(c.lr, c.momentum, c.nesterov, c.weight_decay)
    fn = jax.jit(
        setup.step(dtype, tx),
        in_shardings=(replicated, data),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    batch = setup.renderer(batch_size, devices)(render_jax.step_key(0, 0))
    state = jax.device_put(training.create_state(setup.variables(), tx), replicated)
    t0 = time.perf_counter()
    compiled = fn.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) if cost and cost.get("flops") else None
    state, metrics = compiled(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    peak = peak_flops(devices[0].device_kind, dtype)
    achieved = flops / step_s if flops else None
    return {
        "dtype": dtype,
        "batch": batch_size,
        "devices": len(devices),
        "step_s": round(step_s, 6),
        "pairs_per_s": round(batch_size / step_s, 2),
        "compile_s": round(compile_s, 2),
        "flops_per_step": flops,
        "flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "mfu": round(achieved / peak, 4) if (achieved and peak) else None,
        "loss": float(metrics["loss"]),
    }


def input_rates(setup: Setup, batch_size: int, devices) -> dict:
    import jax

    from sesyn_jax.data import render_jax
    from sesyn_jax.data.pairs import PairBatcher

    render = setup.renderer(batch_size, devices)
    jax.block_until_ready(render(render_jax.step_key(0, 0)))
    t0, n = time.perf_counter(), 20
    for s in range(1, n + 1):
        batch = render(render_jax.step_key(0, s))
    jax.block_until_ready(batch)
    device_rate = n * batch_size / (time.perf_counter() - t0)
    batcher = PairBatcher(
        setup.pairs, 8, (setup.frames,), normalization=setup.config.model.normalization
    )
    t0, n = time.perf_counter(), 4
    for s in range(n):
        batcher.make_batch(np.arange(8), epoch=s)
    numpy_rate = n * 8 / (time.perf_counter() - t0)
    return {
        "device_pairs_per_s": round(device_rate, 1),
        "device_batch": batch_size,
        "numpy_pairs_per_s": round(numpy_rate, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help="CPU sizes (default on the CPU)")
    size.add_argument("--full", action="store_true", help="NTU-SYN sizes (default elsewhere)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    p.add_argument("--budget", type=float, default=270.0, help="seconds; see the doc")
    p.add_argument("--json", action="store_true", help="print the JSON line only")
    args = p.parse_args(argv)
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()
    import jax

    start = time.perf_counter()
    devices = jax.devices()
    kind, platform = devices[0].device_kind, devices[0].platform
    small = args.small or (platform == "cpu" and not args.full)
    sizes = SMALL if small else FULL

    def say(*a):
        if not args.json:
            print(*a, flush=True)

    say(f"{len(devices)} x {kind} ({platform}); {'small' if small else 'full'} sizes")
    say("peak dense FLOP/s by device kind (bfloat16 / float32 at the default precision):")
    for name, peaks in PEAK_FLOPS.items():
        f32, bf16 = peaks["float32"], peaks["bfloat16"]
        say(f"  {name:12s} {bf16 / 1e12 if bf16 else float('nan'):7.1f} / {f32 / 1e12:6.1f} T")
    setup = Setup(sizes["frames"], sizes["widths"])
    out = {
        "device_kind": kind,
        "platform": platform,
        "device_count": len(devices),
        "small": small,
        "frames": sizes["frames"],
        "widths": list(setup.config.model.widths),
        "peak_flops_per_s": {d: peak_flops(kind, d) for d in ("float32", "bfloat16")},
    }
    out["numerics"] = numerics(setup, sizes["numerics_batch"])
    n = out["numerics"]
    say(
        "numerics against float64 on the CPU: "
        + ", ".join(
            f"{d} loss {n[d]['loss_rel_err']:.1e} gradient {n[d]['grad_rel_err']:.1e}"
            for d in ("float32", "bfloat16")
        )
    )
    rows, skipped = [], []
    batches = [b for b in sizes["batches"] if b % len(devices) == 0]
    for dtype in ("float32", "bfloat16"):
        for b in batches:
            if time.perf_counter() - start > args.budget:
                skipped.append({"dtype": dtype, "batch": b})
                continue
            row = throughput(setup, dtype, b, devices, args.steps)
            rows.append(row)
            mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
            say(
                f"{dtype:8s} batch {b:3d}: {row['step_s'] * 1e3:8.2f} ms/step "
                f"{row['pairs_per_s']:9.1f} pairs/s, MFU {mfu} (compile {row['compile_s']} s)"
            )
    out["throughput"], out["skipped"] = rows, skipped
    out["input"] = input_rates(setup, max(batches), devices)
    say(
        f"input: device renderer {out['input']['device_pairs_per_s']:.0f} pairs/s at batch "
        f"{max(batches)}, numpy renderer {out['input']['numpy_pairs_per_s']:.0f} pairs/s"
    )
    out["scaling"] = None
    if len(devices) > 1 and time.perf_counter() - start < args.budget:
        b = max(batches)
        one = throughput(setup, "float32", b, devices[:1], args.steps)
        every = throughput(setup, "float32", b, devices, args.steps)
        out["scaling"] = {
            "batch": b,
            "one_device_pairs_per_s": one["pairs_per_s"],
            "all_devices_pairs_per_s": every["pairs_per_s"],
            "speedup": round(every["pairs_per_s"] / one["pairs_per_s"], 3),
        }
        say(f"scaling at batch {b}: {out['scaling']['speedup']}x on {len(devices)} devices")
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
