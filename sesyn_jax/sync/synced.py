"""--write-synced OUT: the OpenPose folders written again, renumbered so that frame k of every
written folder shows the same moment, in place of Pose2Sim's synchronization step.

Pose2Sim reads a trial's OpenPose output from ``pose/<camera>_json/`` and its synchronization
step writes ``pose-sync/<camera>_json/`` beside it, each file's frame number (the last number in
its name) shifted by the camera's offset; its later steps take frame k of every camera from
the file whose last number is k. Here OUT takes the place of ``pose-sync``: one sub-folder per
input folder, named as it, holding files named as the input's (the last number replaced by the
new frame number, at the same width) and numbered from 0 without a gap:

  * the frames are those of the first recording's clock at its frame rate (the output rate),
    from the first moment every camera has recorded to the last, so that frames before the
    common start (and after the common end) are dropped;
  * a camera's frame for output frame k is the nearest to the moment, through its clock
    against the first (offset and drift: ``output.Clock``), so that a drifting camera
    repeats or skips a frame where its clock has gained or lost one;
  * each written file is a byte copy of the input's frame file, or ``{"people": []}`` where
    the input has no file for that frame (OpenPose writes none when it failed);
  * ``OUT/offsets.toml`` holds every camera's offset, drift, confidence and first frame.

Nothing is overwritten: OUT must not exist (``--overwrite`` replaces it, but only a folder this
tool wrote: its offsets.toml and camera folders, nothing else), everything is written into a
temporary folder beside OUT and renamed into place at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import tomllib

import numpy as np

from sesyn_jax.sync.errors import BadInput, CannotSync

TOML_NAME = "offsets.toml"
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def folder_name(path: str) -> str:
    return os.path.basename(os.path.normpath(path))


def check_target(out: str, names: list[str], overwrite: bool) -> None:
    """BadInput (exit 2, before any work) unless every recording is an OpenPose folder with its
    own name and OUT can be written: OUT must not exist unless ``overwrite``, its parent folder
    must exist and be writable, and it must neither be nor hold nor lie inside a recording."""
    for n in names:
        if not os.path.isdir(n):
            raise BadInput(
                f"--write-synced writes OpenPose folders; {n} is not a folder (only OpenPose "
                f"output folders can be written back)"
            )
    seen: dict[str, str] = {}
    for n in names:
        key = folder_name(n)
        if key in seen:
            raise BadInput(
                f"--write-synced: {seen[key]} and {n} have the same folder name {key!r}; each "
                f"camera's folder needs its own name in {out}"
            )
        seen[key] = n
    target = os.path.realpath(out)
    for n in names:
        src = os.path.realpath(n)
        if os.path.commonpath([src, target]) in (src, target):
            raise BadInput(f"--write-synced {out} overlaps the recording {n}; give another folder")
    if os.path.lexists(out):
        if not overwrite:
            raise BadInput(
                f"--write-synced {out} already exists; nothing was written (give --overwrite "
                f"to replace it, or another folder)"
            )
        if not os.path.isdir(out) or os.path.islink(out):
            raise BadInput(f"--write-synced {out} exists and is not a folder; it is not replaced")
        foreign = not_written_here(out)
        if foreign:
            raise BadInput(
                f"--write-synced {out} exists and was not written by sesyn-sync ({foreign}); "
                f"--overwrite replaces only a folder this tool wrote, so it is not replaced"
            )
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise BadInput(f"--write-synced {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"--write-synced {out}: cannot write in {parent}")


_HEADER = "# written by sesyn-sync --write-synced"


def not_written_here(folder: str) -> str:
    """'' when ``folder`` holds exactly what --write-synced writes: its offsets.toml (starting
    with this tool's header line) and the camera folders that offsets.toml names, each holding
    only .json files; else what is there besides, so that --overwrite never deletes a file
    the tool did not write."""
    toml = os.path.join(folder, TOML_NAME)
    try:
        with open(toml, "rb") as f:
            text = f.read().decode("utf-8")
        cameras = {c["folder"] for c in tomllib.loads(text)["cameras"]}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return f"it holds no readable {TOML_NAME} of this tool"
    if not text.startswith(_HEADER):
        return f"its {TOML_NAME} was not written by this tool"
    others = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry == TOML_NAME:
            continue
        if entry not in cameras or os.path.islink(path) or not os.path.isdir(path):
            others.append(entry)
            continue
        others += [
            os.path.join(entry, f)
            for f in sorted(os.listdir(path))
            if not f.endswith(".json") or not os.path.isfile(os.path.join(path, f))
        ]
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        return f"it also holds {', '.join(others[:3])}{more}"
    return ""


def common_frames(clocks, lengths, fps, out_fps: float) -> tuple[float, int]:
    """The output frames: (time of frame 0 in the first recording's clock, seconds; count).
    Frame k is at start + k / out_fps; start is the first moment of the output grid (anchored
    at the first recording's frame 0) that every camera has recorded, and the last frame the
    last such moment. ``lengths`` frames and ``fps`` per camera, ``clocks`` ``output.Clock``.
    CannotSync when the cameras share no moment."""
    starts, ends = [], []
    for c, n, f in zip(clocks, lengths, fps):
        scale = 1 + c.drift_ppm * 1e-6
        starts.append(-c.offset_seconds / scale)
        ends.append(((n - 1) / f - c.offset_seconds) / scale)
    first = math.ceil(max(starts) * out_fps - 1e-6)
    last = math.floor(min(ends) * out_fps + 1e-6)
    if last < first:
        raise CannotSync("the cameras share no moment; no synchronized frames can be written")
    return first / out_fps, last - first + 1


def source_frames(clock, fps: float, length: int, start: float, count: int, out_fps: float):
    """(count,) the camera's frame nearest to each output frame's moment."""
    t = start + np.arange(count, dtype=np.float64) / out_fps
    own = (1 + clock.drift_ppm * 1e-6) * t + clock.offset_seconds
    return np.clip(np.rint(own * fps), 0, length - 1).astype(np.int64)


def file_namer(folder: str, files: list[tuple[int, str]]):
    """k -> the file name of frame k in the folder's pattern: its first file's name with the
    last number replaced by k at the same width (OpenPose: ``cam01_000000000012_keypoints``);
    a folder whose names hold no number: ``<folder>_<k:012d>_keypoints.json``."""
    name = os.path.basename(files[0][1])
    m = _LAST_NUMBER.search(name[: -len(".json")])
    if m is None:
        base = folder_name(folder)
        return lambda k: f"{base}_{k:012d}_keypoints.json"
    head, width, tail = name[: m.start()], len(m.group(1)), name[m.end() :]
    return lambda k: f"{head}{k:0{width}d}{tail}"


def write_synced(out: str, names: list[str], fps: dict, clocks, overwrite: bool) -> dict:
    """Write the synchronized folders and offsets.toml into OUT (see the module doc); returns
    the JSON fields: folder, fps, frames, start_seconds and per camera its sub-folder and first
    source frame. OSError when a file cannot be written (nothing is left behind)."""
    from sesyn_jax.data.readers import frame_files

    rates = [fps[n] for n in names]
    out_fps = rates[0]
    listings = [frame_files(n) for n in names]
    lengths = [files[-1][0] + 1 for files in listings]
    start, count = common_frames(clocks, lengths, rates, out_fps)
    target = os.path.abspath(out)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.")
    cameras = []
    try:
        for n, files, rate, length, clock in zip(names, listings, rates, lengths, clocks):
            src = source_frames(clock, rate, length, start, count, out_fps)
            write_camera(os.path.join(tmp, folder_name(n)), n, files, src)
            cameras.append((n, clock, rate, src))
        text = offsets_toml(cameras, out_fps, start, count)
        with open(os.path.join(tmp, TOML_NAME), "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        replace_folder(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "folder": out,
        "fps": out_fps,
        "frames": count,
        "start_seconds": round(start, 4),
        "cameras": [
            {"recording": n, "folder": folder_name(n), "first_frame": int(src[0])}
            for n, _, _, src in cameras
        ],
    }


def write_camera(folder: str, source: str, files: list[tuple[int, str]], src) -> None:
    os.makedirs(folder)
    by_number = dict(files)
    name = file_namer(source, files)
    empty = json.dumps({"version": 1.3, "people": []})
    for k, m in enumerate(src):
        dst = os.path.join(folder, name(k))
        path = by_number.get(int(m))
        if path is None:
            with open(dst, "w") as f:
                f.write(empty)
        else:
            shutil.copyfile(path, dst)


def replace_folder(tmp: str, target: str, overwrite: bool) -> None:
    """Rename the finished folder into place; with ``overwrite`` the old one is moved aside
    first and removed only once the new one is in place."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    if not overwrite:  # created while this run worked
        raise FileExistsError(17, "created by someone else meanwhile", target)
    old = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.old.")
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _toml_string(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def offsets_toml(cameras, out_fps: float, start: float, count: int) -> str:
    """offsets.toml: the written frames and one [[cameras]] table per camera."""
    ref = cameras[0][0]
    lines = [
        _HEADER + ": frame k of every folder here shows the same",
        "# moment. A camera's clock against the first recording: the moment at time t (s) of",
        "# the first is at time (1 + drift_ppm * 1e-6) * t + offset_seconds of the camera.",
        f"reference = {_toml_string(folder_name(ref))}",
        f"fps = {float(out_fps)!r}",
        f"frames = {int(count)}",
        f"start_seconds = {round(start, 6)!r}  # frame 0's time in the first recording",
        "",
    ]
    for n, clock, rate, src in cameras:
        lines += [
            "[[cameras]]",
            f"folder = {_toml_string(folder_name(n))}",
            f"source = {_toml_string(os.path.abspath(n))}",
            f"fps = {float(rate)!r}",
            f"offset_seconds = {round(clock.offset_seconds, 6)!r}",
            f"drift_ppm = {round(clock.drift_ppm, 3)!r}",
            f"drift_measured = {'true' if clock.drift_measured else 'false'}",
            f"confidence = {round(float(clock.confidence), 3)!r}",
            f"first_source_frame = {int(src[0])}",
            f"last_source_frame = {int(src[-1])}",
            "",
        ]
    return "\n".join(lines)
