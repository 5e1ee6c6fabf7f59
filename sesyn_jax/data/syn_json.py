"""The SYN JSON layout of NTU-SYN, CMU-SYN and MOCAP-SYN: one file per view.

  {"info": {"num_frame": T, "num_keypoints": 17, "keypoint_channels": ["x", "y", "score"],
            "resolution": [width, height], ...},
   "annotations": [{"frame_index": i, "person_id": 0, "id": 0, "keypoints": [[x, y, s] x 17]}],
   "category_id": c}

``category_id`` is the number of leading frames cut from this view to make the pair
asynchronous; the pair's true offset is category_id(view 1) - category_id(view 2). The published
loader reads person 0 only and, when ``num_frame > 1000``, uses len(annotations) // 5 frames (a
quirk of the CMU files); both are reproduced, the second only where a dataset is loaded for
reproducing CMU-SYN (``load_split`` with the CMU pairing, or ``long_file_quirk=True``): anyone
else's file is read whole. Views are paired by sorted file name: NTU-SYN
view 1 / view 2 files contain ``C001`` / ``C002``, CMU-SYN ``C11`` / ``C21``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Sequence

import numpy as np
from sesyn_jax.io import atomic_write

PAIR_RULES = {"ntu": ("C001", "C002"), "cmu": ("C11", "C21")}


class PoseFormatError(ValueError):
    """A pose file that does not have the expected layout; the message names file and field."""


@dataclasses.dataclass
class SynView:
    poses: np.ndarray  # (T, 17, 3) float32, pixels, zeros where no detection
    category_id: int
    resolution: tuple[int, int]
    path: str
    fps: float | None = None  # info.fps, when the file gives it


@dataclasses.dataclass
class Pair:
    """One two-view sample, normalized and cropped as the published pipeline does."""

    name: str
    view1: np.ndarray  # (T1, 17, 3) float32
    view2: np.ndarray  # (T2, 17, 3) float32
    offset: int  # category_id(view 1) - category_id(view 2)
    resolution: tuple[int, int] = (1920, 1080)  # of view 1 (for pixel-noise sweeps)
    resolution2: tuple[int, int] | None = None  # of view 2 when it differs from view 1's

    @property
    def resolutions(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return self.resolution, self.resolution2 or self.resolution


def _field(obj, key, path, where):
    if not isinstance(obj, dict) or key not in obj:
        raise PoseFormatError(f"{path}: missing field '{where}{key}'")
    return obj[key]


def is_int(x) -> bool:
    """A JSON integer (a bool is not one)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


MAX_PIXELS = 1e5  # no camera image is this wide: coordinates beyond are not pixels
MAX_SCORE = 2.0  # detectors' confidences lie in [0, 1] (heatmap peaks a little above)


def keypoint_array(
    kp, path: str, field: str, joints: int | None = None, max_score: float | None = None
) -> np.ndarray:
    """A JSON list of [x, y, score] rows (or a flat list of 3 * joints numbers) -> float64
    (joints, 3), or a PoseFormatError naming the file and the field (``check_values``)."""
    rows = kp
    if isinstance(kp, list) and kp and all(is_number(v) for v in kp):
        if len(kp) % 3:
            raise PoseFormatError(
                f"{path}: field '{field}' has {len(kp)} values, not a multiple of 3 (x, y, score)"
            )
        rows = [kp[i : i + 3] for i in range(0, len(kp), 3)]
    if not isinstance(rows, list) or not all(
        isinstance(r, list) and len(r) == 3 and all(is_number(v) for v in r) for r in rows
    ):
        raise PoseFormatError(
            f"{path}: field '{field}' must be a list of [x, y, score] number rows, got "
            f"{preview(kp)}"
        )
    arr = np.asarray(rows, np.float64).reshape(-1, 3)
    if joints is not None and len(arr) != joints:
        raise PoseFormatError(
            f"{path}: field '{field}' has {len(arr)} joints; expected {joints} x (x, y, score)"
        )
    if not np.isfinite(arr).all():
        raise PoseFormatError(f"{path}: field '{field}' has non-finite values")
    check_values(arr, path, field, max_score)
    return arr


