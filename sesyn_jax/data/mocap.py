"""3D motion capture -> COCO-17 joint positions at 30 fps (metres, y up).

Three sources (see ../shared/data/mocap/SOURCES.md):
  * BVH files (CMU conversion and Boxing_Toes): local rotations, forward kinematics here;
  * DeepMimic clips: root position and joint quaternions, skeleton of humanoid.urdf x 0.25;
  * joint-position arrays (the climbing recordings): (T, 53, 3), z up.

None of the sources has a nose, eyes or ears: those five COCO joints are SYNTHESIZED from the
head centre and the facing direction of the body (normal of the shoulder/hip plane), nose 9 cm
in front of the head centre, eyes 7 cm in front and 3.5 cm to each side, ears 7.5 cm to each
side. The other twelve joints are the source's own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from sesyn_jax.data.resample import interpolate

TARGET_FPS = 30.0


class MocapError(ValueError):
    """A motion-capture file that cannot be read."""


@dataclasses.dataclass
class Clip:
    """One motion: ``joints`` (T, 17, 3) COCO-17 positions in metres, y up, at ``fps``."""

    name: str
    joints: np.ndarray
    fps: float
    source: str
    licence: str


def upsample(clip: Clip, k: int) -> Clip:
    """The clip at ``k`` times its frame rate, the joints interpolated linearly between its
    frames (k = 1: the clip itself)."""
    if k == 1:
        return clip
    times = np.arange(0, len(clip.joints) - 1 + 1e-9, 1 / k)
    return Clip(clip.name, interpolate(clip.joints, times), clip.fps * k, clip.source, clip.licence)


# ----------------------------------------------------------------------------- geometry


def _rot(axis: str, deg: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices about a coordinate axis, angles in degrees."""
    r = np.deg2rad(deg)
    c, s = np.cos(r), np.sin(r)
    o, z = np.ones_like(r), np.zeros_like(r)
    if axis == "X":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "Y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.moveaxis(
        np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        ),
        (0, 1),
        (-2, -1),
    )


def synthesize_face(body: dict[str, np.ndarray], head_center: np.ndarray) -> np.ndarray:
    """COCO-17 (T, 17, 3) from the twelve body joints (names as in graph.COCO_JOINTS) and the
    head centre; the five face points are synthesized (module doc)."""
    from sesyn_jax.graph import COCO_JOINTS

    right = (body["right_shoulder"] - body["left_shoulder"]) + (
        body["right_hip"] - body["left_hip"]
    )
    right /= np.linalg.norm(right, axis=-1, keepdims=True) + 1e-9
    hips = 0.5 * (body["left_hip"] + body["right_hip"])
    shoulders = 0.5 * (body["left_shoulder"] + body["right_shoulder"])
    up = shoulders - hips
    up = up - np.sum(up * right, -1, keepdims=True) * right
    up /= np.linalg.norm(up, axis=-1, keepdims=True) + 1e-9
    forward = np.cross(up, right)  # y up, right-handed: facing = up x right
    face = {
        "nose": head_center + 0.09 * forward - 0.02 * up,
        "left_eye": head_center + 0.07 * forward + 0.02 * up - 0.035 * right,
        "right_eye": head_center + 0.07 * forward + 0.02 * up + 0.035 * right,
        "left_ear": head_center - 0.075 * right,
        "right_ear": head_center + 0.075 * right,
    }
    out = np.stack([face[n] if n in face else body[n] for n in COCO_JOINTS], axis=1)
    return out.astype(np.float32)


