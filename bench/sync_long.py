"""Two 10-minute recordings (18,000 frames at 30 fps) through the sesyn-sync command: wall time
and peak memory of the process, and the offset found against the true one.

The recordings are the embedded clips' motion strung together to 10 minutes (plus 137 frames;
each pass over the clips at another speed, every other one mirrored, so that no stretch
repeats), seen by two virtual cameras with detector noise; B starts 137 frames after A.

With --fps 60 the motion is interpolated to 60 fps and both recordings are twice as many
frames (the tool then embeds each at both phases of the model's 30 fps, and at 60 fps to
refine the offset).

  python bench/sync_long.py [--frames 18000] [--method learned] [--fps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sesyn_jax.data import cameras, mocap_syn  # noqa: E402
from sesyn_jax.data.render import mirror  # noqa: E402
from sesyn_jax.data.resample import interpolate  # noqa: E402

SHIFT = 137


def long_motion(frames: int) -> np.ndarray:
    clips = [c.joints.astype(np.float64) for c in mocap_syn.load_embedded() if len(c.joints) > 300]
    parts, n, k = [], 0, 0
    stretches = (1.0, 0.85, 1.15, 0.93)
    while n < frames:
        # each pass over the clips at another speed, every other pass mirrored: no stretch of
        # the 10 minutes repeats another, so that only one offset fits
        c = clips[k % len(clips)]
        loop = k // len(clips)
        c = interpolate(c, np.arange(0, len(c) - 1, stretches[loop % len(stretches)]))
        if loop % 2:
            c = mirror(c)
        c[..., [0, 2]] -= c[:1, 11:13].mean(1)[:, [0, 2]]  # every clip starts at the origin
        parts.append(c)
        n += len(c)
        k += 1
    return np.concatenate(parts)[:frames]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=18000)
    p.add_argument("--method", default="learned")
    p.add_argument("--fps", type=int, default=30, choices=(30, 60))
    args = p.parse_args()
    k = args.fps // 30
    joints = long_motion(args.frames + SHIFT)
    if k > 1:
        joints = interpolate(joints, np.arange(0, len(joints) - 1 + 1e-9, 1 / k))
    rng = np.random.default_rng(0)
    cam1, cam2, _ = cameras.sample_camera_pair(rng, joints)
    a = cameras.detect(rng, cam1, joints)[: args.frames * k]
    b = cameras.detect(rng, cam2, joints)[SHIFT * k :]
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "a.npy"), a)
        np.save(os.path.join(d, "b.npy"), b)
        cmd = [
            sys.executable,
            "-m",
            "sesyn_jax.sync",
            os.path.join(d, "a.npy"),
            os.path.join(d, "b.npy"),
            "--fps",
            str(args.fps),
            "--method",
            args.method,
            "--json",
        ]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if run.returncode:
        print(run.stdout, run.stderr)
        return run.returncode
    out = json.loads(run.stdout)
    print(f"A: {len(a)} frames, B: {len(b)} frames at {args.fps} fps; method {args.method}")
    print(
        f"wall time: {wall:.1f} s (target <= 60 s); peak memory: {peak_mb:.0f} MB "
        f"(target <= 3072 MB)"
    )
    print(
        f"offset: {out['offset_seconds'] * 30:+.2f} frames of 30 fps (true {-SHIFT:+d}), "
        f"confidence {out['confidence']:.0%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
