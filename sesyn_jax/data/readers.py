"""Readers for people's own pose recordings, all returning COCO-17 (x, y, score) in pixels.

  * a SYN JSON view file (``syn_json``), person 0, after its category_id cut;
  * OpenPose output: a folder of per-frame ``*_keypoints.json`` files (BODY_25, BODY_25B or
    COCO-18 models), mapped to COCO-17;
  * COCO-style keypoint results: a JSON list of detections {image_id, keypoints (51 values),
    score}, one frame per distinct image_id in sorted order;
  * numpy: ``.npy`` of shape (T, 17, 3) or (P, T, 17, 3); ``.npz`` with ``poses`` (same shapes)
    and optionally ``fps`` and ``resolution``.

With several people per frame, ``read_recording`` follows the main person (the most confident
one in the first frame where anyone is seen, then frame to frame the detection closest to where
it was), or with ``all_persons=True`` returns every person tracked across frames, (P, T, 17, 3).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np

from sesyn_jax.data.syn_json import PoseFormatError, read_syn_view

# source index of each COCO-17 joint
OPENPOSE_TO_COCO = {
    "BODY_25": [0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11],
    "BODY_25B": list(range(17)),
    "COCO": [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10],
}
_OPENPOSE_SIZES = {"BODY_25": 25, "BODY_25B": 25, "COCO": 18}


@dataclasses.dataclass
class Recording:
    """poses (T, 17, 3) or, with all persons, (P, T, 17, 3); pixels, score 0 = not seen."""

    poses: np.ndarray
    fps: float | None
    resolution: tuple[int, int] | None
    path: str


def _check_finite(arr: np.ndarray, path: str, what: str) -> None:
    if not np.isfinite(arr).all():
        raise PoseFormatError(f"{path}: {what} has non-finite values")


# ----------------------------------------------------------------------------- tracking


def _center(p: np.ndarray) -> np.ndarray | None:
    seen = p[:, 2] > 0
    return p[seen, :2].mean(0) if seen.any() else None


def track_main(frames: list[np.ndarray]) -> np.ndarray:
    """frames: per frame (N_t, 17, 3) detections -> (T, 17, 3) of the main person."""
    out = np.zeros((len(frames), 17, 3), np.float32)
    last = None
    for t, dets in enumerate(frames):
        if len(dets) == 0:
            continue
        if last is None:
            k = int(np.argmax(dets[:, :, 2].sum(1)))
        else:
            dists = [
                np.linalg.norm(c - last) if (c := _center(d)) is not None else np.inf for d in dets
            ]
            k = int(np.argmin(dists))
        out[t] = dets[k]
        c = _center(dets[k])
        if c is not None:
            last = c
    return out


def track_all(frames: list[np.ndarray], max_jump: float | None = None) -> np.ndarray:
    """Every person followed across frames by greedy nearest-centre matching -> (P, T, 17, 3),
    persons ordered by how many frames they are seen in. ``max_jump`` (pixels): a detection
    farther than this from every track starts a new track (default: a quarter of the largest
    extent of all detections)."""
    tracks: list[dict] = []
    if max_jump is None:
        allxy = [d[..., :2][d[..., 2] > 0] for d in frames if len(d)]
        allxy = np.concatenate(allxy) if allxy else np.zeros((0, 2))
        max_jump = 0.25 * float(np.ptp(allxy, axis=0).max()) if len(allxy) else 100.0
    for t, dets in enumerate(frames):
        centers = [_center(d) for d in dets]
        free = set(range(len(dets)))
        cand = []
        for ti, tr in enumerate(tracks):
            for di in free:
                if centers[di] is not None:
                    cand.append((np.linalg.norm(centers[di] - tr["last"]), ti, di))
        used_t = set()
        for dist, ti, di in sorted(cand):
            if ti in used_t or di not in free or dist > max_jump:
                continue
            tracks[ti]["frames"][t] = dets[di]
            tracks[ti]["last"] = centers[di]
            used_t.add(ti)
            free.discard(di)
        for di in sorted(free):
            if centers[di] is not None:
                tracks.append({"frames": {t: dets[di]}, "last": centers[di]})
    tracks.sort(key=lambda tr: -len(tr["frames"]))
    out = np.zeros((len(tracks), len(frames), 17, 3), np.float32)
    for p, tr in enumerate(tracks):
        for t, d in tr["frames"].items():
            out[p, t] = d
    return out


# ----------------------------------------------------------------------------- formats


def read_openpose_folder(folder: str, model: str = "auto") -> tuple[list[np.ndarray], str]:
    """Per-frame detections (N_t, 17, 3) of an OpenPose output folder, sorted by file name."""
    files = sorted(glob.glob(os.path.join(folder, "*.json")))
    if not files:
        raise PoseFormatError(f"{folder}: no OpenPose *.json files")
    frames = []
    for path in files:
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise PoseFormatError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict) or "people" not in data:
            raise PoseFormatError(f"{path}: missing field 'people' (not OpenPose output)")
        dets = []
        for i, person in enumerate(data["people"]):
            kp = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
            if kp is None:
                raise PoseFormatError(f"{path}: missing field 'people[{i}].pose_keypoints_2d'")
            arr = np.asarray(kp, np.float64)
            if arr.size % 3:
                raise PoseFormatError(
                    f"{path}: field 'people[{i}].pose_keypoints_2d' has "
                    f"{arr.size} values, not a multiple of 3"
                )
            arr = arr.reshape(-1, 3)
            n = arr.shape[0]
            if model == "auto":
                model = {25: "BODY_25", 18: "COCO"}.get(n, "")
            if n != _OPENPOSE_SIZES.get(model, -1):
                raise PoseFormatError(
                    f"{path}: people[{i}] has {n} joints; expected BODY_25 "
                    f"(25), BODY_25B (25) or COCO (18)" + (f" for model {model}" if model else "")
                )
            _check_finite(arr, path, f"field 'people[{i}].pose_keypoints_2d'")
            dets.append(arr[OPENPOSE_TO_COCO[model]])
        frames.append(np.asarray(dets, np.float32).reshape(-1, 17, 3))
    return frames, model


def read_coco_results(path: str) -> list[np.ndarray]:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise PoseFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, list):
        raise PoseFormatError(f"{path}: expected a JSON list of detections")
    by_image: dict = {}
    for i, det in enumerate(data):
        for key in ("image_id", "keypoints"):
            if not isinstance(det, dict) or key not in det:
                raise PoseFormatError(f"{path}: missing field '[{i}].{key}'")
        kp = np.asarray(det["keypoints"], np.float64)
        if kp.size != 51:
            raise PoseFormatError(
                f"{path}: field '[{i}].keypoints' has {kp.size} values; "
                f"expected 51 (17 COCO joints x (x, y, score))"
            )
        _check_finite(kp, path, f"field '[{i}].keypoints'")
        by_image.setdefault(det["image_id"], []).append(kp.reshape(17, 3))
    try:
        ids = sorted(by_image)
    except TypeError as e:
        raise PoseFormatError(f"{path}: image_id values cannot be ordered ({e})") from e
    return [np.asarray(by_image[k], np.float32) for k in ids]


def read_numpy(path: str) -> tuple[np.ndarray, float | None, tuple | None]:
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                if "poses" not in z.files:
                    raise PoseFormatError(f"{path}: missing array 'poses' (has {z.files})")
                poses = z["poses"]
                fps = float(z["fps"]) if "fps" in z.files else None
                res = tuple(int(v) for v in z["resolution"]) if "resolution" in z.files else None
        else:
            poses, fps, res = np.load(path), None, None
    except (OSError, ValueError) as e:
        raise PoseFormatError(f"{path}: cannot load as numpy ({e})") from e
    if poses.ndim not in (3, 4) or poses.shape[-2:] != (17, 3):
        raise PoseFormatError(
            f"{path}: poses have shape {poses.shape}; expected (T, 17, 3) or "
            f"(P, T, 17, 3) (COCO-17 x (x, y, score))"
        )
    _check_finite(poses, path, "poses")
    return poses.astype(np.float32), fps, res


def read_recording(
    path: str,
    all_persons: bool = False,
    openpose_model: str = "auto",
    fps: float | None = None,
    resolution=None,
) -> Recording:
    """Any supported format -> Recording. ``fps`` / ``resolution`` override what the file says."""
    if not os.path.exists(path):
        raise PoseFormatError(f"{path}: no such file or folder")
    file_fps, file_res = None, None
    if os.path.isdir(path):
        frames, _ = read_openpose_folder(path, openpose_model)
        poses = track_all(frames) if all_persons else track_main(frames)
    elif path.endswith((".npy", ".npz")):
        poses, file_fps, file_res = read_numpy(path)
        if poses.ndim == 4 and not all_persons:
            poses = poses[0]
        elif poses.ndim == 3 and all_persons:
            poses = poses[None]
    elif path.endswith(".json"):
        with open(path) as f:
            head = f.read(4096).lstrip()
        if head.startswith("["):
            frames = read_coco_results(path)
            poses = track_all(frames) if all_persons else track_main(frames)
        else:
            view = read_syn_view(path)
            poses = view.poses[view.category_id :]  # the file's own crop: this view's recording
            poses = poses[None] if all_persons else poses
            file_res = view.resolution
    else:
        raise PoseFormatError(
            f"{path}: unknown pose format (expected an OpenPose folder, .json, .npy or .npz)"
        )
    if poses.shape[-3] == 0:
        raise PoseFormatError(f"{path}: the recording has no frames")
    return Recording(poses, fps or file_fps, tuple(resolution) if resolution else file_res, path)


def normalize_recording(poses: np.ndarray, resolution) -> np.ndarray:
    """Pixels -> the published normalization (x / width - 0.5, y / height - 0.5, joints with
    score 0 zeroed). Without a resolution, the extent of the detected joints stands in."""
    out = np.asarray(poses, np.float32).copy()
    seen = out[..., 2] > 0
    if resolution is None:
        xy = out[..., :2][seen]
        w = float(np.ceil(xy[:, 0].max())) if len(xy) else 1.0
        h = float(np.ceil(xy[:, 1].max())) if len(xy) else 1.0
        resolution = (max(w, 1.0), max(h, 1.0))
    out[..., 0] = out[..., 0] / resolution[0] - 0.5
    out[..., 1] = out[..., 1] / resolution[1] - 0.5
    out[~seen] = 0.0
    return out