def check_values(poses: np.ndarray, path: str, field: str, max_score: float | None) -> None:
    """Refuse (x, y, score) rows that cannot be a detector's: a seen joint's (score > 0)
    coordinate beyond MAX_PIXELS from the origin, or a score above ``max_score`` (None: any
    score; the pose readers of sesyn-sync ask for MAX_SCORE: the shipped model reads scores
    as confidences in [0, 1])."""
    scores = poses[..., 2]
    if max_score is not None and scores.size and scores.max() > max_score:
        raise PoseFormatError(
            f"{path}: field '{field}' has a score of {float(scores.max()):.3g}; scores must be "
            f"confidences from 0 to 1 (percentages: divide them by 100)"
        )
    seen = scores > 0
    if seen.any():
        xy = poses[..., :2][seen].astype(np.float64).ravel()
        worst = float(xy[np.argmax(np.abs(xy))])
        if abs(worst) > MAX_PIXELS:
            raise PoseFormatError(
                f"{path}: field '{field}' has a coordinate of {worst:.3g}, not a pixel position "
                f"(more than {MAX_PIXELS:.0e} from the origin)"
            )


def check_coordinates(poses: np.ndarray, resolution, path: str, field: str) -> None:
    """Refuse coordinates of seen joints (score > 0) that cannot be pixels of the image:
    beyond one image size outside it, or (no resolution) beyond MAX_PIXELS."""
    check_values(poses, path, field, None)
    seen = poses[..., 2] > 0
    if not seen.any() or resolution is None:
        return
    w, h = float(resolution[0]), float(resolution[1])
    pts = poses[..., :2][seen].astype(np.float64)
    rel = pts / np.array([w, h])
    over = np.maximum(-rel, rel - 1).max(-1)  # image sizes outside the image
    if over.max() > 1.0:
        i = int(np.argmax(over))
        raise PoseFormatError(
            f"{path}: field '{field}' has a joint at ({pts[i, 0]:.4g}, {pts[i, 1]:.4g}), more "
            f"than an image size outside the {w:g} x {h:g} image; the coordinates are not pixels "
            f"of this resolution"
        )


def preview(x, limit: int = 60) -> str:
    s = json.dumps(x) if not isinstance(x, str) else repr(x)
    return s if len(s) <= limit else s[:limit] + "..."


