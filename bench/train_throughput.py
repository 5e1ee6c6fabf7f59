"""Training throughput: the jit-compiled train step train.py uses against our PyTorch
implementation of the published network, same machine, same thread count, interleaved.

  python bench/train_throughput.py [--frames 120 480] [--batches 1 2 4 8] [--repeats 5]
      [--bn-mode joint|per_view] [--host-allocator tuned|default] [--json]

For each frame count: PyTorch at batch 1 (the published setting: one pair per step, each view
its own forward) and at each JAX batch size, JAX at each batch size; medians of --repeats timed
steps after warm-up. PyTorch runs in a child process, once before and once after the JAX
timings, its figure the median of both runs: in one process the two runtimes' thread pools
slow each other (PyTorch's OpenMP threads keep spinning after each operation, on the cores the
next JAX step needs; measured on 2 cores, JAX 0.146 s alone against 0.185 s interleaved, and
PyTorch 0.116 s against 0.148 s). JAX pairs/s are those of the
steps train.py runs between logs (no per-term gradient norms); jax_logged_step_s is a logged
step (one more backward of the loss per term, every train.log_every steps). Prints pairs/s,
ratios, JAX compile time, the process's peak resident memory and the page faults per JAX step (see
sesyn_jax/hostmem.py: --host-allocator tuned, the default, is what train.py runs with; PyTorch's
allocator is not affected by it, measured). With --json the last line is a JSON
object with frames, batch and pairs_per_s of JAX at its best batch size (per frame count under
"all").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_batch(b: int, t: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    poses = rng.uniform(-0.4, 0.4, (2, b, t, 17, 3)).astype(np.float32)
    poses[..., 2] = rng.uniform(0.3, 1.0, poses.shape[:-1])
    return {
        "poses1": poses[0],
        "poses2": poses[1],
        "mask1": np.ones((b, t), bool),
        "mask2": np.ones((b, t), bool),
    }


def train_step_and_state(dtype: str = "float32", bn_mode: str = "joint"):
    """(train_step, state): the published network, loss weights and optimizer, as train.py."""
    import jax
    import jax.numpy as jnp
    from sesyn_jax import losses
    from sesyn_jax.train.state import create_state, make_optimizer
    from sesyn_jax.train.step import make_train_step
    from sesyn_jax.model import STGCNEmbedding, init_variables

    model = STGCNEmbedding(dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
    tx = make_optimizer(0.005, 0.9, True, 1e-4)
    state = create_state(init_variables(model, jax.random.PRNGKey(0)), tx)
    step = make_train_step(
        model,
        losses.make_loss_fn({"identity": 1.0, "deviation": 0.5, "interval": 0.035}),
        tx,
        bn_mode,
    )
    return step, state


def jax_step(b: int, t: int, dtype: str = "float32", bn_mode: str = "joint"):
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    step, state = train_step_and_state(dtype, bn_mode)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    rep, dat = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    fn = jax.jit(step, in_shardings=(rep, dat, rep), out_shardings=(rep, rep), donate_argnums=(0,))
    batch = jax.device_put(make_batch(b, t), dat)
    state = jax.device_put(state, rep)
    t0 = time.perf_counter()
    compiled = fn.lower(state, batch, np.bool_(False)).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run(logged: bool = False):
        """One step; ``logged``: with the per-term gradient norms, as train.py's steps every
        train.log_every (the others skip them)."""
        holder["state"], m = compiled(holder["state"], batch, np.bool_(logged))
        jax.block_until_ready(m["loss"])

    return run, compile_s


def torch_step(b: int, t: int):
    import torch
    from sesyn_jax.torch_model import build_torch_model, poses_to_torch_layout, torch_sesyn_loss

    model = build_torch_model().train()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.005, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    batch = make_batch(b, t)
    x1 = torch.from_numpy(poses_to_torch_layout(batch["poses1"]))
    x2 = torch.from_numpy(poses_to_torch_layout(batch["poses2"]))

    def run():
        out1, out2 = model(x1), model(x2)  # one forward per view, as published
        loss = sum(torch_sesyn_loss(out2[i], out1[i], 0.5, 0.035)[0] for i in range(b)) / b
        opt.zero_grad()
        loss.backward()
        opt.step()

    return run


def torch_timings(frames, batches, repeats: int, warmup: int) -> dict:
    """PyTorch's step times, in seconds, keyed "frames/batch" (batch 1 always included)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    steps = {}
    for t in frames:
        for b in sorted({1, *batches}):
            fn = torch_step(b, t)
            for _ in range(warmup):
                fn()
            steps[f"{t}/{b}"] = [median_time(fn, 1) for _ in range(repeats)]
    return {"version": torch.__version__, "steps": steps}


