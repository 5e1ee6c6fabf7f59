"""Motion capture: forward kinematics and the COCO-17 mapping, and the MOCAP-SYN builder."""

import json
import os

import numpy as np
import pytest

from sesyn_jax.data import build_mocap_syn, mocap, mocap_syn, syn_json
from sesyn_jax.graph import COCO_JOINTS

MOCAP = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mocap")
needs_shared = pytest.mark.skipif(not os.path.isdir(MOCAP), reason="../shared/data/mocap absent")
J = {n: i for i, n in enumerate(COCO_JOINTS)}
BONES = [
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_hip", "right_hip"),
    ("left_hip", "left_knee"),
]


def test_bvh_forward_kinematics_by_hand(tmp_path):
    # root at (1, 2, 3) rotated 90 deg about Y; child 2 units along +x, rotated 90 deg about Z;
    # grandchild end site 1 unit along +x.
    text = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Arm
  {
    OFFSET 2 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 1 0 0
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.1
1 2 3 0 90 0 90 0 0
"""
    path = tmp_path / "t.bvh"
    path.write_text(text)
    pos = mocap.bvh_positions(mocap.read_bvh(str(path)))[0]
    np.testing.assert_allclose(pos[0], [1, 2, 3], atol=1e-12)
    # Ry(90) maps +x to -z: the arm joint is at (1, 2, 1)
    np.testing.assert_allclose(pos[1], [1, 2, 1], atol=1e-12)
    # Ry(90) Rz(90) maps +x to Ry(90) (+y) = +y: end site 1 above the arm joint
    np.testing.assert_allclose(pos[2], [1, 3, 1], atol=1e-12)


def check_anatomy(joints, toes, name):
    for a, b in BONES:
        length = np.linalg.norm(joints[:, J[a]] - joints[:, J[b]], axis=-1)
        # constant bone lengths (within what 30 fps linear resampling of a rotation changes)
        assert length.std() / length.mean() < 0.02, (name, a, b)
    head = joints[:, J["nose"], 1]
    feet = joints[:, [J["left_ankle"], J["right_ankle"]], 1].max(1)
    assert np.mean(head > feet) > 0.8, name
    # left/right not swapped: the facing direction from the hips (up x right) agrees with the
    # direction the toes point, an anatomical fact a mirrored skeleton would violate.
    right = joints[:, J["right_hip"]] - joints[:, J["left_hip"]]
    facing = np.cross(np.array([0.0, 1.0, 0.0]), right)
    toe_dir = (toes - joints[:, [J["left_ankle"], J["right_ankle"]]]).mean(1)
    agree = np.mean(np.sum(facing[:, [0, 2]] * toe_dir[:, [0, 2]], -1) > 0)
    assert agree > 0.8, (name, agree)


@needs_shared
@pytest.mark.parametrize(
    "loader,args",
    [
        ("bvh", "cmu_bvh/01_01.bvh"),
        ("bvh", "cmu_bvh/Boxing_Toes.bvh"),
        ("dm", "deepmimic/humanoid3d_walk.txt"),
        ("dm", "deepmimic/humanoid3d_punch.txt"),
        ("pos", "climb/mocap_climb_seq_1_joint_positions_f0-2422.npy"),
    ],
)
def test_sources_anatomy(loader, args):
    path = os.path.join(MOCAP, args)
    if loader == "bvh":
        clip, toes = mocap.load_bvh_clip(path)
    elif loader == "dm":
        clip, toes = mocap.load_deepmimic_clip(
            path, os.path.join(MOCAP, "deepmimic", "humanoid.urdf")
        )
    else:
        clip, toes = mocap.load_position_clip(path)
    assert clip.fps == 30.0 and clip.joints.shape[1:] == (17, 3)
    check_anatomy(clip.joints, toes, clip.name)
    # a person-sized skeleton in metres
    height = np.ptp(clip.joints[..., 1], axis=1).mean()
    assert 0.8 < height < 2.2


def test_embedded_clips_and_resampling():
    clips = mocap_syn.load_embedded()
    assert len(clips) == 23 and all(c.fps == 30.0 for c in clips)
    by_name = {c.name: c for c in clips}
    assert "cmu_01_01" in by_name and "deepmimic_walk" in by_name
    # CMU 01_01: 2752 frames at 120 Hz -> 688 at 30 fps
    assert len(by_name["cmu_01_01"].joints) == 688
    x = np.arange(12, dtype=np.float64)[:, None]
    np.testing.assert_allclose(mocap.resample(x, 120.0, 30.0)[:, 0], [0, 4, 8])


def test_builder_deterministic_split_by_clip_and_round_trip(tmp_path):
    clips = [
        c
        for c in mocap_syn.load_embedded()
        if c.name in ("cmu_01_01", "cmu_01_03", "mocap_climb_seq_4_f0-2303")
    ]
    cfg = mocap_syn.BuildConfig(frames=120, train_stride=120, test_stride=240, seed=4)
    a, summary = mocap_syn.build_pairs(clips, cfg)
    b, _ = mocap_syn.build_pairs(clips, cfg)
    assert [r.name for r in a] == [r.name for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.view1, rb.view1)
        assert ra.offset == rb.offset
    train_clips = {r.clip for r in a if r.split == "train"}
    test_clips = {r.clip for r in a if r.split == "test"}
    assert train_clips == {"cmu_01_01"} and test_clips == {"cmu_01_03", "mocap_climb_seq_4_f0-2303"}
    assert summary["train"]["pairs"] == len([r for r in a if r.split == "train"])
    offsets = [r.offset for r in a]
    assert min(offsets) >= -30 and max(offsets) <= 30 and len(set(offsets)) > 3
    for r in a:  # cameras at least 30 degrees apart
        assert r.meta["cameras"]["separation_deg"] >= 30
        assert (r.view1[..., 2] > 0).mean() > 0.9

    out = tmp_path / "ds"
    build_mocap_syn.write_dataset(a, summary, cfg, str(out), "embedded", clips)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 4 and len(manifest["pairs"]) == len(a)
    read = syn_json.load_split(str(out / "test"), cache=False)
    mem = [r.to_pair(cfg.width, cfg.height) for r in a if r.split == "test"]
    assert [p.offset for p in read] == [p.offset for p in mem]
    for p, q in zip(read, mem):
        np.testing.assert_allclose(p.view1, q.view1, atol=1e-6)
        np.testing.assert_allclose(p.view2, q.view2, atol=1e-6)
