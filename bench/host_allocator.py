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
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train_throughput import jax_step, timed_with_faults  # noqa: E402  (bench/ is not a package)

from sesyn_jax import hostmem  # noqa: E402

# "default": glibc's documented defaults for the two settings hostmem tunes in the heap
ARMS = {
    "default": ((hostmem.M_MMAP_MAX, 65536), (hostmem.M_TRIM_THRESHOLD, 128 * 1024)),
    "tuned": hostmem.HEAP_SETTINGS,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--bn-mode", default="per_view", choices=["joint", "per_view"])
    p.add_argument("--repeats", type=int, default=12)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not hostmem.glibc_linux():
        print("the host allocator settings apply to glibc on Linux only", file=sys.stderr)
        return 2
    hostmem.mallopt(hostmem.ARENA_SETTINGS)  # before JAX starts its threads

    run, _ = jax_step(args.batch, args.frames, "float32", args.bn_mode)
    for arm in ("tuned", "default", "tuned", "default"):
        hostmem.mallopt(ARMS[arm])
        run()
    secs = {a: [] for a in ARMS}
    faults = {a: [] for a in ARMS}
    for i in range(args.repeats):
        for arm in ("default", "tuned") if i % 2 else ("tuned", "default"):
            hostmem.mallopt(ARMS[arm])
            run()
            s, f = timed_with_faults(run)
            secs[arm].append(s)
            faults[arm].append(f)
    med = {a: float(np.median(secs[a])) for a in ARMS}
    row = {
        "frames": args.frames,
        "batch": args.batch,
        "bn_mode": args.bn_mode,
        "default_step_s": round(med["default"], 4),
        "tuned_step_s": round(med["tuned"], 4),
        "default_page_faults": int(np.median(faults["default"])),
        "tuned_page_faults": int(np.median(faults["tuned"])),
        "speedup": round(med["default"] / med["tuned"], 3),
    }
    print(
        f"{args.frames} frames, batch {args.batch}, {args.bn_mode}: default {med['default']:.3f} s "
        f"({row['default_page_faults']} page faults), tuned {med['tuned']:.3f} s "
        f"({row['tuned_page_faults']} page faults) per step; tuned is {row['speedup']:.2f}x, "
        f"medians of {args.repeats}"
    )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
