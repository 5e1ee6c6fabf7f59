"""Offset search on long sequences: time and memory of each rule between two embeddings of
the published size (2176 channels), u being v shifted by a known offset.

  python bench/offset_search.py [--frames 9000 50000] [--max-offset 400] [--repeats 3]

Each (frames, rule) runs in a fresh process so that its peak resident memory (ru_maxrss) is its
own; "extra MB" is that peak minus the process's peak after the embeddings were made. The
full-matrix published rule (no max_offset) is timed only up to --full-up-to frames.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIFT = 137


def one(frames: int, rule: str, max_offset: int | None, repeats: int, channels: int) -> dict:
    from sesyn_jax.offset_search import search_offset

    rng = np.random.default_rng(0)
    base = np.empty((frames + SHIFT, channels), np.float32)
    for i in range(0, len(base), 4096):
        base[i : i + 4096] = rng.standard_normal((len(base[i : i + 4096]), channels), np.float32)
    u, v = base[SHIFT:], base[:frames]  # u frame m = v frame m + SHIFT
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = search_offset(u, v, rule=rule, max_offset=max_offset)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "frames": frames,
        "rule": rule,
        "max_offset": max_offset,
        "median_s": statistics.median(times),
        "extra_mb": (peak - before) / 1024,
        "offset": result.offset,
        "exact": result.offset == SHIFT,
        "confidence": round(result.confidence, 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, nargs="+", default=[9000, 50000])
    p.add_argument("--max-offset", type=int, default=400)
    p.add_argument("--channels", type=int, default=2176)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--full-up-to", type=int, default=9000)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        frames, rule, mo = args.one.split(",")
        print(
            json.dumps(
                one(
                    int(frames),
                    rule,
                    int(mo) if mo != "none" else None,
                    args.repeats,
                    args.channels,
                )
            )
        )
        return 0
    print(
        f"{'frames':>7} {'rule':>9} {'max_offset':>10} {'median s':>9} {'extra MB':>9} "
        f"{'offset':>7} {'exact':>6} {'conf':>5}"
    )
    for frames in args.frames:
        runs = [("diagonal", args.max_offset), ("median", args.max_offset)]
        if frames <= args.full_up_to:
            runs.append(("median", None))
        for rule, mo in runs:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{frames},{rule},{mo if mo is not None else 'none'}",
                    "--repeats",
                    str(args.repeats),
                    "--channels",
                    str(args.channels),
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                print(out.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{r['frames']:>7} {r['rule']:>9} {str(r['max_offset']):>10} "
                f"{r['median_s']:>9.2f} {r['extra_mb']:>9.0f} {r['offset']:>7} "
                f"{str(r['exact']):>6} {r['confidence']:>5}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