def load_json(path: str):
    """A UTF-8 JSON file's content, or a PoseFormatError saying it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PoseFormatError(f"{path}: not valid JSON ({e})") from e
    except ValueError:  # a number of thousands of digits (past Python's int limit)
        raise PoseFormatError(
            f"{path}: not pose data (it holds a number of thousands of digits)"
        ) from None
    except RecursionError:
        raise PoseFormatError(f"{path}: JSON nested too deeply to be pose data") from None
    except OSError as e:
        raise PoseFormatError(f"{path}: cannot read ({e})") from e


def positive_number(value, path: str, field: str) -> float:
    """One finite number > 0 (a frame rate: a JSON number or a numeric array of one value),
    or a PoseFormatError naming the field."""
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        raise PoseFormatError(f"{path}: field '{field}' must be one positive number, got {value!r}")
    x = float(arr.reshape(()))
    if not (math.isfinite(x) and x > 0):
        raise PoseFormatError(f"{path}: field '{field}' must be a positive number, got {x}")
    return x


MAX_FRAMES = 10_368_000  # 24 hours at 120 fps


def read_syn_view(path: str, num_track: int = 1, long_file_quirk: bool = False) -> SynView:
    """Read one view file into (T, 17, 3) pixels (person 0), as the published loader does;
    ``long_file_quirk``: a file with num_frame > 1000 keeps only len(annotations) // 5 frames,
    as the published loader reads the CMU-SYN files."""
    data = load_json(path)
    info = _field(data, "info", path, "")
    annotations = _field(data, "annotations", path, "")
    category_id = _field(data, "category_id", path, "")
    num_frame = _field(info, "num_frame", path, "info.")
    num_kp = _field(info, "num_keypoints", path, "info.")
    channels = _field(info, "keypoint_channels", path, "info.")
    resolution = _field(info, "resolution", path, "info.")
    if not isinstance(annotations, list):
        raise PoseFormatError(f"{path}: field 'annotations' must be a list")
    if not is_int(category_id) or category_id < 0:
        raise PoseFormatError(
            f"{path}: field 'category_id' must be a non-negative integer, got {category_id!r}"
        )
    if num_kp != 17:
        raise PoseFormatError(
            f"{path}: field 'info.num_keypoints' is {num_kp}; this model expects 17 (COCO)"
        )
    if not isinstance(channels, list) or channels != ["x", "y", "score"]:
        raise PoseFormatError(
            f"{path}: field 'info.keypoint_channels' must be ['x', 'y', 'score'], got {channels}"
        )
    if (
        not isinstance(resolution, (list, tuple))
        or len(resolution) != 2
        or not all(is_number(r) and r >= 1 for r in resolution)
    ):
        raise PoseFormatError(
            f"{path}: field 'info.resolution' must be [width, height] in whole pixels >= 1, "
            f"got {resolution}"
        )
    if not is_int(num_frame) or num_frame <= 0:
        raise PoseFormatError(
            f"{path}: field 'info.num_frame' must be a positive integer, got {num_frame!r}"
        )
    if num_frame > MAX_FRAMES:
        raise PoseFormatError(
            f"{path}: field 'info.num_frame' is {num_frame}; more than {MAX_FRAMES:,} frames "
            f"(a day at 120 fps) is not a plausible recording"
        )
    declared = num_frame
    if long_file_quirk and num_frame > 1000:  # CMU-SYN: frames past len // 5 are not read
        num_frame = len(annotations) // 5
    poses = np.zeros((num_frame, 17, 3), np.float32)
    seen = set()
    for i, a in enumerate(annotations):
        where = f"annotations[{i}]."
        pid = a.get("person_id") if isinstance(a, dict) else None
        if pid is None:
            pid = _field(a, "id", path, where)
            field = f"{where}id"
        else:
            field = f"{where}person_id"
        if not is_int(pid) or pid < 0:
            raise PoseFormatError(
                f"{path}: field '{field}' must be a non-negative integer, got {preview(pid)}"
            )
        frame = _field(a, "frame_index", path, where)
        kp = _field(a, "keypoints", path, where)
        if not is_int(frame) or not 0 <= frame < declared:
            raise PoseFormatError(
                f"{path}: field '{where}frame_index' must be an integer in [0, info.num_frame = "
                f"{declared}), got {preview(frame)}"
            )
        if (frame, pid) in seen:
            raise PoseFormatError(
                f"{path}: field '{where}frame_index': frame {frame} of person {pid} appears twice"
            )
        seen.add((frame, pid))
        if pid < num_track and frame < num_frame:
            poses[frame] = keypoint_array(kp, path, f"{where}keypoints", 17)
    check_coordinates(poses, (resolution[0], resolution[1]), path, "annotations[].keypoints")
    if category_id >= num_frame:
        raise PoseFormatError(
            f"{path}: field 'category_id' ({category_id}) cuts every one of the {num_frame} frames"
        )
    fps = info.get("fps")
    fps = positive_number(fps, path, "info.fps") if fps is not None else None
    res = (int(resolution[0]), int(resolution[1]))
    return SynView(poses, category_id, res, path, fps)


def normalize_view(view: SynView) -> np.ndarray:
    """Published preprocessing: drop the first category_id frames, x / width - 0.5,
    y / height - 0.5, and zero every channel of a joint whose score is 0."""
    x = view.poses[view.category_id :].copy()
    w, h = view.resolution
    x[..., 0] = x[..., 0] / w - 0.5
    x[..., 1] = x[..., 1] / h - 0.5
    x[x[..., 2] == 0] = 0.0
    return x


def write_syn_view(
    path: str,
    poses: np.ndarray,
    category_id: int,
    resolution: Sequence[int],
    video_name: str = "",
    person_id: int = 0,
) -> None:
    """Write (T, 17, 3) pixels as one SYN JSON view; frames whose scores are all 0 get no
    annotation (as a detector that found nobody). Atomic: temporary file, then rename."""

    t = int(poses.shape[0])
    anns = []
    for i in range(t):
        if np.any(poses[i, :, 2] > 0):
            kp = [
                [round(float(x), 2), round(float(y), 2), round(float(s), 3)] for x, y, s in poses[i]
            ]
            anns.append(
                {"frame_index": i, "person_id": person_id, "id": person_id, "keypoints": kp}
            )
    data = {
        "info": {
            "video_name": video_name,
            "resolution": [int(r) for r in resolution],
            "num_frame": t,
            "num_keypoints": 17,
            "keypoint_channels": ["x", "y", "score"],
            "version": "1.0",
        },
        "annotations": anns,
        "category_id": int(category_id),
    }
    atomic_write(path, lambda f: json.dump(data, f, separators=(",", ":")))


def pair_files(folder: str, rule: str = "auto") -> list[tuple[str, str]]:
    """(view 1, view 2) file pairs of a folder, matched by sorted name (published rule)."""
    if not os.path.isdir(folder):
        raise PoseFormatError(f"{folder}: no such data folder")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
    rule = _pairing(folder, rule)
    if rule not in PAIR_RULES:
        raise ValueError(f"pairing rule must be 'auto', 'ntu' or 'cmu', got {rule!r}")
    k1, k2 = PAIR_RULES[rule]
    v1 = [os.path.join(folder, f) for f in files if k1 in f]
    v2 = [os.path.join(folder, f) for f in files if k2 in f]
    if not v1 and not v2:
        raise PoseFormatError(f"{folder}: no view files (names containing {k1!r} / {k2!r})")
    if len(v1) != len(v2):
        raise PoseFormatError(
            f"{folder}: {len(v1)} view-1 files ({k1}) but {len(v2)} view-2 "
            f"files ({k2}); every pair needs both"
        )
    return list(zip(v1, v2))


def _pairing(folder: str, rule: str) -> str:
    """The pairing rule; 'auto': 'ntu' when any file name holds C001, else 'cmu'."""
    if rule != "auto":
        return rule
    return "ntu" if any("C001" in f for f in os.listdir(folder) if f.endswith(".json")) else "cmu"


def _cache_path(
    folder: str, files: list[tuple[str, str]], cache_dir: str | None, quirk: bool
) -> str:
    h = hashlib.sha1(b"long_file_quirk;" if quirk else b"")
    for a, b in files:
        for p in (a, b):
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns};".encode())
    root = (
        cache_dir
        or os.environ.get("SESYN_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "sesyn_jax")
    )
    return os.path.join(root, f"syn-{h.hexdigest()[:16]}.npz")


def load_split(
    folder: str,
    rule: str = "auto",
    cache: bool = True,
    cache_dir: str | None = None,
    long_file_quirk: bool | None = None,
) -> list[Pair]:
    """Every pair of a split folder, normalized and cropped. The parsed arrays are cached (an
    .npz keyed by the files' paths, sizes and modification times) so later loads take seconds.
    ``long_file_quirk`` (``read_syn_view``): by default on for CMU-SYN's pairing (C11 / C21),
    whose files the published loader reads that way, and off otherwise."""
    files = pair_files(folder, rule)
    if long_file_quirk is None:
        long_file_quirk = _pairing(folder, rule) == "cmu"
    path = _cache_path(folder, files, cache_dir, long_file_quirk) if cache else None
    if path and os.path.exists(path):
        try:
            with np.load(path) as z:
                return _unpack(z)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt
    pairs = []
    for a, b in files:
        va = read_syn_view(a, long_file_quirk=long_file_quirk)
        vb = read_syn_view(b, long_file_quirk=long_file_quirk)
        name = os.path.basename(a)
        pairs.append(
            Pair(
                name,
                normalize_view(va),
                normalize_view(vb),
                va.category_id - vb.category_id,
                va.resolution,
                vb.resolution if vb.resolution != va.resolution else None,
            )
        )
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **_pack(pairs)), binary=True)
    return pairs


def _pack(pairs: list[Pair]) -> dict:
    return {
        "names": np.array([p.name for p in pairs]),
        "offsets": np.array([p.offset for p in pairs], np.int64),
        "len1": np.array([len(p.view1) for p in pairs], np.int64),
        "len2": np.array([len(p.view2) for p in pairs], np.int64),
        "resolution": np.array([p.resolution for p in pairs], np.int64).reshape(-1, 2),
        "resolution2": np.array([p.resolutions[1] for p in pairs], np.int64).reshape(-1, 2),
        "view1": np.concatenate([p.view1 for p in pairs]),
        "view2": np.concatenate([p.view2 for p in pairs]),
    }


def _unpack(z) -> list[Pair]:
    s1 = np.concatenate([[0], np.cumsum(z["len1"])])
    s2 = np.concatenate([[0], np.cumsum(z["len2"])])
    v1, v2 = z["view1"], z["view2"]
    res, res2 = z["resolution"], z["resolution2"]
    out = []
    for i, (n, o) in enumerate(zip(z["names"], z["offsets"])):
        r1, r2 = tuple(int(v) for v in res[i]), tuple(int(v) for v in res2[i])
        out.append(
            Pair(
                str(n),
                v1[s1[i] : s1[i + 1]],
                v2[s2[i] : s2[i + 1]],
                int(o),
                r1,
                r2 if r2 != r1 else None,
            )
        )
    return out


def offset_crop(offset: int) -> tuple[int, int]:
    """category_id of (view 1, view 2) that realise a true offset: the later view is cut."""
    return (offset, 0) if offset >= 0 else (0, -offset)
