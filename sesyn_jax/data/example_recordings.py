"""Two OpenPose output folders of one motion, as two unsynchronized cameras would record it: a
held-out motion-capture clip (never seen in training) seen by a landscape camera at 30 fps
written in the BODY_25 layout, and by a portrait camera at 60 fps written in the BODY_25B
layout, each started and stopped at its own time, with detector noise, missing joints and
frames without a person.

  python -m sesyn_jax.data.example_recordings --out examples
  sesyn-sync examples/cam_30fps examples/cam_60fps --fps 30,60

The true offset is written to ``OUT/truth.json``: the moment at time t of the 30 fps recording
is at time t + offset_seconds of the 60 fps one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from sesyn_jax.data import cameras, mocap_syn
from sesyn_jax.data.readers import OPENPOSE_TO_COCO
from sesyn_jax.data.resample import interpolate
from sesyn_jax.io import atomic_write


def openpose_people(pose: np.ndarray, layout: str) -> list:
    """One (17, 3) pixel pose -> OpenPose's ``people`` list (25 keypoints; empty when no joint
    is seen)."""
    if not (pose[:, 2] > 0).any():
        return []
    kp = np.zeros((25, 3))
    if layout == "BODY_25":
        kp[OPENPOSE_TO_COCO["BODY_25"]] = pose  # the reader's table: COCO joint k <- keypoint
        for mid, (a, b) in ((1, (5, 6)), (8, (11, 12))):  # neck, mid-hip
            if (pose[[a, b], 2] > 0).all():
                kp[mid] = [*(pose[a, :2] + pose[b, :2]) / 2, min(pose[a, 2], pose[b, 2])]
    else:
        kp[OPENPOSE_TO_COCO["BODY_25B"]] = pose
    return [{"person_id": [-1], "pose_keypoints_2d": np.round(kp, 3).ravel().tolist()}]


def write_openpose_folder(folder: str, poses: np.ndarray, layout: str, prefix: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for t, pose in enumerate(poses):
        path = os.path.join(folder, f"{prefix}_{t:012d}_keypoints.json")
        data = {"version": 1.3, "people": openpose_people(pose, layout)}
        atomic_write(path, lambda f, d=data: json.dump(d, f))


def make_examples(out: str, seed: int = 0) -> dict:
    clip = next(c for c in mocap_syn.load_embedded() if c.name == "cmu_01_03")
    rng = np.random.default_rng(seed)
    joints = clip.joints[100:700].astype(np.float64)  # 20 s at 30 fps
    fine = interpolate(joints, np.arange(0, len(joints) - 1 + 1e-9, 0.5))  # 60 fps
    corruption = cameras.Corruption(2.0, 4.0, 0.03, 0.02)
    cam_a, _, _ = cameras.sample_camera_pair(rng, joints, 1920, 1080)
    _, cam_b, _ = cameras.sample_camera_pair(rng, joints, 1080, 1920, focal_range=(900, 1300))
    a = cameras.detect(rng, cam_a, joints, corruption)[45:480]  # 30 fps: from 1.5 s to 16 s
    b = cameras.detect(rng, cam_b, fine, corruption)[200:1100]  # 60 fps: from 3.33 s to 18.33 s
    write_openpose_folder(os.path.join(out, "cam_30fps"), a, "BODY_25", "cam_30fps")
    write_openpose_folder(os.path.join(out, "cam_60fps"), b, "BODY_25B", "cam_60fps")
    truth = {
        "offset_seconds": 45 / 30 - 200 / 60,
        "note": "the moment at time t of cam_30fps is at time t + offset_seconds of cam_60fps",
        "clip": clip.name,
        "cam_30fps": {"fps": 30, "layout": "BODY_25", "resolution": [1920, 1080]},
        "cam_60fps": {"fps": 60, "layout": "BODY_25B", "resolution": [1080, 1920]},
    }
    atomic_write(os.path.join(out, "truth.json"), lambda f: json.dump(truth, f, indent=1))
    return truth


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="folder for cam_30fps/, cam_60fps/, truth.json")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    truth = make_examples(args.out, args.seed)
    print(
        f"wrote {args.out}/cam_30fps and {args.out}/cam_60fps; true offset "
        f"{truth['offset_seconds']:+.4f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
