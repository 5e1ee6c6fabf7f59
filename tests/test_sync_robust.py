"""sesyn-sync as a hostile new user would try it: short recordings, a --max-offset below the
truth, long SYN files, a bystander, COCO gaps; and the failures that must end in one line with
exit 2 (130 for Ctrl-C), --json still JSON."""

import errno
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from sesyn_jax.data import cameras, mocap_syn, readers, tracking
from sesyn_jax.data.example_recordings import make_examples, openpose_people
from sesyn_jax.data.resample import interpolate
from sesyn_jax.data.syn_json import write_syn_view
from sesyn_jax.sync import cli, recordings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, args):
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, args):
    code, out, err = run(capsys, list(args) + ["--json"])
    return code, json.loads(out)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """The README's example folders (cam_30fps: 435 frames at 30 fps; cam_60fps: 900 at 60)."""
    out = tmp_path_factory.mktemp("examples")
    truth = make_examples(str(out))
    return out, truth["offset_seconds"]


@pytest.fixture(scope="module")
def cam30(examples):
    """The 30 fps example as (435, 17, 3) pixels."""
    return readers.read_recording(str(examples[0] / "cam_30fps")).poses


# ----------------------------------------------------------------------------- wrong answers


@pytest.mark.parametrize("start, frames", [(100, 50), (0, 30)])
def test_short_recordings_are_answered_by_speed_with_a_warning(
    tmp_path, examples, cam30, capsys, start, frames
):
    """A cut of the 30 fps example against the whole: too short for the learned method (it
    needs 88 frames, 2.93 s, at 30 fps), so 'learned' refuses saying how long a recording must
    be and 'auto' answers with the speed correlation and says so."""
    np.save(tmp_path / "cut.npy", cam30[start : start + frames])
    args = [examples[0] / "cam_30fps", tmp_path / "cut.npy", "--fps", "30"]
    code, r = run_json(capsys, args)
    assert code == 0 and r["method"] == "speed" and "learned" not in r["searches"]
    truth = -start / 30  # the moment at frame m of the whole is at frame m - start of the cut
    assert r["offset_seconds"] == pytest.approx(truth, abs=0.02) or r["confidence"] < 0.5
    assert any("the learned method needs at least 2.93 s" in n for n in r["notes"])
    code, r = run_json(capsys, args + ["--method", "learned"])
    assert code == 3 and r["status"] == "refused" and "needs at least 2.93 s" in r["reason"]


def test_learned_answers_at_the_length_it_needs(tmp_path, examples, cam30, capsys):
    np.save(tmp_path / "cut.npy", cam30[200:288])  # 88 frames: exactly what it needs
    args = [examples[0] / "cam_30fps", tmp_path / "cut.npy", "--fps", "30", "--method", "learned"]
    code, r = run_json(capsys, args)
    assert code == 0 and not r["notes"]
    assert r["offset_seconds"] == pytest.approx(-200 / 30, abs=0.05) or r["confidence"] < 0.5


@pytest.mark.parametrize("method", ["learned", "speed", "auto"])
def test_max_offset_below_the_truth_is_warned(examples, capsys, method):
    """The examples are 1.833 s apart; searched within 0.1 s, every method's answer is wrong,
    so it must come below 0.5 confidence with a warning naming --max-offset."""
    folder, truth = examples
    args = [folder / "cam_30fps", folder / "cam_60fps", "--fps", "30,60", "--method", method]
    code, r = run_json(capsys, args + ["--max-offset", "0.1"])
    assert code == 0 and abs(r["offset_seconds"]) <= 0.1 + 1 / 30
    assert r["confidence"] < 0.5
    assert any("--max-offset 0.1 s" in n and "beyond" in n for n in r["notes"]), r["notes"]
    if method != "speed":
        code, r = run_json(capsys, args + ["--max-offset", "2"])  # the truth inside the range
        assert code == 0 and r["offset_seconds"] == pytest.approx(truth, abs=0.02)
        assert r["confidence"] > 0.6 and not [n for n in r["notes"] if "--max-offset" in n]


def long_views(frames_a, start_b, frames_b):
    """One clip at 60 fps (2255 frames) seen by two cameras -> (A, B) pixel poses with A's
    frame m at B's frame m - start_b."""
    clip = next(c for c in mocap_syn.load_embedded() if c.name == "cmu_01_03")
    joints = interpolate(clip.joints.astype(np.float64), np.arange(0, len(clip.joints) - 1, 0.5))
    rng = np.random.default_rng(3)
    cam1, cam2, _ = cameras.sample_camera_pair(rng, joints)
    a = cameras.detect(rng, cam1, joints)[:frames_a]
    b = cameras.detect(rng, cam2, joints)[start_b : start_b + frames_b]
    return a, b


