"""Readers for people's own pose recordings, all returning COCO-17 (x, y, score) in pixels.

  * a SYN JSON view file (``syn_json``), person 0, after its category_id cut;
  * OpenPose output: a folder of per-frame ``*_keypoints.json`` files (BODY_25, BODY_25B or
    COCO-18 models), mapped to COCO-17;
  * COCO-style keypoint results: a JSON list of detections {image_id, keypoints (51 values),
    score}; the image id is the frame number (a string id: the last number in it, so
    ``frame_10.jpg`` is frame 10), and a frame number no detection names is a frame without a
    person;
  * numpy: ``.npy`` of shape (T, 17, 3) or (P, T, 17, 3); ``.npz`` with ``poses`` (same shapes)
    and optionally ``fps`` and ``resolution``.

With several people per frame, ``read_recording`` follows the main person, or with
``all_persons=True`` returns every person tracked across frames, (P, T, 17, 3)
(``data.tracking``: continuity by box overlap and distance, with a gap tolerance).
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
import zlib

import numpy as np

from sesyn_jax.data.syn_json import (
    MAX_SCORE,
    PoseFormatError,
    preview,
    check_coordinates,
    check_values,
    is_int,
    keypoint_array,
    load_json,
    positive_number,
    read_syn_view,
)
from sesyn_jax.data.tracking import Followed, track_all, track_main
from sesyn_jax.graph import COCO_JOINTS

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
    keypoint_model: str | None = None  # OpenPose folders: the model the keypoints were read as
    followed: Followed | None = None  # the main person, when several were tracked
    notes: list[str] = dataclasses.field(default_factory=list)  # what the reader assumed


def _where(poses: np.ndarray, bad: np.ndarray) -> str:
    """'frame T, joint J (name)' of the first True of ``bad`` (poses' shape without the last
    axis), with the person for (P, T, 17, 3)."""
    idx = np.argwhere(bad)[0]
    person = f"person {idx[0]}, " if poses.ndim == 4 else ""
    return f"{person}frame {idx[-2]}, joint {idx[-1]} ({COCO_JOINTS[idx[-1]]})"


def nan_as_missing(poses: np.ndarray, path: str) -> tuple[np.ndarray, list[str]]:
    """(..., 17, 3) poses with NaN coordinates or scores read as joints not seen (all three
    values 0), and a note saying how many and where the first is; infinite values are refused
    (PoseFormatError naming the first frame and joint)."""
    inf = np.isinf(poses).any(-1)
    if inf.any():
        raise PoseFormatError(
            f"{path}: field 'poses' holds an infinite value at {_where(poses, inf)}; a joint "
            f"that was not seen is NaN or has score 0"
        )
    nan = np.isnan(poses).any(-1)
    if not nan.any():
        return poses, []
    n = int(nan.sum())
    note = (
        f"{path}: {n} joint{'s' * (n != 1)} with NaN values (first at {_where(poses, nan)}) "
        f"read as not seen (score 0)"
    )
    return np.where(nan[..., None], 0, poses), [note]


# ----------------------------------------------------------------------------- formats


def frame_files(folder: str) -> list[tuple[int, str]]:
    """(frame number, path) of an OpenPose folder's per-frame ``*.json`` files. The number is
    the last run of digits in the file name (``vid_2`` before ``vid_10``); without digits in
    any name, the files are numbered in name order. Sub-folders are skipped."""
    try:
        listing = os.listdir(folder)
    except OSError as e:
        raise PoseFormatError(f"{folder}: cannot read the folder ({e.strerror})") from None
    names = sorted(
        f for f in listing if f.endswith(".json") and os.path.isfile(os.path.join(folder, f))
    )
    if not names:
        raise PoseFormatError(f"{folder}: no OpenPose *.json files")
    numbers = [_NUMBER.findall(n[: -len(".json")]) for n in names]
    if not all(numbers):
        if any(numbers):
            bad = names[[bool(x) for x in numbers].index(False)]
            raise PoseFormatError(
                f"{folder}: file {bad} has no frame number while others do; cannot order frames"
            )
        return [(i, os.path.join(folder, n)) for i, n in enumerate(names)]
    out = sorted((int(x[-1]), os.path.join(folder, n)) for x, n in zip(numbers, names))
    for (k1, p1), (k2, p2) in zip(out, out[1:]):
        if k1 == k2:
            raise PoseFormatError(
                f"{folder}: files {os.path.basename(p1)} and {os.path.basename(p2)} both hold "
                f"frame {k1}"
            )
    if out[-1][0] + 1 > 10 * len(out) + 10000:
        first, last = out[0][0], out[-1][0]
        if last - first + 1 <= 10 * len(out) + 10000:  # dense, but far from frame 0
            raise PoseFormatError(
                f"{folder}: the files hold frames {first} to {last}; frame numbers are read as "
                f"the video's frame indices, and {first} frames without a person before them "
                f"are not a plausible recording. If the video was processed from frame "
                f"{first} (OpenPose's --frame_first), renumber the files from 0"
            )
        raise PoseFormatError(
            f"{folder}: frame numbers run up to {last} for {len(out)} files; the numbers "
            f"in the file names are not frame indices"
        )
    return out


_NUMBER = re.compile(r"\d+")


def _read_frame(path: str) -> list:
    """The ``people`` list of one OpenPose frame file ([] for ``"people": null``)."""
    data = load_json(path)
    if not isinstance(data, dict) or "people" not in data:
        raise PoseFormatError(f"{path}: missing field 'people' (not OpenPose output)")
    people = data["people"]
    if people is None:
        return []
    if not isinstance(people, list):
        raise PoseFormatError(f"{path}: field 'people' must be a list, got {type(people).__name__}")
    return people


def read_openpose_folder(
    folder: str, model: str = "auto", files: list[tuple[int, str]] | None = None
) -> tuple[list[np.ndarray], str | None]:
    """Per-frame detections (N_t, 17, 3) of an OpenPose output folder, frame k at index k
    (frame numbers missing from the folder are frames with no person), and the keypoint model
    used. A person whose ``pose_keypoints_2d`` is empty is no detection. ``model='auto'``:
    18 keypoints are COCO; 25 are BODY_25 or BODY_25B (Pose2Sim's), told apart by the data
    (``body25_variant``); None when no frame has a detection (there is nothing to tell).
    ``files``: the folder's ``frame_files`` when the caller has them already."""
    if model not in ("auto",) + tuple(OPENPOSE_TO_COCO):
        raise ValueError(f"OpenPose model must be 'auto' or one of {sorted(OPENPOSE_TO_COCO)}")
    files = files or frame_files(folder)
    raw: list[list[np.ndarray]] = [[] for _ in range(files[-1][0] + 1)]
    sizes = set()
    for k, path in files:
        for i, person in enumerate(_read_frame(path)):
            field = f"people[{i}].pose_keypoints_2d"
            if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
                raise PoseFormatError(f"{path}: missing field '{field}'")
            kp = person["pose_keypoints_2d"]
            if isinstance(kp, list) and not kp:
                continue  # OpenPose writes an empty list for a person without body keypoints
            arr = keypoint_array(kp, path, field, max_score=MAX_SCORE)
            if len(arr) not in (18, 25):
                raise PoseFormatError(
                    f"{path}: field '{field}' has {len(arr)} keypoints; expected BODY_25 or "
                    f"BODY_25B (25) or COCO (18)"
                )
            if model != "auto" and len(arr) != _OPENPOSE_SIZES[model]:
                raise PoseFormatError(
                    f"{path}: field '{field}' has {len(arr)} keypoints; the {model} model has "
                    f"{_OPENPOSE_SIZES[model]}"
                )
            sizes.add(len(arr))
            raw[k].append(arr)
    if len(sizes) > 1:
        raise PoseFormatError(f"{folder}: frames mix {sorted(sizes)}-keypoint detections")
    if not sizes:
        return [np.zeros((0, 17, 3), np.float32) for _ in raw], None
    if model == "auto":
        model = "COCO" if sizes.pop() == 18 else body25_variant(raw, folder)
    index = OPENPOSE_TO_COCO[model]
    frames = [np.asarray([d[index] for d in dets], np.float32).reshape(-1, 17, 3) for dets in raw]
    return frames, model


def body25_variant(frames: list[list[np.ndarray]], where: str) -> str:
    """'BODY_25' or 'BODY_25B' from 25-keypoint detections. In BODY_25 keypoint 1 is the neck,
    midway between the shoulders 2 and 5, and 8 the mid-hip, midway between the hips 9 and 12;
    in BODY_25B (first 17 keypoints in COCO order) 1 is an eye, 2 the other eye, 5 a shoulder,
    so keypoint 1 lies far from the midpoint of 2 and 5. Decided by the median relative
    distance over every detection that shows those keypoints; refused (PoseFormatError) when
    fewer than 3 detections show them or the distance is ambiguous."""
    ratios = []
    for dets in frames:
        for d in dets:
            for mid, a, b in ((1, 2, 5), (8, 9, 12)):
                if (d[[mid, a, b], 2] > 0).all():
                    span = np.linalg.norm(d[a, :2] - d[b, :2])
                    if span > 0:
                        ratios.append(np.linalg.norm(d[mid, :2] - (d[a, :2] + d[b, :2]) / 2) / span)
    if len(ratios) < 3:
        raise PoseFormatError(
            f"{where}: 25-keypoint OpenPose output, but too few detections show the joints that "
            f"tell BODY_25 from BODY_25B; give --openpose-model BODY_25 or BODY_25B"
        )
    r = float(np.median(ratios))
    if r < 0.2:
        return "BODY_25"
    if r > 0.3:
        return "BODY_25B"
    raise PoseFormatError(
        f"{where}: cannot tell BODY_25 from BODY_25B (keypoint 1 lies {r:.2f} shoulder widths "
        f"from the midpoint of keypoints 2 and 5); give --openpose-model BODY_25 or BODY_25B"
    )


def read_coco_results(path: str) -> tuple[list[np.ndarray], list[str]]:
    """Per-frame detections (N_t, 17, 3) of a COCO keypoint results file, frame k at index k:
    the image id is the frame number (a string id: the last number in it); frames that no
    detection names have no person. Ids that are not frame numbers are refused. And notes:
    ids that start at 1 may count images from 1, which is not guessed but said."""
    data = load_json(path)
    if not isinstance(data, list):
        raise PoseFormatError(f"{path}: expected a JSON list of detections")
    by_frame: dict[int, list] = {}
    ids: dict[int, object] = {}
    for i, det in enumerate(data):
        for key in ("image_id", "keypoints"):
            if not isinstance(det, dict) or key not in det:
                raise PoseFormatError(f"{path}: missing field '[{i}].{key}'")
        kp = keypoint_array(det["keypoints"], path, f"[{i}].keypoints", 17, MAX_SCORE)
        k = _frame_number(det["image_id"], path, f"[{i}].image_id")
        if ids.setdefault(k, det["image_id"]) != det["image_id"]:
            raise PoseFormatError(
                f"{path}: field '[{i}].image_id': {ids[k]!r} and {det['image_id']!r} both name "
                f"frame {k}; cannot order the frames"
            )
        by_frame.setdefault(k, []).append(kp)
    if not by_frame:
        raise PoseFormatError(f"{path}: no detections")
    last = max(by_frame)
    if last + 1 > 10 * len(by_frame) + 10000:
        raise PoseFormatError(
            f"{path}: field 'image_id' runs up to {last} for {len(by_frame)} images; the image "
            f"ids are not frame numbers"
        )
    notes = []
    if min(by_frame) == 1:
        notes.append(
            f"{path}: the image ids start at 1 (no id is 0); id k is read as frame k, with no "
            f"person in frame 0; if the ids count images from 1, this recording's times are one "
            f"frame late (renumber the ids from 0)"
        )
    none = np.zeros((0, 17, 3), np.float32)
    frames = [
        np.asarray(by_frame[k], np.float32) if k in by_frame else none for k in range(last + 1)
    ]
    return frames, notes


def _frame_number(image, path: str, field: str) -> int:
    """A COCO image id as a frame number: a non-negative integer, or the last number in a
    string (``frame_10.jpg`` -> 10)."""
    if is_int(image) and image >= 0:
        return int(image)
    if isinstance(image, str) and (digits := _NUMBER.findall(image)):
        if len(digits[-1].lstrip("0")) <= 12:  # longer: no frame number (and slow to convert)
            return int(digits[-1])
    raise PoseFormatError(
        f"{path}: field '{field}' must be a frame number (an integer >= 0 or a string holding "
        f"one, such as 'frame_10.jpg'), got {preview(image)}"
    )


def read_numpy(path: str) -> tuple[np.ndarray, float | None, tuple | None, list[str]]:
    """poses (T, 17, 3) or (P, T, 17, 3), the file's fps and resolution (None when absent) and
    notes (NaN joints read as not seen: ``nan_as_missing``) of a .npy or .npz file (``.npz``:
    ``poses`` and optional ``fps`` and ``resolution``); PoseFormatError names the file and the
    array that is wrong."""
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "poses" not in z.files:
                    raise PoseFormatError(f"{path}: missing array 'poses' (has {z.files})")
                poses = z["poses"]
                fps = positive_number(z["fps"], path, "fps") if "fps" in z.files else None
                res = _resolution(z["resolution"], path) if "resolution" in z.files else None
        else:
            poses, fps, res = np.load(path, allow_pickle=False), None, None
    except PoseFormatError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):  # numpy's advice to unpickle is not ours to give
            raise PoseFormatError(
                f"{path}: not a numeric .npy/.npz array (numpy could read it only as pickled "
                f"Python objects, which are not read); save the poses with numpy.save"
            ) from e
        raise PoseFormatError(f"{path}: cannot load as numpy ({e})") from e
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise PoseFormatError(f"{path}: cannot load as numpy (damaged file: {e})") from e
    if not np.issubdtype(poses.dtype, np.number) or np.issubdtype(poses.dtype, np.complexfloating):
        raise PoseFormatError(f"{path}: poses have dtype {poses.dtype}; expected real numbers")
    if poses.ndim not in (3, 4) or poses.shape[-2:] != (17, 3):
        raise PoseFormatError(
            f"{path}: poses have shape {poses.shape}; expected (T, 17, 3) or "
            f"(P, T, 17, 3) (COCO-17 x (x, y, score))"
        )
    if poses.size == 0:
        raise PoseFormatError(f"{path}: poses have shape {poses.shape}: no frames (or no person)")
    check_values(poses, path, "poses", MAX_SCORE)  # before float32 could make a huge value inf
    poses, notes = nan_as_missing(poses.astype(np.float32), path)
    return poses, fps, res, notes


