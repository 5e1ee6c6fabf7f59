"""The train step with and without the host allocator settings of sesyn_jax/hostmem.py, in one
process, alternating step by step, so that the machine's drift between runs cancels.

  python bench/host_allocator.py [--frames 120] [--batch 1] [--bn-mode per_view] [--repeats 12]

glibc's arena setting can only be chosen before the threads start, so both arms run with one
arena; they differ in what decides the cost: large blocks from ``mmap`` (glibc's default, one
page fault per 4 KiB page of XLA's per-step buffer every step) or kept in the heap (tuned).
Each timed step follows an untimed one in the same setting. Prints the medians, the page faults
per step and the ratio; with --json a JSON object on the last line.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train_throughput import jax_step  # noqa: E402  (bench/ is not a package)

# glibc <malloc.h>; the defaults are glibc's documented ones
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
ARMS = {"default": ((M_MMAP_MAX, 65536), (M_TRIM_THRESHOLD, 128 * 1024)),
        "tuned": ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--bn-mode", default="per_view", choices=["joint", "per_view"])
    p.add_argument("--repeats", type=int, default=12)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        print("the host allocator settings apply to glibc on Linux only", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None)
    libc.mallopt(M_ARENA_MAX, 1)  # before JAX starts its threads

    def use(arm):
        for param, value in ARMS[arm]:
            libc.mallopt(param, value)

    run, _ = jax_step(args.batch, args.frames, "float32", args.bn_mode)
    for arm in ("tuned", "default", "tuned", "default"):
        use(arm)
        run()
    secs = {a: [] for a in ARMS}
    faults = {a: [] for a in ARMS}
    for i in range(args.repeats):
        for arm in (("default", "tuned") if i % 2 else ("tuned", "default")):
            use(arm)
            run()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            run()
            secs[arm].append(time.perf_counter() - t0)
            faults[arm].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    med = {a: float(np.median(secs[a])) for a in ARMS}
    row = {"frames": args.frames, "batch": args.batch, "bn_mode": args.bn_mode,
           "default_step_s": round(med["default"], 4), "tuned_step_s": round(med["tuned"], 4),
           "default_page_faults": int(np.median(faults["default"])),
           "tuned_page_faults": int(np.median(faults["tuned"])),
           "speedup": round(med["default"] / med["tuned"], 3)}
    print(f"{args.frames} frames, batch {args.batch}, {args.bn_mode}: default {med['default']:.3f} s "
          f"({row['default_page_faults']} page faults), tuned {med['tuned']:.3f} s "
          f"({row['tuned_page_faults']} page faults) per step; tuned is {row['speedup']:.2f}x, "
          f"medians of {args.repeats}")
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