def test_syn_json_over_1000_frames_is_read_whole(tmp_path, capsys):
    """1,500 and 900-frame SYN JSON views at 60 fps, B starting 10 s into A: read whole (the
    published loader's quirk would keep 300 and 180 frames), synchronized right."""
    a, b = long_views(1500, 600, 900)
    write_syn_view(str(tmp_path / "a.json"), a, 0, (1920, 1080))
    write_syn_view(str(tmp_path / "b.json"), b, 0, (1920, 1080))
    assert readers.read_recording(str(tmp_path / "a.json")).poses.shape == (1500, 17, 3)
    code, r = run_json(capsys, [tmp_path / "a.json", tmp_path / "b.json", "--fps", "60"])
    assert code == 0 and [x["frames"] for x in r["recordings"]] == [1500, 900]
    assert r["offset_seconds"] == pytest.approx(-10.0, abs=0.03) and r["confidence"] > 0.5


def test_the_long_file_quirk_is_kept_for_cmu_syn_only(tmp_path):
    from sesyn_jax.data import syn_json

    a, b = long_views(1200, 0, 1200)
    for folder, names in (("cmu", ("x_C11", "x_C21")), ("ntu", ("x_C001", "x_C002"))):
        os.makedirs(tmp_path / folder)
        for name, poses in zip(names, (a, b)):
            write_syn_view(str(tmp_path / folder / f"{name}.json"), poses, 0, (1920, 1080))
    (cmu,) = syn_json.load_split(str(tmp_path / "cmu"), cache=False)
    (ntu,) = syn_json.load_split(str(tmp_path / "ntu"), cache=False)
    annotated = int((a[..., 2] > 0).any(-1).sum())  # frames with a person get an annotation
    assert len(cmu.view1) == annotated // 5 and len(ntu.view1) == 1200


def write_openpose(folder, people_per_frame):
    """people_per_frame: per frame a list of (17, 3) pixel poses -> OpenPose BODY_25 files."""
    os.makedirs(folder, exist_ok=True)
    for t, people in enumerate(people_per_frame):
        listed = [p for pose in people for p in openpose_people(pose, "BODY_25")]
        with open(os.path.join(folder, f"f_{t:06d}_keypoints.json"), "w") as f:
            json.dump({"people": listed}, f)


def test_the_tracker_keeps_the_mover_and_says_whom_it_followed(tmp_path, motion, capsys):
    """B shows the mover and a still bystander 700 px to the right; the mover is missed in
    frames 10-14 and 60-61 (the old tracker jumped to the bystander there and kept them)."""
    mover = motion[:200]
    still = np.repeat(motion[:1], 200, axis=0).copy()
    still[..., 0] += 700 * (still[..., 2] > 0)
    frames_b = [[] if t in (10, 11, 12, 13, 14, 60, 61) else [mover[t]] for t in range(200)]
    frames_b = [people + [still[t]] for t, people in enumerate(frames_b)]
    write_openpose(tmp_path / "b", frames_b)
    write_openpose(tmp_path / "a", [[p] for p in motion[9:180]])
    rec = readers.read_recording(str(tmp_path / "b"))
    assert rec.followed is not None and rec.followed.persons == 2
    assert not rec.poses[10:15].any() and not rec.poses[60:62].any()
    np.testing.assert_allclose(rec.poses[100], mover[100], atol=1e-3)
    code, r = run_json(capsys, [tmp_path / "a", tmp_path / "b", "--fps", "30"])
    assert code == 0 and r["offset_frames"] == pytest.approx(9, abs=0.2)
    assert r["recordings"][1]["followed"]["persons"] == 2
    code, out, _ = run(capsys, [tmp_path / "a", tmp_path / "b", "--fps", "30"])
    assert "2 people tracked; followed person" in out