def _resolution(value, path: str) -> tuple[int, int]:
    arr = np.asarray(value)
    if arr.shape != (2,) or not np.issubdtype(arr.dtype, np.number):
        raise PoseFormatError(
            f"{path}: field 'resolution' must be [width, height], got {arr.tolist()!r}"
        )
    if not (np.isfinite(arr).all() and (arr >= 1).all()):
        raise PoseFormatError(
            f"{path}: field 'resolution' must be whole pixels >= 1, got {arr.tolist()}"
        )
    return int(arr[0]), int(arr[1])


def read_recording(
    path: str,
    all_persons: bool = False,
    openpose_model: str = "auto",
    fps: float | None = None,
    resolution=None,
) -> Recording:
    """Any supported format -> Recording. ``fps`` / ``resolution`` override what the file says.
    Coordinates that cannot be pixels of the resolution are refused.

    Args:
        path: an OpenPose output folder, a SYN JSON view, a COCO keypoint-results JSON file, or
            a ``.npy`` / ``.npz`` array of (T, 17, 3) pixels (``.npz``: ``poses``, optional
            ``fps`` and ``resolution``).
        all_persons: track every person (poses (P, T, 17, 3)) instead of the main one (T, 17, 3).
        openpose_model: 'auto' (BODY_25, BODY_25B or COCO-18 told from the data), or one of them.
        fps: frames per second, replacing what the file says (None: the file's, if any).
        resolution: (width, height) in pixels, replacing what the file says.

    Returns:
        A Recording: COCO-17 (x, y, score) in pixels, score 0 on joints not seen; ``fps`` and
        ``resolution`` None where neither the file nor the caller gives them.

    Raises:
        PoseFormatError: a missing or unreadable path, or malformed content; the message names
            the file and the field.
    """
    if not os.path.exists(path):
        raise PoseFormatError(f"{path}: no such file or folder")
    try:
        return _read(path, all_persons, openpose_model, fps, resolution)
    except OSError as e:  # a file or folder that cannot be read, found while reading it
        where = e.filename or path
        raise PoseFormatError(f"{where}: cannot read ({e.strerror})") from None


