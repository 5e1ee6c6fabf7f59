"""Training input: rendered pairs per second of the numpy path (``render.RenderedPairs`` through
``PairBatcher`` in its background thread, as train.py feeds the step today) and of the device
path (``render_jax.make_device_renderer``: one jitted function of a key, the batch rendered on the
devices), and the train step's time at the same batch size, in one process.

  python bench/input_pipeline.py [--config configs/sync_default.py] [--batches 8 64]
      [--repeats 5] [--batches-per-repeat 16] [--json]

For every batch size the three are timed in turns (numpy, device, step; --repeats times) so that
a machine loaded by other work slows them alike; the figures are medians over the repeats, and
the load average before and after is reported. The numpy path is timed over whole batches as
the trainer's iterator yields them; the device path over --batches-per-repeat consecutive
batches of the trainer's own device iterator (``train.input.device_batches``: the step's key
derived on the device, then the batch rendered), waited for at the end (as a loop that never
fetches the batch to the host); the step on a
device-rendered batch, each step waited for. With --json only one JSON line is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


class Paths:
    """The numpy and device input paths and the train step of one config at one batch size."""

    def __init__(self, config, batch_size: int):
        import jax
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from sesyn_jax import losses
        from sesyn_jax.data import render_jax
        from sesyn_jax.data.pairs import PairBatcher
        from sesyn_jax.data.splits import load_pairs
        from sesyn_jax.model import init_variables, inner_radius
        from sesyn_jax.train.state import create_state, make_model, make_optimizer
        from sesyn_jax.train.input import device_batches
        from sesyn_jax.train.step import make_train_step

        self.config, self.batch_size = config, batch_size
        config.data.pairs_per_epoch = max(config.data.pairs_per_epoch, 16 * batch_size)
        model = make_model(config)
        self.pairs = load_pairs(
            config,
            "train",
            fresh_crops=True,
            min_length=2 * inner_radius(model, config.model.inner_frames) + 16,
        )
        self.batcher = PairBatcher(
            self.pairs,
            batch_size,
            config.data.buckets,
            seed=config.seed,
            train=True,
            normalization=config.model.normalization,
        )
        mesh = jax.make_mesh((jax.device_count(),), ("data",))
        data, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
        self.data_sharding = data
        self.render = render_jax.make_device_renderer(
            self.pairs, batch_size, config.data.buckets, config.model.normalization, data
        )
        self.device_batches = device_batches(self.render, config.seed)(0)
        tx = make_optimizer(config.train.lr, config.train.momentum)
        step = make_train_step(
            model,
            losses.make_loss_fn(dict(config.loss.weights), config.loss.options.to_dict()),
            tx,
            config.train.bn_mode,
            inner_frames=config.model.inner_frames,
        )
        self.train_step = jax.jit(
            step,
            in_shardings=(replicated, data),
            out_shardings=(replicated, replicated),
            donate_argnums=(0,),
        )
        variables = init_variables(model, jax.random.PRNGKey(config.seed))
        self.state = jax.device_put(create_state(variables, tx), replicated)
        self.epoch = 0

    def numpy_pairs_per_s(self, batches: int) -> float:
        """Pairs/s of ``batches`` batches from the trainer's iterator (a fresh epoch each time)."""
        self.epoch += 1
        it = self.batcher.epoch(self.epoch, prefetch=self.config.data.prefetch)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        seconds = time.perf_counter() - t0
        it.close()
        return batches * self.batch_size / seconds

    def device_pairs_per_s(self, batches: int) -> float:
        import jax

        t0 = time.perf_counter()
        for _ in range(batches):
            batch = next(self.device_batches)
        jax.block_until_ready(batch)
        return batches * self.batch_size / (time.perf_counter() - t0)

    def step_seconds(self, steps: int) -> float:
        import jax

        batch = next(self.device_batches)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self.state, metrics = self.train_step(self.state, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "sync_default.py"))
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default: the config's")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches-per-repeat", type=int, default=16)
    p.add_argument("--steps-per-repeat", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # as train.py
    import jax

    def say(*a):
        if not args.json:
            print(*a, flush=True)

    config = load_config(args.config)
    batches = args.batches or [config.train.batch_size]
    load_before = os.getloadavg()
    say(
        f"{os.path.relpath(args.config)}: JAX {jax.__version__} on {jax.devices()[0].platform} "
        f"({jax.device_count()} device(s)), {os.cpu_count()} CPU cores, load average "
        f"{load_before[0]:.2f} (1 min); medians of {args.repeats} interleaved repeats"
    )
    rows = []
    for b in batches:
        paths = Paths(load_config(args.config), b)
        t0 = time.perf_counter()
        paths.device_pairs_per_s(1)  # compiles
        compile_render = time.perf_counter() - t0
        t0 = time.perf_counter()
        paths.step_seconds(1)
        compile_step = time.perf_counter() - t0
        paths.numpy_pairs_per_s(2)  # warm-up
        n, d, s = [], [], []
        for _ in range(args.repeats):
            n.append(paths.numpy_pairs_per_s(args.batches_per_repeat))
            d.append(paths.device_pairs_per_s(args.batches_per_repeat))
            s.append(paths.step_seconds(args.steps_per_repeat))
        numpy_rate, device_rate, step_s = (float(np.median(x)) for x in (n, d, s))
        row = {
            "batch": b,
            "bucket": paths.render.spec.bucket,
            "numpy_pairs_per_s": round(numpy_rate, 1),
            "device_pairs_per_s": round(device_rate, 1),
            "device_over_numpy": round(device_rate / numpy_rate, 2),
            "device_over_numpy_per_repeat": [round(x / y, 2) for x, y in zip(d, n)],
            "train_step_s": round(step_s, 4),
            "train_pairs_per_s": round(b / step_s, 2),
            "numpy_render_over_step": round(b / numpy_rate / step_s, 3),
            "device_render_over_step": round(b / device_rate / step_s, 3),
            "compile_render_s": round(compile_render, 2),
            "compile_step_s": round(compile_step, 2),
        }
        rows.append(row)
        say(
            f"batch {b}: numpy {numpy_rate:.0f} pairs/s, device {device_rate:.0f} pairs/s "
            f"({device_rate / numpy_rate:.1f}x; per repeat {row['device_over_numpy_per_repeat']}); "
            f"train step {step_s * 1e3:.1f} ms ({b / step_s:.1f} pairs/s): rendering a batch "
            f"takes {row['numpy_render_over_step']:.2f} of a step in numpy, "
            f"{row['device_render_over_step']:.3f} on the device"
        )
    load_after = os.getloadavg()
    say(f"load average after: {load_after[0]:.2f} (1 min)")
    out = {
        "config": os.path.relpath(args.config, ROOT),
        "platform": jax.devices()[0].platform,
        "devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "rows": rows,
    }
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