def test_tracks_continue_through_gaps_and_never_jump_far():
    """Unit: a person 'a' walking right 10 px per frame, missed for 5 frames, keeps their track;
    a second person 'b' appearing at the far side gets their own; a detection after a gap
    longer than MAX_GAP starts a new track."""

    def person(x):
        p = np.zeros((17, 3), np.float32)
        p[:, 0] = x + np.arange(17) * 3
        p[:, 1] = 100 + np.arange(17) * 10  # a box of 48 x 160 px
        p[:, 2] = 0.9
        return p

    frames = [np.stack([person(10 * t)]) for t in range(20)]
    for t in range(8, 13):
        frames[t] = np.zeros((0, 17, 3), np.float32)
    frames[15] = np.stack([person(150), person(900)])
    tracks = tracking.track_all(frames)
    assert tracks.shape == (2, 20, 17, 3)
    np.testing.assert_allclose(tracks[0, 13:, 0, 0], [130, 140, 150, 160, 170, 180, 190])
    assert (tracks[1, :, 0, 2] > 0).sum() == 1 and tracks[1, 15, 0, 0] == 900
    late = frames[:5] + [np.zeros((0, 17, 3), np.float32)] * (tracking.MAX_GAP + 2) + frames[5:6]
    assert len(tracking.track_all(late)) == 2


def coco(tmp_path, name, dets):
    path = tmp_path / name
    path.write_text(json.dumps(dets))
    return path


def test_coco_frame_numbers_come_from_the_image_ids(tmp_path, motion, capsys):
    """String ids ordered as numbers, missing ids as frames without a person: a file with
    gaps gives the complete file's offset."""

    def det(image_id, pose):
        return {"image_id": image_id, "category_id": 1, "keypoints": pose.ravel().tolist()}

    b = motion[17:190]
    full = [det(f"frame_{t}.jpg", p) for t, p in enumerate(b)]
    gaps = [d for t, d in enumerate(full) if t not in (3, 50, 51, 52, 120)]
    rec = readers.read_recording(str(coco(tmp_path, "gaps.json", gaps)))
    assert len(rec.poses) == 173 and not rec.poses[50].any()
    np.testing.assert_allclose(rec.poses[10], b[10], atol=1e-3)  # frame_10 after frame_9
    np.save(tmp_path / "a.npy", motion[10:170])
    for name, dets in (("full.json", full), ("gaps.json", gaps)):
        args = [tmp_path / "a.npy", coco(tmp_path, name, dets), "--fps", "30"]
        code, r = run_json(capsys, args)
        assert code == 0 and r["offset_frames"] == pytest.approx(-7, abs=0.2)
    numbers = [det(str(t), p) for t, p in enumerate(b[:40])]  # "0", "1", ...: numbers
    rec = readers.read_recording(str(coco(tmp_path, "n.json", numbers[::-1])))
    np.testing.assert_allclose(rec.poses[:, 0], b[:40, 0], atol=1e-3)


@pytest.mark.parametrize(
    "ids, message",
    [
        (["left.jpg", "right.jpg"], "must be a frame number"),
        (["a_1.jpg", "b_1.jpg"], "both name frame 1"),
        ([397133, 5], "not frame numbers"),
        ([-1, 0], "must be a frame number"),
    ],
)
def test_coco_ids_that_are_not_frame_numbers_are_refused(tmp_path, motion, capsys, ids, message):
    dets = [{"image_id": i, "keypoints": motion[k].ravel().tolist()} for k, i in enumerate(ids)]
    path = coco(tmp_path, "bad.json", dets)
    np.save(tmp_path / "a.npy", motion[:100])
    code, r = run_json(capsys, [tmp_path / "a.npy", path, "--method", "speed"])
    assert code == 2 and r["status"] == "error" and message in r["reason"]
    assert str(path) in r["reason"] and "image_id" in r["reason"]


# ----------------------------------------------------------------------------- failures


@pytest.fixture
def pair(tmp_path, motion):
    np.save(tmp_path / "a.npy", motion[10:170])
    np.save(tmp_path / "b.npy", motion[17:190])
    return [tmp_path / "a.npy", tmp_path / "b.npy", "--fps", "30"]


def one_line(text):
    return text.count("\n") == 1 and "Traceback" not in text


def test_a_recording_given_twice(tmp_path, pair, capsys):
    os.symlink(pair[0], tmp_path / "link.npy")
    for args, message in (
        ([pair[0], pair[0], pair[1]], "a.npy is given twice (recordings 1 and 2)"),
        ([pair[0], pair[1], tmp_path / "link.npy"], "are the same file (recordings 1 and 3)"),
    ):
        code, out, err = run(capsys, args)
        assert code == 2 and message in err and one_line(err) and not out
        code, r = run_json(capsys, args)
        assert code == 2 and message in r["reason"]