def resample(x: np.ndarray, fps_in: float, fps_out: float = TARGET_FPS) -> np.ndarray:
    """Linear interpolation along axis 0 from fps_in to fps_out."""
    if abs(fps_in - fps_out) < 1e-9:
        return x
    t_in = np.arange(len(x)) / fps_in
    t_out = np.arange(0.0, t_in[-1] + 1e-9, 1.0 / fps_out)
    flat = x.reshape(len(x), -1)
    res = np.stack([np.interp(t_out, t_in, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return res.reshape((len(t_out),) + x.shape[1:]).astype(x.dtype)


# ----------------------------------------------------------------------------- BVH


@dataclasses.dataclass
class BVH:
    names: list[str]  # joints, then end sites named '<parent>_end'
    parents: list[int]
    offsets: np.ndarray  # (J, 3)
    channels: list[list[str]]  # per joint
    motion: np.ndarray  # (T, n_channels)
    frame_time: float


def read_bvh(path: str) -> BVH:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise MocapError(f"{path}: cannot read ({e})") from e
    head, sep, motion = text.partition("MOTION")
    if not sep:
        raise MocapError(f"{path}: no MOTION section; not a BVH file")
    tokens = head.split()
    names, parents, offsets, channels = [], [], [], []
    stack: list[int] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            channels.append([])
            i += 2
        elif tok == "End":
            names.append(names[stack[-1]] + "_end")
            parents.append(stack[-1])
            channels.append([])
            i += 2
        elif tok == "{":
            stack.append(len(names) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            offsets.append([float(v) for v in tokens[i + 1 : i + 4]])
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            channels[-1] = tokens[i + 2 : i + 2 + n]
            i += 2 + n
        else:
            i += 1
    m = re.search(r"Frames:\s*(\d+)\s*Frame Time:\s*([0-9.eE+-]+)", motion)
    if m is None or len(offsets) != len(names):
        raise MocapError(
            f"{path}: malformed BVH header (joints {len(names)}, offsets {len(offsets)})"
        )
    n_frames, frame_time = int(m.group(1)), float(m.group(2))
    values = np.array(motion[m.end() :].split(), dtype=np.float64)
    n_ch = sum(len(c) for c in channels)
    if n_ch == 0 or values.size < n_frames * n_ch:
        raise MocapError(f"{path}: MOTION has {values.size} values, expected {n_frames} x {n_ch}")
    return BVH(
        names,
        parents,
        np.array(offsets),
        channels,
        values[: n_frames * n_ch].reshape(n_frames, n_ch),
        frame_time,
    )


def bvh_positions(bvh: BVH) -> np.ndarray:
    """Forward kinematics: (T, J, 3) world positions of every joint and end site."""
    t = bvh.motion.shape[0]
    n = len(bvh.names)
    rot = np.zeros((n, t, 3, 3))
    pos = np.zeros((n, t, 3))
    col = 0
    for j in range(n):
        local_r = np.broadcast_to(np.eye(3), (t, 3, 3)).copy()
        local_t = np.broadcast_to(bvh.offsets[j], (t, 3)).copy()
        for ch in bvh.channels[j]:
            v = bvh.motion[:, col]
            col += 1
            if ch.endswith("position"):
                local_t[:, "XYZ".index(ch[0])] += v
            else:
                local_r = local_r @ _rot(ch[0], v)  # channel order = intrinsic rotation order
        p = bvh.parents[j]
        if p < 0:
            rot[j], pos[j] = local_r, local_t
        else:
            rot[j] = rot[p] @ local_r
            pos[j] = pos[p] + np.einsum("tij,tj->ti", rot[p], local_t)
    return pos.transpose(1, 0, 2)


# BVH joint names -> COCO body joints, per skeleton family; head centre from (head, head end).
_BVH_MAPS = {
    "cmu": dict(
        left_shoulder="LeftArm",
        right_shoulder="RightArm",
        left_elbow="LeftForeArm",
        right_elbow="RightForeArm",
        left_wrist="LeftHand",
        right_wrist="RightHand",
        left_hip="LeftUpLeg",
        right_hip="RightUpLeg",
        left_knee="LeftLeg",
        right_knee="RightLeg",
        left_ankle="LeftFoot",
        right_ankle="RightFoot",
    ),
    "boxing": dict(
        left_shoulder="LeftShoulder",
        right_shoulder="RightShoulder",
        left_elbow="LeftElbow",
        right_elbow="RightElbow",
        left_wrist="LeftWrist",
        right_wrist="RightWrist",
        left_hip="LeftHip",
        right_hip="RightHip",
        left_knee="LeftKnee",
        right_knee="RightKnee",
        left_ankle="LeftAnkle",
        right_ankle="RightAnkle",
    ),
}
_TOES = {"cmu": ("LeftToeBase", "RightToeBase"), "boxing": ("LeftToes", "RightToes")}


def load_bvh_clip(
    path: str, scale: float | None = None, out_fps: float = TARGET_FPS
) -> tuple[Clip, np.ndarray]:
    """A BVH file -> (Clip at ``out_fps``, 30 by default; toes (T, 2, 3) left/right for
    checks)."""
    bvh = read_bvh(path)
    family = "cmu" if "LeftUpLeg" in bvh.names else "boxing" if "LeftHip" in bvh.names else None
    if family is None:
        raise MocapError(f"{path}: unknown BVH skeleton (joints {bvh.names[:8]} ...)")
    if scale is None:
        scale = 0.056444 if family == "cmu" else 0.01  # CMU inch-like units; Boxing in cm
    pos = bvh_positions(bvh) * scale
    idx = {n: i for i, n in enumerate(bvh.names)}
    body = {k: pos[:, idx[v]] for k, v in _BVH_MAPS[family].items()}
    head_center = 0.5 * (pos[:, idx["Head"]] + pos[:, idx["Head_end"]])
    joints = synthesize_face(body, head_center)
    toes = np.stack([pos[:, idx[n]] for n in _TOES[family]], axis=1).astype(np.float32)
    fps = 1.0 / bvh.frame_time
    name = os.path.splitext(os.path.basename(path))[0]
    licence = (
        "CMU Graphics Lab Motion Capture Database (BVH conversion): free for research and "
        "commercial use; packaged in Debian assimp-testmodels (BSD-3-clause)"
    )
    return (
        Clip(f"cmu_{name}", resample(joints, fps, out_fps), out_fps, path, licence),
        resample(toes, fps, out_fps),
    )


# ----------------------------------------------------------------------------- DeepMimic

# Frame layout: [dt, root xyz, root quat, chest quat, neck quat, r_hip quat, r_knee angle,
# r_ankle quat, r_shoulder quat, r_elbow angle, l_hip quat, l_knee angle, l_ankle quat,
# l_shoulder quat, l_elbow angle]; one entry per joint in this order.
_DM_JOINTS = [
    ("root", "quat"),
    ("chest", "quat"),
    ("neck", "quat"),
    ("right_hip", "quat"),
    ("right_knee", "angle"),
    ("right_ankle", "quat"),
    ("right_shoulder", "quat"),
    ("right_elbow", "angle"),
    ("left_hip", "quat"),
    ("left_knee", "angle"),
    ("left_ankle", "quat"),
    ("left_shoulder", "quat"),
    ("left_elbow", "angle"),
]


def read_urdf_skeleton(path: str) -> dict[str, tuple[str | None, np.ndarray]]:
    """joint name -> (parent link, origin xyz) of humanoid.urdf."""
    with open(path, "rb") as f:
        text = f.read().decode("latin1")
    out = {}
    for m in re.finditer(r'<joint name="(\w+)".*?</joint>', text, re.S):
        blk = m.group(0)
        parent = re.search(r'parent link="(\w+)"', blk)
        origin = re.search(r'<origin[^>]*xyz\s*=\s*"([^"]+)"', blk)
        xyz = np.array([float(v) for v in origin.group(1).split()]) if origin else np.zeros(3)
        out[m.group(1)] = (parent.group(1) if parent else None, xyz)
    if "root" not in out or "left_wrist" not in out:
        raise MocapError(f"{path}: not the DeepMimic humanoid (joints {sorted(out)})")
    return out


def load_deepmimic_clip(path: str, urdf_path: str, scale: float = 0.25) -> tuple[Clip, np.ndarray]:
    """A DeepMimic motion file -> (Clip at 30 fps, toes (T, 2, 3))."""
    try:
        with open(path) as f:
            frames = np.array(json.load(f)["Frames"], np.float64)
    except (OSError, ValueError, KeyError) as e:
        raise MocapError(f"{path}: not a DeepMimic motion file ({e})") from e
    if frames.ndim != 2 or frames.shape[1] != 44:
        raise MocapError(f"{path}: frames must have 44 values, got shape {frames.shape}")
    skel = read_urdf_skeleton(urdf_path)
    rot, pos = {}, {}
    col = 4
    for name, kind in _DM_JOINTS:
        if kind == "quat":
            local = quat_to_matrix(frames[:, col : col + 4])
            col += 4
        else:  # revolute about z
            local = _rot("Z", np.rad2deg(frames[:, col]))
            col += 1
        parent, origin = skel[name]
        if name == "root":
            rot[name], pos[name] = local, frames[:, 1:4].copy()
        else:
            rot[name] = rot[parent] @ local
            pos[name] = pos[parent] + np.einsum("tij,j->ti", rot[parent], origin * scale)
    for wrist, elbow in (("right_wrist", "right_elbow"), ("left_wrist", "left_elbow")):
        pos[wrist] = pos[elbow] + np.einsum("tij,j->ti", rot[elbow], skel[wrist][1] * scale)
    body = {
        k: pos[k]
        for k in (
            "left_shoulder",
            "right_shoulder",
            "left_elbow",
            "right_elbow",
            "left_wrist",
            "right_wrist",
            "left_hip",
            "right_hip",
            "left_knee",
            "right_knee",
            "left_ankle",
            "right_ankle",
        )
    }
    # The neck link's sphere (0.7 above the neck joint, x 0.25) is the head.
    head_center = pos["neck"] + np.einsum("tij,j->ti", rot["neck"], np.array([0, 0.7, 0]) * scale)
    joints = synthesize_face(body, head_center)
    # The foot box extends along +x of the ankle frame: toes 0.36 ahead.
    toes = np.stack(
        [
            pos[a] + np.einsum("tij,j->ti", rot[a], np.array([0.36, -0.09, 0]) * scale)
            for a in ("left_ankle", "right_ankle")
        ],
        axis=1,
    ).astype(np.float32)
    dt = float(np.median(frames[:, 0]))
    name = os.path.splitext(os.path.basename(path))[0].replace("humanoid3d_", "")
    licence = "DeepMimic reference motion, from PyPI pybullet 3.2.7 (zlib licence)"
    return Clip(
        f"deepmimic_{name}", resample(joints, 1.0 / dt), TARGET_FPS, path, licence
    ), resample(toes, 1.0 / dt)


# ----------------------------------------------------------------------------- joint positions

_CLIMB = dict(
    left_shoulder=6,
    right_shoulder=25,
    left_elbow=7,
    right_elbow=26,
    left_wrist=8,
    right_wrist=27,
    left_hip=43,
    right_hip=47,
    left_knee=44,
    right_knee=48,
    left_ankle=45,
    right_ankle=49,
)


def load_position_clip(
    path: str, fps: float = 120.0, out_fps: float = TARGET_FPS
) -> tuple[Clip, np.ndarray]:
    """A (T, 53, 3) joint-position array (metres, z up) at ``fps`` -> (Clip at ``out_fps``, 30
    by default; toes)."""
    try:
        arr = np.load(path)
    except (OSError, ValueError) as e:
        raise MocapError(f"{path}: cannot load as a numpy array ({e})") from e
    if arr.ndim != 3 or arr.shape[1:] != (53, 3):
        raise MocapError(f"{path}: expected joint positions of shape (T, 53, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise MocapError(f"{path}: contains non-finite values")
    y_up = np.stack([arr[..., 0], arr[..., 2], -arr[..., 1]], axis=-1).astype(np.float64)
    body = {k: y_up[:, i] for k, i in _CLIMB.items()}
    # Head joint (4) is the head's base; the head centre sits about 8 cm above it.
    head_center = y_up[:, 4] + 0.5 * (y_up[:, 4] - y_up[:, 3])
    joints = synthesize_face(body, head_center)
    toes = y_up[:, [46, 50]].astype(np.float32)
    name = os.path.splitext(os.path.basename(path))[0].replace("_joint_positions", "")
    licence = "holosoma-retargeting 0.1.0 (PyPI), Apache-2.0"
    clip = Clip(name, resample(joints, fps, out_fps), out_fps, path, licence)
    return clip, resample(toes, fps, out_fps)


def load_all_clips(mocap_dir: str) -> list[Clip]:
    """Every clip of the three sources, sorted by name."""
    clips = []
    bvh_dir = os.path.join(mocap_dir, "cmu_bvh")
    dm_dir = os.path.join(mocap_dir, "deepmimic")
    climb_dir = os.path.join(mocap_dir, "climb")
    for d in (bvh_dir, dm_dir, climb_dir):
        if not os.path.isdir(d):
            raise MocapError(
                f"{mocap_dir}: missing folder {os.path.basename(d)}/ (expected the "
                f"layout of ../shared/data/mocap, see its SOURCES.md)"
            )
    for f in sorted(os.listdir(bvh_dir)):
        if f.endswith(".bvh"):
            clips.append(load_bvh_clip(os.path.join(bvh_dir, f))[0])
    urdf = os.path.join(dm_dir, "humanoid.urdf")
    for f in sorted(os.listdir(dm_dir)):
        if f.startswith("humanoid3d_") and f.endswith(".txt"):
            clips.append(load_deepmimic_clip(os.path.join(dm_dir, f), urdf)[0])
    for f in sorted(os.listdir(climb_dir)):
        if f.endswith(".npy"):
            clips.append(load_position_clip(os.path.join(climb_dir, f))[0])
    return sorted(clips, key=lambda c: c.name)