def _people(frames: list[np.ndarray], all_persons: bool) -> tuple[np.ndarray, Followed | None]:
    return (track_all(frames), None) if all_persons else track_main(frames)


def _read(path, all_persons, openpose_model, fps, resolution) -> Recording:
    file_fps, file_res, model, followed, notes = None, None, None, None, []
    if os.path.isdir(path):
        files = frame_files(path)
        frames, model = read_openpose_folder(path, openpose_model, files)
        poses, followed = _people(frames, all_persons)
        first = files[0][0]
        if first > 0:
            notes.append(
                f"{path}: the first file is frame {first}; frames 0 to {first - 1} are read as "
                f"frames without a person (file numbers are the video's frame indices: if the "
                f"video was processed from frame {first}, renumber the files from 0)"
            )
    elif path.endswith((".npy", ".npz")):
        poses, file_fps, file_res, notes = read_numpy(path)
        if poses.ndim == 4 and not all_persons:
            poses = poses[0]
        elif poses.ndim == 3 and all_persons:
            poses = poses[None]
    elif path.endswith(".json"):
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace").lstrip()
        if head.startswith("["):
            frames, notes = read_coco_results(path)
            poses, followed = _people(frames, all_persons)
        else:
            view = read_syn_view(path)
            check_values(view.poses, path, "annotations[].keypoints", MAX_SCORE)
            poses = view.poses[view.category_id :]  # the file's own crop: this view's recording
            poses = poses[None] if all_persons else poses
            file_res, file_fps = view.resolution, view.fps
    else:
        raise PoseFormatError(
            f"{path}: unknown pose format (expected an OpenPose folder, .json, .npy or .npz)"
        )
    if poses.shape[-3] == 0:
        raise PoseFormatError(f"{path}: the recording has no frames")
    res = tuple(resolution) if resolution else file_res
    check_coordinates(poses, res, path, "poses" if path.endswith((".npy", ".npz")) else "keypoints")
    if fps and file_fps and not np.isclose(fps, file_fps, rtol=1e-6):
        notes.append(f"{path}: the file says {file_fps:g} fps; using the {fps:g} fps given (--fps)")
    return Recording(poses, fps or file_fps, res, path, model, followed, notes)