def test_implausible_frame_rates_and_memory(tmp_path, pair, motion, capsys, monkeypatch):
    code, out, err = run(capsys, pair[:2] + ["--fps", "0.01"])
    assert code == 2 and "--fps: 0.01 fps is not a plausible camera frame rate" in err
    assert one_line(err)
    np.savez(tmp_path / "slow.npz", poses=motion[:100], fps=0.01)
    code, r = run_json(capsys, [pair[0], tmp_path / "slow.npz"])
    assert code == 2 and "slow.npz: field 'fps': 0.01 fps is not a plausible" in r["reason"]
    # 2 fps: 160 + 173 frames become 2,400 + 2,595 at 30 fps; the memory needed is counted
    # before any work and compared with what is available
    monkeypatch.setattr(recordings, "available_memory", lambda: 0.4e9)
    code, r = run_json(capsys, pair[:2] + ["--fps", "2"])
    frames = (159 * 15 + 1) + (172 * 15 + 1)
    need = (recordings.BASE_BYTES + frames * (8 * 17 * 64 + recordings.SEARCH_BYTES)) / 1e9
    assert code == 3 and r["status"] == "refused"
    assert f"make {frames} frames" in r["reason"] and f"about {need:.1f} GB" in r["reason"]


def test_plot_into_a_folder_it_cannot_write(tmp_path, pair, capsys, monkeypatch):
    """Checked before any work (a missing recording is not reached), on a read-only file
    system as in an unwritable folder."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", read_only)
    args = [pair[0], tmp_path / "missing.npy", "--plot", tmp_path / "p.png"]
    code, out, err = run(capsys, args)
    assert code == 2 and one_line(err) and "--plot" in err and "Read-only file system" in err
    code, r = run_json(capsys, args)
    assert code == 2 and str(tmp_path) in r["reason"]


def test_plot_that_fails_after_the_work_keeps_the_result(tmp_path, pair, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "plot_pair", disk_full)
    args = pair + ["--plot", tmp_path / "p.png"]
    code, out, err = run(capsys, args)
    assert code == 2 and one_line(err) and "No space left on device" in err
    found = re.search(r"= (-?[0-9.]+) frames of A", out)  # the result is printed all the same
    assert found and float(found.group(1)) == pytest.approx(-7, abs=0.2)
    code, r = run_json(capsys, args)
    assert code == 2 and r["status"] == "error" and "--plot" in r["reason"]
    assert r["offset_frames"] == pytest.approx(-7, abs=0.2)
    assert not os.path.exists(tmp_path / "p.png")


def test_ctrl_c(pair, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "read_all", interrupted)
    code, out, err = run(capsys, pair)
    assert code == 130 and one_line(err) and "interrupted" in err and not out
    code, r = run_json(capsys, pair)
    assert code == 130 and r["status"] == "interrupted"


def command(*args):
    return [sys.executable, "-m", "sesyn_jax.sync", *map(str, args)]


def env():
    return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")


def test_ctrl_c_in_a_real_process(tmp_path, motion):
    """SIGINT while the network runs: exit 130 and one line, no traceback."""
    long = np.concatenate([motion, motion[::-1]] * 25)  # 20,000 frames
    np.save(tmp_path / "a.npy", long)
    np.save(tmp_path / "b.npy", long[7:])
    proc = subprocess.Popen(
        command(tmp_path / "a.npy", tmp_path / "b.npy", "--fps", "30", "--progress"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        text=True,
    )
    seen = ""
    while "embedding" not in seen and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (Ctrl-C)" in err


@pytest.mark.parametrize("case", ["closed pipe", "full disk"])
def test_output_that_cannot_be_written(pair, case):
    if case == "full disk" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    for args in (pair + ["--method", "speed"], ["--help"]):
        if case == "closed pipe":
            read, write = os.pipe()
            os.close(read)
            proc = subprocess.run(
                command(*args), stdout=write, stderr=subprocess.PIPE, env=env(), text=True
            )
            os.close(write)
        else:
            with open("/dev/full", "w") as full:
                proc = subprocess.run(
                    command(*args), stdout=full, stderr=subprocess.PIPE, env=env(), text=True
                )
        assert proc.returncode == 2 and one_line(proc.stderr), proc.stderr
        assert "standard output" in proc.stderr


def test_unreadable_folder_and_deeply_nested_json(tmp_path, pair, motion, capsys, monkeypatch):
    write_openpose(tmp_path / "op", [[p] for p in motion[:60]])
    listdir = os.listdir

    def denied(path):
        if str(path) == str(tmp_path / "op"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return listdir(path)

    monkeypatch.setattr(readers.os, "listdir", denied)
    code, out, err = run(capsys, [pair[0], tmp_path / "op"])
    assert code == 2 and one_line(err) and f"{tmp_path / 'op'}: cannot read the folder" in err
    monkeypatch.undo()
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "op" / "f_000007_keypoints.json").write_text('{"people": ' + deep + "}")
    for bad in (tmp_path / "deep.json", tmp_path / "op"):
        code, r = run_json(capsys, [pair[0], bad])
        assert code == 2 and "JSON nested too deeply" in r["reason"]
        code, out, err = run(capsys, [pair[0], bad])
        assert code == 2 and one_line(err) and "Traceback" not in err


@pytest.mark.parametrize(
    "learned, speed, chosen",
    [
        (0.47, 0.48, "learned"),  # both unsure: the learned answer stays (was: speed)
        (0.47, 0.50, "speed"),  # an unsure learned answer gives way to a sure speed answer
        (0.60, 0.90, "learned"),  # a sure learned answer always stays
    ],
)
def test_auto_takes_speed_only_when_it_is_sure(monkeypatch, learned, speed, chosen):
    from sesyn_jax.sync import search

    def fake(method, offset, confidence):
        return lambda *a, **k: search.Search(method, offset, confidence, np.zeros(1), np.zeros(1))

    monkeypatch.setattr(search, "learned_search", fake("learned", 3.0, learned))
    monkeypatch.setattr(search, "speed_search", fake("speed", -9.0, speed))
    poses = (np.zeros((200, 17, 3)), np.zeros((200, 17, 3)))
    r = search.match_pair((None, None), poses, ("a", "b"), "auto", inner_radius=24)
    assert r.method == chosen and r.offset == (3.0 if chosen == "learned" else -9.0)
    assert r.confidence == (learned if chosen == "learned" else speed)


@pytest.mark.parametrize("fails", [("learned",), ("speed",), ("learned", "speed")])
def test_auto_answers_with_the_search_that_did_not_fail(monkeypatch, fails):
    """auto: one method finding no offset (the speed correlation needs two consecutive frames
    with a seen joint; a person seen every third frame has none) leaves the other's answer,
    with a note; the method named alone, or both failing, still refuses."""
    from sesyn_jax.sync import search

    def fake(method, offset):
        def run(*a, **k):
            if method in fails:
                raise search.CannotSync(f"{method} cannot")
            return search.Search(method, offset, 0.8, np.zeros(1), np.zeros(1))

        return run

    monkeypatch.setattr(search, "learned_search", fake("learned", 3.0))
    monkeypatch.setattr(search, "speed_search", fake("speed", -9.0))
    poses = (np.zeros((200, 17, 3)), np.zeros((200, 17, 3)))

    def match(method):
        return search.match_pair((None, None), poses, ("a", "b"), method, inner_radius=24)

    for m in fails:
        with pytest.raises(search.CannotSync, match=f"^{m} cannot$"):
            match(m)
    if len(fails) == 2:
        with pytest.raises(search.CannotSync, match="^learned cannot; speed cannot$"):
            match("auto")
        return
    r = match("auto")
    answers = "speed" if fails == ("learned",) else "learned"
    assert r.method == answers and r.offset == (3.0 if answers == "learned" else -9.0)
    assert list(r.searches) == [answers]
    assert any(f"the {fails[0]} search found no offset ({fails[0]} cannot)" in n for n in r.notes)


# ----------------------------------------------------------------------------- few frames seen


def test_motion_is_measured_over_the_frames_with_the_person(cam30):
    """Empty frames before or after a person do not change how much they move (a person seen
    in a fifth of the frames scored 0: only joints seen in 30 % of ALL frames counted)."""
    empty = np.zeros((4 * len(cam30), 17, 3), np.float32)
    level = tracking.motion_level(cam30)
    assert level > 5 * tracking.MOVING
    for padded in (np.concatenate([empty, cam30]), np.concatenate([cam30, empty])):
        assert tracking.motion_level(padded) == pytest.approx(level, rel=1e-6)


@pytest.mark.parametrize("all_persons", [False, True])
def test_a_person_seen_in_few_frames_is_synchronized(tmp_path, examples, capsys, all_persons):
    """The 30 fps example renumbered from frame 1500 (50 s of frames without anyone first):
    the moment at time t of it is at t - 50 s of the original, so B = A - 50 s + truth."""
    folder, truth = examples
    late = tmp_path / "late"
    late.mkdir()
    for i, name in enumerate(sorted(os.listdir(folder / "cam_30fps"))):
        data = (folder / "cam_30fps" / name).read_text()
        (late / f"cam_{1500 + i:012d}_keypoints.json").write_text(data)
    args = [late, folder / "cam_60fps", "--fps", "30,60"]
    code, r = run_json(capsys, args + (["--all-persons"] if all_persons else []))
    assert code == 0, r
    assert r["offset_seconds"] == pytest.approx(truth - 50, abs=0.05)


@pytest.mark.parametrize("model", [[], ["--openpose-model", "BODY_25"]])
def test_an_openpose_folder_with_nobody_is_refused(tmp_path, pair, capsys, model):
    """Every frame file {"people": []}: nobody to synchronize (exit 3), whatever the model
    (auto used to ask for --openpose-model, exit 2)."""
    write_openpose(tmp_path / "empty", [[] for _ in range(100)])
    code, r = run_json(capsys, [pair[0], tmp_path / "empty", "--fps", "30"] + model)
    assert code == 3 and r["status"] == "refused"
    assert r["reason"] == f"{tmp_path / 'empty'}: no person detected in any frame"


def test_abbreviated_flags_are_refused(pair, capsys):
    """--js was taken for --json by argparse while the output stayed text; flags are now
    spelled out (exit 2), and a flag error after --json is still JSON."""
    code, out, err = run(capsys, pair + ["--js"])
    assert code == 2 and not out and "unrecognized arguments: --js" in err and one_line(err)
    code, r = run_json(capsys, pair + ["--max-off", "3"])
    assert code == 2 and r["status"] == "error" and "--max-off" in r["reason"]


@pytest.mark.parametrize("flag", ["--write-synced", "--plot", "--resolution", "--checkpoint"])
def test_an_empty_flag_value_is_an_error(pair, capsys, flag):
    """--write-synced "" and --plot "" were ignored (exit 0, nothing written)."""
    code, r = run_json(capsys, pair + [flag, ""])
    assert (
        code == 2
        and r["reason"] == f"{flag} was given an empty value; give {flag} a name or leave it out"
    )
    code, out, err = run(capsys, pair + [flag, " "])
    assert code == 2 and not out and one_line(err) and flag in err


@pytest.mark.parametrize(
    "seconds, frames, note",
    [
        (0.01, 1, "--max-offset 0.01 s rounded up to 1 frame of the model's 30 fps (0.03333 s)"),
        (1.01, 31, "--max-offset 1.01 s rounded up to 31 frames of the model's 30 fps (1.033 s)"),
        (2.5, 75, None),
    ],
)
def test_max_offset_rounding_is_said(seconds, frames, note):
    notes = []
    assert cli.max_offset_frames(seconds, 30.0, notes) == frames
    assert notes == ([note] if note else [])


def test_reader_notes_reach_the_output(tmp_path, motion, capsys):
    """NaN joints of a .npy and an .npz fps overridden by --fps are said in the notes."""
    a = motion[10:170].copy()
    a[50:60] = np.nan
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", poses=motion[17:190], fps=60.0)
    code, r = run_json(capsys, [tmp_path / "a.npy", tmp_path / "b.npz", "--fps", "30"])
    assert code == 0 and r["recordings"][1]["fps"] == 30.0
    assert any(
        "170 joints with NaN values (first at frame 50, joint 0 (nose))" in n for n in r["notes"]
    )
    assert any("the file says 60 fps; using the 30 fps given" in n for n in r["notes"])


def test_coco_ids_from_one_are_noted_not_guessed(tmp_path, motion):
    dets = [
        {"image_id": f"frame_{t:06d}.jpg", "keypoints": p.ravel().tolist()}
        for t, p in enumerate(motion[:40], 1)
    ]
    rec = readers.read_recording(str(coco(tmp_path, "one.json", dets)))
    assert len(rec.poses) == 41 and not rec.poses[0].any()  # id k is frame k: not shifted
    np.testing.assert_allclose(rec.poses[1:], motion[:40], atol=1e-3)
    assert len(rec.notes) == 1 and "the image ids start at 1 (no id is 0)" in rec.notes[0]
    rec = readers.read_recording(
        str(coco(tmp_path, "zero.json", dets + [dict(dets[0], image_id="frame_000000.jpg")]))
    )
    assert rec.notes == []


def test_one_frame_is_singular():
    poses = np.zeros((100, 17, 3), np.float32)
    poses[7, :, 2] = 1
    with pytest.raises(recordings.CannotSync, match=r"a person is seen in only 1 frame; at least"):
        recordings.check_recording(poses, "x")
