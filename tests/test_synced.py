"""sesyn-sync --write-synced: four OpenPose folders cut from the example recordings at known
offsets (two at 30 fps, two at 60 fps) written again so that frame k of every folder shows the
same moment, checked against the clip time of each written file; offsets.toml against the
truth; refusals; and the frame mapping of a drifting clock against the cameras' own rates."""

import json
import os
import shutil
import tomllib

import numpy as np
import pytest

from sesyn_jax import sync
from sesyn_jax.data.example_recordings import make_examples
from sesyn_jax.sync import synced
from sesyn_jax.sync.output import Clock

# (camera, example folder, first example frame kept, fps); the examples' clip time of frame m:
# cam_30fps (45 + m) / 30 s, cam_60fps (200 + m) / 60 s
CAMERAS = [
    ("cam01_json", "cam_30fps", 0, 30.0),
    ("cam02_json", "cam_60fps", 40, 60.0),
    ("cam03_json", "cam_30fps", 25, 30.0),
    ("cam04_json", "cam_60fps", 100, 60.0),
]
FIRST = {"cam_30fps": (45, 30.0), "cam_60fps": (200, 60.0)}
MISSING = [10, 11, 12, 13, 200, 201]  # cam04's frames whose files are deleted (none written)


def clip_time(example: str, frame: int) -> float:
    lead, fps = FIRST[example]
    return (lead + frame) / fps


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A Pose2Sim-style trial: pose/cam01_json ... cam04_json, and per camera a table from
    each frame file's content to the clip time it shows (None where two frames share it)."""
    root = tmp_path_factory.mktemp("trial")
    make_examples(str(root / "examples"))
    shows = {}
    for cam, example, cut, _ in CAMERAS:
        src = root / "examples" / example
        dst = root / "pose" / cam
        dst.mkdir(parents=True)
        files = sorted(os.listdir(src))
        table = {}
        for n, name in enumerate(files[cut:]):
            body = (src / name).read_bytes()
            if cam == "cam04_json" and n in MISSING:
                assert json.loads(body)["people"]  # a frame with a person, lost
                continue
            (dst / f"{cam}_{n:012d}_keypoints.json").write_bytes(body)
            t = clip_time(example, cut + n)
            table[body] = None if body in table else t
        shows[cam] = table
    return root, shows


def run(capsys, args):
    code = sync.main([str(a) for a in args])
    return code, json.loads(capsys.readouterr().out)