def torch_in_child(args) -> dict:
    """torch_timings in a fresh process (no JAX threads beside it)."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--torch-only",
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--frames",
        *map(str, args.frames),
        "--batches",
        *map(str, args.batches),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def timed_with_faults(fn) -> tuple[float, int]:
    """(seconds, minor page faults of this process) of one call."""
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, nargs="+", default=[120, 480])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument(
        "--bn-mode",
        default="joint",
        choices=["joint", "per_view"],
        help="train.bn_mode of the JAX step: 'joint' (both views in one forward, the "
        "quickstart's) or 'per_view' (one forward per view, as published and as "
        "configs/ntu_syn.py and cmu_syn.py train)",
    )
    p.add_argument(
        "--host-allocator",
        default="tuned",
        choices=["tuned", "default"],
        help="'tuned': sesyn_jax.hostmem.tune_host_allocator() first, as train.py "
        "does; 'default': glibc's defaults",
    )
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_only:
        print(json.dumps(torch_timings(args.frames, args.batches, args.repeats, args.warmup)))
        return 0
    allocator = "default"
    if args.host_allocator == "tuned":
        from sesyn_jax.hostmem import tune_host_allocator

        allocator = tune_host_allocator()

    import jax

    threads = os.cpu_count()
    torch_runs = []
    if not args.no_torch:
        torch_runs.append(torch_in_child(args))
    print(
        f"JAX {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)); "
        + (
            f"PyTorch {torch_runs[0]['version']}, {threads} threads, in a child process "
            "before and after; "
            if torch_runs
            else ""
        )
        + f"{threads} CPU cores; {args.repeats} timed repeats after {args.warmup} warm-up; "
        + f"host allocator: {allocator}"
    )
    rows, best = [], {}
    for t in args.frames:
        for b in args.batches:
            jfn, compile_s = jax_step(b, t, args.dtype, args.bn_mode)
            for _ in range(args.warmup):
                jfn()
            tj, tl, faults = [], [], []
            for _ in range(args.repeats):
                s, f = timed_with_faults(jfn)
                tj.append(s)
                faults.append(f)
                tl.append(median_time(lambda: jfn(True), 1))
            rows.append(
                {
                    "frames": t,
                    "batch": b,
                    "bn_mode": args.bn_mode,
                    "jax_pairs_per_s": round(b / float(np.median(tj)), 3),
                    "jax_step_s": round(float(np.median(tj)), 4),
                    "jax_logged_step_s": round(float(np.median(tl)), 4),
                    "compile_s": round(compile_s, 2),
                    "jax_page_faults_per_step": int(np.median(faults)),
                    "host_allocator": allocator,
                }
            )
    if torch_runs:
        torch_runs.append(torch_in_child(args))
    for row in rows:
        t, b, j = row["frames"], row["batch"], row["jax_pairs_per_s"]
        if torch_runs:
            step_s = {
                k: float(np.median(sum((r["steps"][k] for r in torch_runs), [])))
                for k in (f"{t}/{b}", f"{t}/1")
            }
            tb, t_ref = b / step_s[f"{t}/{b}"], 1 / step_s[f"{t}/1"]
            row.update(
                torch_pairs_per_s=round(tb, 3),
                torch_b1_pairs_per_s=round(t_ref, 3),
                torch_b1_step_s_before_after=[
                    round(float(np.median(r["steps"][f"{t}/1"])), 4) for r in torch_runs
                ],
                ratio_vs_torch_b1=round(j / t_ref, 3),
                ratio_vs_torch_same_b=round(j / tb, 3),
            )
        print(json.dumps(row), flush=True)
        if t not in best or j > best[t]["pairs_per_s"]:
            best[t] = {"frames": t, "batch": b, "bn_mode": args.bn_mode, "pairs_per_s": j}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(
        f"{'frames':>6} {'batch':>5} {'JAX pairs/s':>12} {'torch same B':>13} "
        f"{'torch B=1':>10} {'JAX/torch B=1':>14} {'JAX/torch same B':>17} {'compile s':>10}"
    )
    for r in rows:
        print(
            f"{r['frames']:>6} {r['batch']:>5} {r['jax_pairs_per_s']:>12.2f} "
            f"{r.get('torch_pairs_per_s', float('nan')):>13.2f} "
            f"{r.get('torch_b1_pairs_per_s', float('nan')):>10.2f} "
            f"{r.get('ratio_vs_torch_b1', float('nan')):>14.2f} "
            f"{r.get('ratio_vs_torch_same_b', float('nan')):>17.2f} {r['compile_s']:>10.1f}"
        )
    print(f"peak resident memory of this process: {peak_mb:.0f} MiB")
    if args.json:
        print(
            json.dumps(
                {
                    **best[min(args.frames)],
                    "all": list(best.values()),
                    "rows": rows,
                    "peak_rss_mib": round(peak_mb),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
