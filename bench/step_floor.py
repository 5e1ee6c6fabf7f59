"""How close the train step runs to this machine's arithmetic limit, and what a speed target needs.

  python bench/step_floor.py [--frames 120] [--repeats 9] [--json]

In one process, interleaved step by step, medians of --repeats after warm-up:

- the float32 matrix-multiply rate of a 2048^3 product (JAX and PyTorch): the machine's peak;
- our PyTorch implementation's train step at batch 1 (the published setting);
- the JAX train step at batch 1 (BatchNorm per view and joint), the step train.py runs;
- "products only": the same network's convolutions and matrix products alone (graph conv,
  temporal conv, the 1x1 residual conv; no BatchNorm, ReLU, masks, identity residuals, loss or
  optimizer), forward and backward for the two views of one pair, as JAX compiles them. No
  implementation of this network can run its train step faster than its products, so this is a
  floor for the whole step with XLA's kernels.

The arithmetic of one step is XLA's own count (``cost_analysis``) of the compiled per-view step;
PyTorch does the same arithmetic. JAX and PyTorch share this process, and their thread pools
slow each other on a small machine (bench/train_throughput.py times them apart), so the ratios
here are for comparing the parts of the step, not the two runtimes. The last lines compare the
step time a target ratio over PyTorch batch 1 asks for (``--target``, default 1.25) with the
products-only floor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train_throughput import (  # noqa: E402  (bench/ is not a package)
    jax_step,
    make_batch,
    torch_step,
    train_step_and_state,
)

from sesyn_jax.hostmem import tune_host_allocator  # noqa: E402


def xla_flops(compiled) -> float:
    """The floating-point operation count XLA reports for a compiled computation."""
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def step_flops(t: int, bn_mode: str = "per_view") -> float:
    """XLA's count of the floating-point operations of one train step on a pair of t frames."""
    import jax

    step, state = train_step_and_state(bn_mode=bn_mode)
    return xla_flops(jax.jit(step).lower(state, make_batch(1, t)).compile())


def products_step(t: int):
    """(run, flops): forward + backward of the network's products alone for one pair."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from sesyn_jax import graph as graph_lib
    from sesyn_jax.model import GraphConv, Pointwise, STGCNEmbedding, TemporalConv

    net = STGCNEmbedding()

    class Products(nn.Module):
        @nn.compact
        def __call__(self, x, a):
            c_in = x.shape[-1]
            for i, width in enumerate(net.widths):
                y = GraphConv(width, name=f"gcn_{i}")(x, a)
                y = TemporalConv(width, net.kernel_size, name=f"tcn_{i}")(y)
                if i > 0 and width != c_in:
                    y = y + Pointwise(width, name=f"residual_{i}")(x)
                x, c_in = y, width
            return x

    a = jnp.asarray(
        graph_lib.adjacency(graph_lib.get_layout(net.layout), net.strategy), jnp.float32
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-0.4, 0.4, (2, t, a.shape[1], net.in_channels)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, t, a.shape[1], net.widths[-1])), jnp.float32)
    mod = Products()
    params = mod.init(jax.random.PRNGKey(0), x, a)["params"]
    grad = jax.jit(jax.grad(lambda p: jnp.vdot(mod.apply({"params": p}, x, a), g)))
    compiled = grad.lower(params).compile()
    return (lambda: jax.block_until_ready(compiled(params))), xla_flops(compiled)


def matmul_peak(torch, n: int = 2048):
    """(run_jax, run_torch, flops) of one n x n x n float32 product."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    mm = jax.jit(jnp.dot).lower(ja, jb).compile()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return (lambda: mm(ja, jb).block_until_ready()), (lambda: torch.mm(ta, tb)), 2.0 * n**3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--target",
        type=float,
        default=1.25,
        help="ratio over PyTorch batch 1 to compare the floor with",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    tune_host_allocator()  # as train.py, before JAX starts its threads
    import jax
    import torch

    torch.set_num_threads(os.cpu_count())
    t = args.frames
    mm_jax, mm_torch, mm_flops = matmul_peak(torch)
    products, products_flops = products_step(t)
    flops = step_flops(t)
    runs = {
        "matmul 2048^3 (JAX)": (mm_jax, mm_flops, 0),
        "matmul 2048^3 (PyTorch)": (mm_torch, mm_flops, 0),
        "PyTorch step, batch 1": (torch_step(1, t), flops, 1),
        "JAX step, batch 1, BN per view": (jax_step(1, t, bn_mode="per_view")[0], flops, 1),
        "JAX step, batch 1, BN joint": (jax_step(1, t, bn_mode="joint")[0], flops, 1),
        "JAX products only (floor)": (products, products_flops, 1),
    }
    for fn, _, _ in runs.values():
        for _ in range(args.warmup):
            fn()
    secs = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved, so that the machine's drift is shared
        for k, (fn, _, _) in runs.items():
            t0 = time.perf_counter()
            fn()
            secs[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in secs.items()}
    peak = max(mm_flops / med["matmul 2048^3 (JAX)"], mm_flops / med["matmul 2048^3 (PyTorch)"])

    print(
        f"JAX {jax.__version__}, PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPU cores; {t} frames; medians of {args.repeats}, interleaved"
    )
    print(
        f"one train step: {flops / 1e9:.1f} GFLOP (XLA's count); products only: "
        f"{products_flops / 1e9:.1f} GFLOP"
    )
    print(f"{'':32s} {'s':>7} {'pairs/s':>8} {'GFLOP/s':>8} {'of peak':>8}")
    rows = {}
    for k, (_, fl, pairs) in runs.items():
        rate = fl / med[k] / 1e9
        rows[k] = {
            "s": round(med[k], 4),
            "gflop_per_s": round(rate, 1),
            "fraction_of_peak": round(rate * 1e9 / peak, 3),
        }
        pps = f"{pairs / med[k]:8.2f}" if pairs else f"{'':8s}"
        print(f"{k:32s} {med[k]:7.3f} {pps} {rate:8.1f} {rate * 1e9 / peak:8.0%}")
    torch_s = med["PyTorch step, batch 1"]
    need = torch_s / args.target
    floor = med["JAX products only (floor)"]
    best = min(med["JAX step, batch 1, BN per view"], med["JAX step, batch 1, BN joint"])
    print(f"JAX step / PyTorch batch 1: {torch_s / best:.2f}x (best of the two BN modes)")
    print(
        f"{args.target:.2f}x PyTorch batch 1 needs a {need:.3f} s step; the products alone take "
        f"{floor:.3f} s ({floor / need:.2f}x of it), which leaves {need - floor:+.3f} s for "
        f"BatchNorm, ReLU, masks, residuals, loss and optimizer (the JAX step spends "
        f"{best - floor:.3f} s on them now)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "frames": t,
                    "step_gflop": round(flops / 1e9, 2),
                    "peak_gflop_per_s": round(peak / 1e9, 1),
                    "rows": rows,
                    "ratio_vs_torch_b1": round(torch_s / best, 3),
                    "target_step_s": round(need, 4),
                    "products_floor_s": round(floor, 4),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