def test_four_cameras_written_in_sync(project, capsys):
    root, shows = project
    folders = [root / "pose" / cam for cam, *_ in CAMERAS]
    out = root / "pose-sync"
    args = folders + ["--fps", "30,60,30,60", "--write-synced", out, "--json"]
    code, r = run(capsys, args)
    assert code == 0, r
    frames = r["write_synced"]["frames"]
    assert r["write_synced"]["fps"] == 30.0
    assert sorted(os.listdir(out)) == sorted([cam for cam, *_ in CAMERAS] + ["offsets.toml"])
    times = np.full((len(CAMERAS), frames), np.nan)
    for c, (cam, *_) in enumerate(CAMERAS):
        names = sorted(os.listdir(out / cam))
        assert names == [f"{cam}_{k:012d}_keypoints.json" for k in range(frames)]
        for k, name in enumerate(names):
            body = (out / cam / name).read_bytes()
            times[c, k] = np.nan if shows[cam].get(body) is None else shows[cam][body]
    # cam04 (60 fps written at 30) shows its frame first + 2 k at frame k: a frame whose file
    # was deleted is written without a person
    first = r["write_synced"]["cameras"][3]["first_frame"]
    hit = [(m - first) // 2 for m in MISSING if (m - first) % 2 == 0 and m >= first]
    assert len(hit) == 3
    for k in hit:
        body = (out / "cam04_json" / f"cam04_json_{k:012d}_keypoints.json").read_text()
        assert json.loads(body)["people"] == []
    known = np.isfinite(times)
    both = known.sum(0) >= 2  # frames two or more cameras show a told-apart moment of
    assert both.mean() > 0.95 and both[0] and both[-1]
    # frame k of every folder shows the same moment, within one frame of the output rate
    spread = np.nanmax(times[:, both], 0) - np.nanmin(times[:, both], 0)
    assert spread.max() <= 1 / 30 + 1e-9
    # frames before the common start (cam04's first, 5.0 s) and after the common end (the
    # 30 fps cameras' last frame, 479 / 30 s) are dropped; the frames are 1/30 s apart. The
    # ends follow the estimated offsets (a fraction of a frame off) rounded to whole frames of
    # each camera, so the last written moment may fall short of the true end by up to 2 frames
    moment = np.nanmedian(times[:, both], 0)
    assert 5.0 - 1e-9 <= moment[0] <= 5.0 + 1 / 30 + 1e-9
    assert 479 / 30 - 2 / 30 - 1e-9 <= moment[-1] <= 479 / 30 + 1e-9
    k = np.flatnonzero(both)
    assert np.abs(moment - moment[0] - k / 30).max() <= 1 / 30 + 1e-9

    toml = tomllib.loads((out / "offsets.toml").read_text())
    assert toml["reference"] == "cam01_json" and toml["frames"] == frames
    assert toml["fps"] == 30.0
    start = clip_time("cam_30fps", 0)
    for cam, got in zip(CAMERAS, toml["cameras"]):
        name, example, cut, fps = cam
        assert got["folder"] == name and got["fps"] == fps
        assert got["source"] == os.path.abspath(root / "pose" / name)
        # the moment at time t of cam01 (clip time 1.5 s + t) is at t + offset of this one
        truth = start - clip_time(example, cut)
        assert abs(got["offset_seconds"] - truth) < 1 / 30
        assert got["drift_ppm"] == 0.0 and got["drift_measured"] is False
        assert 0.5 <= got["confidence"] <= 1.0
    # the JSON says what was written
    assert [c["folder"] for c in r["write_synced"]["cameras"]] == [c[0] for c in CAMERAS]

    # again: refused before any work (exit 2), the folder untouched
    before = {p: (out / p).stat().st_mtime_ns for p in os.listdir(out)}
    code, again = run(capsys, args)
    assert code == 2 and again["status"] == "error"
    assert "already exists" in again["reason"] and "--overwrite" in again["reason"]
    assert {p: (out / p).stat().st_mtime_ns for p in os.listdir(out)} == before
    # --overwrite replaces it with the same frames, leaving nothing else beside it
    code, third = run(capsys, args + ["--overwrite"])
    assert code == 0 and third["write_synced"]["frames"] == frames
    assert sorted(os.listdir(root)) == ["examples", "pose", "pose-sync"]
    # but never a folder it did not write: one with a file of the user's beside offsets.toml,
    # one without offsets.toml, one whose offsets.toml is the user's
    mine_files = ("notes.txt", "calib/Calib.toml", "cam09_json/a.json", "cam01_json/video.mp4")
    for mine in mine_files + ("cam01_json/s/x.json",):
        path = out / mine
        made = [p for p in reversed(path.parents) if out in p.parents and not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
        code, r = run(capsys, args + ["--overwrite"])
        assert code == 2 and "not written by sesyn-sync" in r["reason"], r
        assert mine.split("/")[0] in r["reason"] and path.read_text() == "mine"
        path.unlink()
        for folder in reversed(made):
            folder.rmdir()
    code, r = run(capsys, args + ["--overwrite"])  # its own output, again
    assert code == 0, r
    for case in ("no toml", "foreign toml"):
        other = root / ("work_" + case.replace(" ", "_"))
        (other / "data").mkdir(parents=True)
        (other / "data" / "thesis.txt").write_text("keep")
        if case == "foreign toml":
            (other / "offsets.toml").write_text("[camera]\noffset = 1\n")
        code, r = run(capsys, args[:7] + [other, "--json", "--overwrite"])
        assert code == 2 and "not written by sesyn-sync" in r["reason"], r
        assert (other / "data" / "thesis.txt").read_text() == "keep"


def test_refusals_before_any_work(project, tmp_path, capsys):
    root, _ = project
    a, b = root / "pose" / "cam01_json", root / "pose" / "cam03_json"
    np.save(tmp_path / "poses.npy", np.zeros((50, 17, 3), np.float32))
    cases = [
        ([a, tmp_path / "poses.npy"], tmp_path / "o1", "not a folder"),
        ([a, b], a / "synced", "overlaps"),
        ([a, b], tmp_path / "no" / "such", "does not exist"),
    ]
    other = tmp_path / "elsewhere" / "cam01_json"
    shutil.copytree(a, other)
    cases.append(([a, other], tmp_path / "o2", "same folder name"))
    for files, out, why in cases:
        code, r = run(capsys, files + ["--write-synced", out, "--json"])
        assert code == 2 and r["status"] == "error" and why in r["reason"], r
        assert not os.path.exists(out)
    code, r = run(capsys, [a, b, "--overwrite", "--json"])
    assert code == 2 and "--write-synced" in r["reason"]


def test_a_drifting_clock_picks_each_cameras_nearest_frame():
    """Camera B records at 29.97 fps, labels 30 and starts 1.3 s before A (true time): the
    output frame at time t of A shows true time t + 1.3 s since B's start, which is B's frame
    (t + 1.3) x 29.97 to the nearest frame, whatever the clock's equation."""
    lead, ntsc = 1.3, 29.97
    clocks = [
        Clock("a", 0.0, 0.0, False, 1.0),
        Clock("b", lead * ntsc / 30, (ntsc / 30 - 1) * 1e6, True, 1.0),
    ]
    lengths, fps = [18000, 18000], [30.0, 30.0]
    start, count = synced.common_frames(clocks, lengths, fps, 30.0)
    assert start == 0.0  # B started first
    # A ends at 17999 / 30 s; B's last frame shows true time 17999 / 29.97 s since its start
    assert count == min(18000, int(np.floor((17999 / ntsc - lead) * 30 + 1e-6)) + 1)
    b = synced.source_frames(clocks[1], 30.0, 18000, start, count, 30.0)
    t = start + np.arange(count) / 30.0
    assert np.abs(b - (t + lead) * ntsc).max() <= 0.5 + 1e-9
    # B loses a frame against A about every 1000 frames: it repeats one
    assert (np.diff(b) == 0).sum() == pytest.approx(count / 1000, abs=1)
    a = synced.source_frames(clocks[0], 30.0, 18000, start, count, 30.0)
    np.testing.assert_array_equal(a, np.arange(count))


def test_a_low_confidence_answer_is_not_written(project, tmp_path, capsys):
    """200 frames at 30 fps against 500 at 60 fps cut 8.5 s later than the truth allows to
    match: the answer is below 0.5 confidence, so nothing is written (exit 3) unless
    --force-write; the warning comes before the "wrote" line."""
    root, _ = project
    for cam, cut in (("cam01_json", slice(0, 200)), ("cam02_json", slice(360, 860))):
        (tmp_path / cam).mkdir()
        for name in sorted(os.listdir(root / "pose" / cam))[cut]:
            shutil.copy(root / "pose" / cam / name, tmp_path / cam / name)
    args = [tmp_path / "cam01_json", tmp_path / "cam02_json", "--fps", "30,60", "--write-synced"]
    code, r = run(capsys, args + [tmp_path / "out", "--json"])
    assert code == 3 and r["status"] == "refused" and r["confidence"] < 0.5
    assert "nothing was written" in r["reason"] and "--force-write" in r["reason"]
    assert not os.path.exists(tmp_path / "out")
    code = sync.main([str(a) for a in args + [tmp_path / "out", "--force-write"]])
    text = capsys.readouterr().out
    assert code == 0 and os.path.isdir(tmp_path / "out" / "cam01_json")
    assert text.index("warning: low confidence") < text.index("wrote ")
