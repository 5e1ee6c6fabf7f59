"""Inference throughput: frames per second of embedding (eval mode, jit) and of offset
estimation, for the published network.

  python bench/embed_throughput.py [--frames 120 480] [--batch 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, nargs="+", default=[120, 480])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from sesyn_jax.hostmem import tune_host_allocator

    allocator = tune_host_allocator()  # as the entry points do; see sesyn_jax/hostmem.py

    import jax
    import jax.numpy as jnp
    from sesyn_jax.evaluation import make_embed_fn
    from sesyn_jax.offset_search import estimate_offsets
    from sesyn_jax.model import STGCNEmbedding, init_variables

    model = STGCNEmbedding()
    variables = init_variables(model, jax.random.PRNGKey(0))
    embed = make_embed_fn(model)
    print(
        f"JAX {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch} sequences; "
        f"host allocator: {allocator}"
    )
    print(f"{'frames':>6} {'embed frames/s':>15} {'offset pairs/s':>15} {'compile s':>10}")
    for t in args.frames:
        rng = np.random.default_rng(0)
        poses = jnp.asarray(rng.uniform(-0.4, 0.4, (args.batch, t, 17, 3)), jnp.float32)
        mask = jnp.ones((args.batch, t), bool)
        t0 = time.perf_counter()
        jax.block_until_ready(embed(variables, poses, mask))
        compile_s = time.perf_counter() - t0
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            f = jax.block_until_ready(embed(variables, poses, mask))
            ts.append(time.perf_counter() - t0)
        half = args.batch // 2
        fu, fv, m = np.asarray(f[:half]), np.asarray(f[half:]), np.asarray(mask[:half])
        estimate_offsets(fu, fv, m, m)  # compile
        to = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            estimate_offsets(fu, fv, m, m)
            to.append(time.perf_counter() - t0)
        print(
            f"{t:>6} {args.batch * t / np.median(ts):>15.0f} {half / np.median(to):>15.1f} "
            f"{compile_s:>10.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
