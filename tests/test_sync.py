"""The sync tool: formats, frame rates, chunked embeddings, methods, N views, several persons,
OpenPose folders as real detectors write them, and every bad input answered with exit 2 or 3."""

import json
import math
import os
import re

import jax
import numpy as np
import pytest

from sesyn_jax import sync
from sesyn_jax.sync.output import finite
from sesyn_jax.data import cameras, mocap_syn, readers
from sesyn_jax.data.example_recordings import make_examples, openpose_people
from sesyn_jax.data.resample import resample
from sesyn_jax.data.syn_json import PoseFormatError, write_syn_view
from sesyn_jax.model import STGCNEmbedding, init_variables

STATIC = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "real_openpose_static"
)


@pytest.fixture(scope="module")
def ckpt():
    """The shipped model: what users get without --checkpoint."""
    return "default"


def other_motion(frames):
    """Another clip's motion (boxing) seen by another camera."""
    clip = next(c for c in mocap_syn.load_embedded() if c.name == "cmu_Boxing_Toes")
    rng = np.random.default_rng(5)
    joints = clip.joints[:frames].astype(np.float64)
    cam, _, _ = cameras.sample_camera_pair(rng, joints)
    return cameras.detect(rng, cam, joints)


def run(capsys, args):
    code = sync.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


def run_json(capsys, args):
    code, out = run(capsys, list(args) + ["--json"])
    return code, json.loads(out)


def test_two_views_every_method(tmp_path, ckpt, motion, capsys):
    a, b = motion[10:130], motion[17:150]  # the moment at frame m of a is at m - 7 of b
    np.save(tmp_path / "a.npy", a)
    write_syn_view(str(tmp_path / "b.json"), b, 0, (1920, 1080))
    files = [tmp_path / "a.npy", tmp_path / "b.json", "--checkpoint", ckpt, "--fps", "30"]
    for method in ("learned", "speed", "auto"):
        code, r = run_json(capsys, files + ["--method", method])
        assert code == 0 and r["status"] == "ok"
        assert r["offset_frames"] == pytest.approx(-7, abs=0.15), method
        assert r["offset_seconds"] == pytest.approx(-7 / 30, abs=2e-3)
        assert set(r["searches"]) == ({"learned", "speed"} if method == "auto" else {method})
    assert r["confidence"] > 0.5
    code, out = run(
        capsys,
        [tmp_path / "a.npy", tmp_path / "b.json", "--fps", "30", "--plot", tmp_path / "p.png"],
    )
    assert code == 0 and re.search(r"a.npy started 0\.23\d s before .*b.json", out)
    assert re.search(r"-7\.\d\d frames of A \(30 fps\)", out)
    assert os.path.getsize(tmp_path / "p.png") > 10_000


def test_recordings_at_different_frame_rates(tmp_path, ckpt, motion, capsys):
    """A at 30 fps from frame 10, B at 60 fps from 30-fps frame 17: the moment at time t of A is
    at t - 7/30 s of B, -7 frames of A and -14 frames of B."""
    fine = resample(motion, 30, 60)
    np.save(tmp_path / "a.npy", motion[10:200])
    np.savez(tmp_path / "b.npz", poses=fine[34:420], fps=60.0)
    code, r = run_json(capsys, [tmp_path / "a.npy", tmp_path / "b.npz", "--checkpoint", ckpt])
    assert code == 0
    assert r["offset_seconds"] == pytest.approx(-7 / 30, abs=0.01)
    assert r["offset_frames_a"] == pytest.approx(-7, abs=0.3)
    assert r["offset_frames_b"] == pytest.approx(-14, abs=0.6)
    assert [x["fps"] for x in r["recordings"]] == [30.0, 60.0]  # A assumed, B from its file
    assert any("assuming 30 fps" in n for n in r["notes"])
    np.save(tmp_path / "b.npy", fine[34:420])
    code, r2 = run_json(
        capsys, [tmp_path / "a.npy", tmp_path / "b.npy", "--checkpoint", ckpt, "--fps", "30,60"]
    )
    assert code == 0 and r2["offset_seconds"] == r["offset_seconds"] and not r2["notes"]


def test_resample_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 100, (11, 17, 3)).astype(np.float32)
    x[..., 2] = rng.uniform(0.1, 1, (11, 17))
    x[4, 3] = 0.0  # joint 3 missing in frame 4
    out = resample(x, 30, 45)
    assert out.shape == (16, 17, 3)  # floor(10 * 45 / 30) + 1
    p = np.arange(16) * 30 / 45
    for j in (0, 9):
        for c in (0, 1):
            np.testing.assert_allclose(out[:, j, c], np.interp(p, np.arange(11), x[:, j, c]), 1e-5)
    nearest = np.rint(p - 1e-9).astype(int)  # ties go to the later frame: 0.5 -> 1
    nearest = np.where(p - np.floor(p) < 0.5, np.floor(p), np.floor(p) + 1).astype(int)
    np.testing.assert_array_equal(out[:, 5, 2], x[nearest, 5, 2])
    # between frames 3 and 5 joint 3 is missing on one side: the nearest frame's values
    k = np.flatnonzero((p > 3) & (p < 5))
    np.testing.assert_array_equal(out[k, 3], x[nearest[k], 3])
    np.testing.assert_array_equal(resample(x, 30, 30), x)


@pytest.mark.parametrize("padding", ["zero", "edge"])
def test_chunked_embedding_equals_the_whole_sequence(motion, padding):
    from sesyn_jax.data.normalization import normalize

    model = STGCNEmbedding(widths=(8, 8, 8), kernel_size=5, padding=padding)
    variables = init_variables(model, jax.random.PRNGKey(1))
    x = normalize(motion, "person")
    whole = np.asarray(model.apply(variables, x[None]))[0]
    chunked = sync.embed(model, variables, x, chunk=50)  # 8 chunks with 6 frames of context
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)


def test_three_views_and_an_unrelated_one(tmp_path, ckpt, motion, capsys):
    for name, start in (("v0", 30), ("v1", 42), ("v2", 21)):
        np.save(tmp_path / f"{name}.npy", motion[start : start + 200])
    views = [tmp_path / f"v{i}.npy" for i in range(3)]
    code, r = run_json(capsys, views + ["--checkpoint", ckpt, "--fps", "30"])
    assert code == 0
    np.testing.assert_allclose([v["offset_frames"] for v in r["views"]], [0, -12, 9], atol=0.1)
    assert all(abs(p["residual_frames"]) < 0.5 for p in r["pairs"])
    assert not [n for n in r["notes"] if "warning" in n]
    other = other_motion(200)
    np.save(tmp_path / "other.npy", other)
    code, r = run_json(capsys, views + [tmp_path / "other.npy", "--checkpoint", ckpt])
    assert code == 0
    warnings = [n for n in r["notes"] if n.startswith("warning")]
    assert len(warnings) == 1 and "other.npy" in warnings[0]
    np.testing.assert_allclose([v["offset_frames"] for v in r["views"][:3]], [0, -12, 9], atol=0.5)


def test_fit_offsets_rejects_an_outlier_pair_and_needs_every_view():
    pairs = [
        (0, 1, 5, 1.0),
        (0, 2, 9, 1.0),
        (1, 2, 4, 1.0),
        (0, 3, -2, 1.0),
        (1, 3, -7, 1.0),
        (2, 3, 20, 0.9),
    ]  # the last pair is wrong (should be -11)
    t, res = sync.fit_offsets(4, pairs)
    np.testing.assert_allclose(np.round(t), [0, 5, 9, -2])
    assert abs(res[-1]) > 20 and np.all(np.abs(res[:-1]) < 1.5)
    with pytest.raises(sync.CannotSync, match=r"recordings \[3\]"):
        sync.fit_offsets(4, pairs[:3])


def several_persons(motion):
    other = motion[::-1].copy()  # a second person doing something else
    other[..., 0] += 600 * (other[..., 2] > 0)
    return other


def test_several_persons_two_and_three_recordings(tmp_path, ckpt, motion, capsys):
    other = several_persons(motion)
    a = np.stack([other[20:160], motion[20:160]])  # (2, T, 17, 3), persons swapped
    b = np.stack([motion[25:190], other[25:190]])  # the moment at frame m of a is at m - 5 of b
    c = np.stack([motion[11:170], other[11:170]])  # ... and at m + 9 of c
    for n, x in (("a", a), ("b", b), ("c", c)):
        np.save(tmp_path / f"{n}.npy", x)
    args = ["--checkpoint", ckpt, "--all-persons", "--fps", "30"]
    code, r = run_json(capsys, [tmp_path / "a.npy", tmp_path / "b.npy"] + args)
    assert code == 0 and r["offset_frames"] == pytest.approx(-5, abs=0.1)
    matched = {(p["a"].split("#")[1], p["b"].split("#")[1]) for p in r["persons"]}
    assert matched == {("0", "1"), ("1", "0")}
    code, r = run_json(capsys, [tmp_path / f"{n}.npy" for n in "abc"] + args)
    assert code == 0
    np.testing.assert_allclose([v["offset_frames"] for v in r["views"]], [0, -5, 9], atol=0.2)
    fused, agree = sync.fuse_persons(
        [
            sync.PairResult("a", "b", o, c, "learned", {})
            for o, c in [(4, 0.9), (5, 0.8), (30, 0.3), (4, 0.7)]
        ]
    )
    # share of the confidence that agrees (0.9 + 0.8 + 0.7 of 2.7) x their mean confidence
    assert fused == 4 and agree == pytest.approx(2.4 / 2.7 * 0.8)
    one = sync.fuse_persons([sync.PairResult("a", "b", -7.0, 0.807, "learned", {})])
    assert one == (-7.0, pytest.approx(0.807))  # one matched pair: its own confidence


def test_syn_json_views_are_cut_by_category_id(tmp_path, random_export, motion, capsys):
    """Two SYN JSON views of one synchronous window, cut by category_id 9 and 2: the offset is
    category_id(A) - category_id(B) = 7, as the published pipeline defines it."""
    write_syn_view(str(tmp_path / "w_C001.json"), motion[:140], 9, (1920, 1080))
    write_syn_view(str(tmp_path / "w_C002.json"), motion[:140], 2, (1920, 1080))
    code, r = run_json(
        capsys, [tmp_path / "w_C001.json", tmp_path / "w_C002.json", "--checkpoint", random_export]
    )
    assert code == 0 and r["offset_frames"] == pytest.approx(7, abs=0.15)


# ----------------------------------------------------------------------------- OpenPose


def write_openpose(folder, frames, model="BODY_25", name="vid_{:d}_keypoints.json"):
    """frames: (T, 17, 3) pixels -> one OpenPose file per frame (25 keypoints)."""
    os.makedirs(folder, exist_ok=True)
    for t, f in enumerate(frames):
        with open(os.path.join(folder, name.format(t)), "w") as fh:
            json.dump({"version": 1.3, "people": openpose_people(f, model)}, fh)


def test_openpose_files_numbered_from_a_later_frame(tmp_path, motion):
    """File numbers are the video's frame indices: a folder starting at frame 40 reads 40
    frames without a person first, and says so; one starting at frame 20000 (OpenPose's
    --frame_first) is refused with what to do."""
    from sesyn_jax.data.readers import read_recording

    write_openpose(tmp_path / "late", motion[:60], name="vid_{:d}_keypoints.json")
    for k in reversed(range(60)):
        os.rename(
            tmp_path / "late" / f"vid_{k}_keypoints.json",
            tmp_path / "late" / f"vid_{k + 40}_keypoints.json",
        )
    rec = read_recording(str(tmp_path / "late"))
    assert len(rec.poses) == 100 and not rec.poses[:40, :, 2].any() and rec.poses[40:, :, 2].any()
    assert any("the first file is frame 40; frames 0 to 39" in n for n in rec.notes)
    write_openpose(tmp_path / "far", motion[:60], name="vid_{:d}_keypoints.json")
    for k in reversed(range(60)):
        os.rename(
            tmp_path / "far" / f"vid_{k}_keypoints.json",
            tmp_path / "far" / f"vid_{k + 20000}_keypoints.json",
        )
    with pytest.raises(PoseFormatError, match="frames 20000 to 20059.*--frame_first"):
        read_recording(str(tmp_path / "far"))


def test_example_recordings_at_30_and_60_fps(tmp_path, capsys):
    """The README's example: two OpenPose folders (BODY_25 landscape 30 fps, BODY_25B portrait
    60 fps) of a held-out clip, synchronized by the shipped model to a hundredth of a second."""
    truth = make_examples(str(tmp_path))
    a, b = tmp_path / "cam_30fps", tmp_path / "cam_60fps"
    code, r = run_json(capsys, [a, b, "--fps", "30,60", "--plot", tmp_path / "s.png"])
    assert code == 0 and r["confidence"] > 0.6
    assert [x["keypoint_model"] for x in r["recordings"]] == ["BODY_25", "BODY_25B"]
    assert r["offset_seconds"] == pytest.approx(truth["offset_seconds"], abs=0.02)
    assert r["offset_frames_b"] == pytest.approx(2 * r["offset_frames_a"], abs=0.02)


def test_openpose_body25_and_body25b_told_apart(tmp_path, motion):
    write_openpose(tmp_path / "b25", motion[:40], "BODY_25")
    write_openpose(tmp_path / "b25b", motion[:40], "BODY_25B")
    for name, model in (("b25", "BODY_25"), ("b25b", "BODY_25B")):
        rec = readers.read_recording(str(tmp_path / name))
        assert rec.keypoint_model == model
        np.testing.assert_allclose(rec.poses, motion[:40], atol=1e-3)
    # keypoints 5 and 9 never seen (a shoulder, a wrist): neither midpoint test applies
    blind = motion[:40].copy()
    blind[:, [5, 9]] = 0
    write_openpose(tmp_path / "blind", blind, "BODY_25B")
    with pytest.raises(readers.PoseFormatError, match="BODY_25 or BODY_25B"):
        readers.read_recording(str(tmp_path / "blind"))
    assert readers.read_recording(str(tmp_path / "blind"), openpose_model="BODY_25B").poses.any()


def test_openpose_folders_as_detectors_write_them(tmp_path, ckpt, motion, capsys):
    """Empty keypoint lists, "people": null, a sub-folder named like a frame, numbers ordered
    as numbers, and gaps: the folder with gaps gives the complete folder's offset."""
    a = tmp_path / "a"
    write_openpose(a, motion[10:170], name="cam_{:d}_keypoints.json")  # cam_2 before cam_10
    full = tmp_path / "b_full"
    write_openpose(full, motion[17:190], name="cam_{:d}_keypoints.json")
    gaps = tmp_path / "b_gaps"
    write_openpose(gaps, motion[17:190], name="cam_{:d}_keypoints.json")
    for t in (3, 50, 51, 52, 120):
        os.remove(gaps / f"cam_{t}_keypoints.json")
    (gaps / "cam_200_keypoints.json").mkdir()  # a folder named like a frame: skipped
    with open(gaps / "cam_60_keypoints.json", "w") as f:  # a person without body keypoints
        json.dump(
            {
                "people": [
                    {"pose_keypoints_2d": []},
                    json.load(open(full / "cam_60_keypoints.json"))["people"][0],
                ]
            },
            f,
        )
    with open(gaps / "cam_61_keypoints.json", "w") as f:
        json.dump({"people": None}, f)
    rec = readers.read_recording(str(gaps))
    assert len(rec.poses) == 173 and not rec.poses[50].any() and not rec.poses[61].any()
    np.testing.assert_allclose(rec.poses[60], motion[77], atol=1e-3)
    offsets = []
    for b in (full, gaps):
        code, r = run_json(capsys, [a, b, "--checkpoint", ckpt, "--fps", "30"])
        assert code == 0
        offsets.append(r["offset_frames"])
    assert offsets[0] == pytest.approx(-7, abs=0.15) and offsets[1] == pytest.approx(-7, abs=0.2)


@pytest.mark.skipif(not os.path.isdir(STATIC), reason="../shared/data is not beside the repo")
def test_real_openpose_static_recordings(capsys):
    """Real Pose2Sim output: BODY_25B recognized; 12 still frames are refused, saying why."""
    cam = os.path.join(STATIC, "S00_P01_T00_StaticTrialParticipant1", "cam{:02d}_json")
    rec = readers.read_recording(cam.format(1))
    assert rec.keypoint_model == "BODY_25B" and rec.poses.shape == (12, 17, 3)
    # portrait 1088 x 1920: the person spans more rows than an image of 1088 rows would hold
    seen = rec.poses[..., 2] > 0
    assert rec.poses[..., 0][seen].max() < 1.05 * 1088 and rec.poses[..., 1][seen].max() > 1088
    code, r = run_json(capsys, [cam.format(1), cam.format(2), "--fps", "60"])
    assert (
        code == 3
        and r["status"] == "refused"
        and "only 6 frames at the model's 30 fps" in r["reason"]
    )


# ----------------------------------------------------------------------------- bad input


def syn_file(tmp_path, motion, edit):
    path = tmp_path / "bad.json"
    write_syn_view(str(path), motion[:60], 0, (1920, 1080))
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def kp(i):
    return lambda d: d["annotations"][0].update(keypoints=i)


SYN_CASES = [
    (kp({"x": 1}), "keypoints' must be a list"),
    (kp([["1", "2", "0.5"]] * 17), "keypoints' must be a list"),
    (kp([[1, 2, 3]] * 16 + [[1, 2]]), "keypoints' must be a list"),
    (lambda d: d["annotations"][0].update(person_id="0"), "person_id' must be"),
    (lambda d: d["info"].update(num_frame=True), "num_frame' must be"),
    (lambda d: d["info"].update(num_frame=10**30), "not a plausible recording"),
    (lambda d: d["annotations"][0].update(frame_index=60), "frame_index' must be"),
    (lambda d: d["annotations"][1].update(frame_index=0), "appears twice"),
    (lambda d: d["info"].update(resolution=[0.5, 0.5]), "resolution' must be"),
    (lambda d: d["info"].update(fps=0), "info.fps' must be"),
]


@pytest.mark.parametrize("edit, message", SYN_CASES)
def test_bad_syn_json(tmp_path, ckpt, motion, capsys, edit, message):
    np.save(tmp_path / "ok.npy", motion[:100])
    bad = syn_file(tmp_path, motion, edit)
    code, out = run(capsys, [tmp_path / "ok.npy", bad, "--checkpoint", ckpt])
    assert code == 2 and str(bad) in out and message in out, out
    code, r = run_json(capsys, [tmp_path / "ok.npy", bad, "--checkpoint", ckpt])
    assert code == 2 and r["status"] == "error" and message in r["reason"]


def write_bad(tmp_path, motion, kind):
    """A bad recording of one kind -> its path."""
    if kind == "empty npy file":
        p = tmp_path / "x.npy"
        p.write_bytes(b"")
    elif kind == "string array":
        p = tmp_path / "x.npy"
        np.save(p, np.array([["a"] * 3] * 17)[None].repeat(5, 0))
    elif kind == "no person":
        p = tmp_path / "x.npy"
        np.save(p, np.zeros((0, 50, 17, 3), np.float32))
    elif kind in ("npz scalar resolution", "npz zero resolution"):
        p = tmp_path / "x.npz"
        res = 1920 if "scalar" in kind else [0, 0]
        np.savez(p, poses=motion[:50], resolution=res)
    elif kind.startswith("absurd"):
        p = tmp_path / "x.npz"
        big = motion[:50].copy()
        big[..., :2] *= float(kind.split()[-1])
        np.savez(p, poses=big, resolution=[1920, 1080])
    elif kind in ("npz damaged", "npz cut short"):
        p = tmp_path / "x.npz"
        np.savez_compressed(p, poses=motion[:50])
        data = bytearray(p.read_bytes())
        if kind == "npz cut short":
            data = data[: len(data) // 2]
        else:  # flip bytes inside the compressed stream
            data[200:400] = bytes(b ^ 0xFF for b in data[200:400])
        p.write_bytes(bytes(data))
    elif kind == "random bytes npy":
        p = tmp_path / "x.npy"
        p.write_bytes(os.urandom(512).replace(b"\x93NUMPY", b"").replace(b"PK", b"QK"))
    elif kind in ("coco id of 5000 digits", "coco number of 5000 digits"):
        p = tmp_path / "x.json"
        dets = [{"image_id": k, "keypoints": [50.0, 50.0, 1.0] * 17} for k in range(30)]
        dets[3]["image_id"] = "frame_" + "1" * 5000
        text = json.dumps(dets)
        if kind == "coco number of 5000 digits":
            text = text.replace('"frame_' + "1" * 5000 + '"', "1" * 5000)
        p.write_text(text)
    elif kind == "openpose random bytes":
        p = tmp_path / "op"
        write_openpose(p, motion[:30])
        (p / "vid_7_keypoints.json").write_bytes(os.urandom(64) + b"\xff\xfe")
    elif kind in ("openpose score in percent", "openpose far second person"):
        p = tmp_path / "op"
        write_openpose(p, motion[:30])
        frame = p / "vid_7_keypoints.json"
        data = json.loads(frame.read_text())
        person = data["people"][0]
        if kind == "openpose score in percent":
            kp = np.asarray(person["pose_keypoints_2d"]).reshape(-1, 3)
            kp[:, 2] *= 100
            person["pose_keypoints_2d"] = kp.ravel().tolist()
        else:  # a second detection, not the followed person, at -1e308 px
            far = np.asarray(person["pose_keypoints_2d"]).reshape(-1, 3)
            far[:, :2] = -1e308
            data["people"].append({"pose_keypoints_2d": far.ravel().tolist()})
        frame.write_text(json.dumps(data))
    elif kind == "openpose people not a list":
        p = tmp_path / "op"
        write_openpose(p, motion[:30])
        (p / "vid_7_keypoints.json").write_text(json.dumps({"people": {"0": []}}))
    return p


BAD_FILES = [
    ("empty npy file", "cannot load as numpy"),
    ("string array", "dtype"),
    ("no person", "no frames"),
    ("npz scalar resolution", "field 'resolution'"),
    ("npz zero resolution", "field 'resolution'"),
    ("absurd 1e6", "not a pixel position"),
    ("absurd 1e30", "not a pixel position"),
    ("npz damaged", "cannot load as numpy (damaged file"),
    ("npz cut short", "cannot load as numpy (damaged file"),
    ("random bytes npy", "not a numeric .npy/.npz array"),
    ("coco id of 5000 digits", "field '[3].image_id' must be a frame number"),
    ("coco number of 5000 digits", "not pose data (it holds a number of thousands of digits)"),
    ("openpose random bytes", "vid_7_keypoints.json: not valid JSON"),
    ("openpose people not a list", "field 'people' must be a list"),
    (
        "openpose score in percent",
        "vid_7_keypoints.json: field 'people[0].pose_keypoints_2d' has a score of",
    ),
    (
        "openpose far second person",
        "vid_7_keypoints.json: field 'people[1].pose_keypoints_2d' has a coordinate of -1e+308",
    ),
]


@pytest.mark.parametrize("kind, message", BAD_FILES)
def test_bad_recordings(tmp_path, ckpt, motion, capsys, kind, message):
    np.save(tmp_path / "ok.npy", motion[:100])
    bad = write_bad(tmp_path, motion, kind)
    code, out = run(capsys, [tmp_path / "ok.npy", bad, "--checkpoint", ckpt])
    assert code == 2 and message in out and str(bad) in out, out
    code, r = run_json(capsys, [tmp_path / "ok.npy", bad, "--checkpoint", ckpt])
    assert code == 2 and r["status"] == "error"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--fps", "0"], "--fps must be a positive"),
        (["--fps", "-30"], "--fps must be a positive"),
        (["--fps", "nan"], "--fps must be a positive"),
        (["--fps", "inf"], "--fps must be a positive"),
        (["--fps", "30,60,25"], "3 rates for 2 recordings"),
        (["--max-offset", "0"], "--max-offset must be"),
        (["--max-offset", "1e308"], "--max-offset must be"),
        (["--max-offset", "nan"], "--max-offset must be"),
        (["--min-overlap", "1"], "--min-overlap must be a share"),
        (["--method", "magic"], "invalid choice"),
        (["--plot", "{tmp}"], "is a directory"),
        (["--plot", "{tmp}/no/such/folder/p.png"], "does not exist"),
        (["--checkpoint", "{tmp}/random.pth"], "not a checkpoint"),
        (["--checkpoint", "{tmp}/missing"], "no such checkpoint"),
    ],
)
def test_bad_flags(tmp_path, ckpt, motion, capsys, flags, message):
    np.save(tmp_path / "a.npy", motion[:100])
    np.save(tmp_path / "b.npy", motion[5:100])
    (tmp_path / "random.pth").write_bytes(os.urandom(256).replace(b"P", b"Q").lstrip(b"\x80"))
    flags = [f.format(tmp=tmp_path) for f in flags]
    if "--checkpoint" not in flags:
        flags += ["--checkpoint", ckpt]
    # a missing recording too: the flags are checked first
    args = [tmp_path / "a.npy", tmp_path / "missing.npy"] if "--plot" in flags else []
    args = args or [tmp_path / "a.npy", tmp_path / "b.npy"]
    code, out = run(capsys, args + flags)
    assert code == 2 and message in out, out
    code, r = run_json(capsys, args + flags)
    assert code == 2 and r["status"] == "error" and message in r["reason"]


def test_refusals(tmp_path, ckpt, motion, capsys):
    np.save(tmp_path / "ok.npy", motion[:120])
    still = np.repeat(motion[:1], 120, axis=0)
    jitter = still + np.random.default_rng(0).normal(0, 1.0, still.shape) * [1, 1, 0]
    np.save(tmp_path / "still.npy", still)
    np.save(tmp_path / "jitter.npy", jitter.astype(np.float32))
    np.save(tmp_path / "nobody.npy", np.zeros((120, 17, 3), np.float32))
    np.save(tmp_path / "short.npy", motion[:10])
    for name, reason in [
        ("still", "almost no motion"),
        ("jitter", "almost no motion"),
        ("nobody", "no person"),
        ("short", "only 10 frames"),
    ]:
        args = [tmp_path / "ok.npy", tmp_path / f"{name}.npy", "--checkpoint", ckpt]
        code, out = run(capsys, args)
        assert code == 3 and "cannot synchronize" in out and reason in out, out
        code, r = run_json(capsys, args)
        assert code == 3 and r["status"] == "refused" and reason in r["reason"]
    # recordings that share no moment: an answer within --max-offset, flagged as unsure
    np.save(tmp_path / "late.npy", motion[200:400])
    code, r = run_json(
        capsys,
        [tmp_path / "ok.npy", tmp_path / "late.npy", "--checkpoint", ckpt, "--max-offset", "0.5"],
    )
    assert code == 0 and abs(r["offset_seconds"]) <= 0.5
    assert r["confidence"] < sync.LOW_CONFIDENCE and "low confidence" in r["notes"][-1]


def test_json_output_never_holds_nan(tmp_path, ckpt, motion, capsys):
    np.save(tmp_path / "a.npy", motion[:150])
    np.save(tmp_path / "b.npy", motion[5:150])
    code, out = run(
        capsys,
        [
            tmp_path / "a.npy",
            tmp_path / "b.npy",
            "--checkpoint",
            ckpt,
            "--json",
            "--method",
            "auto",
        ],
    )
    assert code == 0 and "NaN" not in out and "Infinity" not in out
    assert finite({"x": [math.nan, 1.0, math.inf]}) == {"x": [None, 1.0, None]}


def test_recordings_that_share_little_of_their_time(tmp_path, capsys):
    """A records frames 0-300, B frames 230-400: they share 70 frames, less than half of B, so
    the default search does not consider the true offset; --min-overlap 0.3 does."""
    m = other_motion(400)
    np.save(tmp_path / "a.npy", m[:300])
    np.save(tmp_path / "b.npy", m[230:400])
    files = [tmp_path / "a.npy", tmp_path / "b.npy", "--fps", "30"]
    code, r = run_json(capsys, files + ["--min-overlap", "0.3"])
    assert code == 0 and r["offset_frames"] == pytest.approx(-230, abs=0.5)
    code, r = run_json(capsys, files)
    assert code == 0 and abs(r["offset_frames"] + 230) > 5  # wrong, and warned
    assert r["confidence"] < sync.LOW_CONFIDENCE and "low confidence" in r["notes"][-1]


def test_a_pth_without_torch_installed(tmp_path, motion, capsys, monkeypatch):
    """A .pth that looks like a PyTorch file on a machine without torch: exit 2, saying that
    PyTorch is needed (the JAX package itself never imports torch)."""
    from sesyn_jax import convert

    def no_torch(path):
        raise ImportError("this feature needs PyTorch: pip install torch==2.13.0")

    monkeypatch.setattr(convert, "load_torch_inference", no_torch)
    (tmp_path / "m.pth").write_bytes(b"PK\x03\x04" + os.urandom(64))
    np.save(tmp_path / "a.npy", motion[:100])
    np.save(tmp_path / "b.npy", motion[5:100])
    args = [tmp_path / "a.npy", tmp_path / "b.npy", "--checkpoint", tmp_path / "m.pth"]
    code, out = run(capsys, args)
    assert code == 2 and "m.pth" in out and "needs PyTorch" in out


def test_fine_offset_refines_within_its_window():
    """The refinement at twice the model's rate: smooth random features sampled at 60 fps, the
    second recording 1.35 model frames (2.7 fine frames) later; refined to a tenth of a fine
    frame from a coarse answer one model frame off; a better-scoring copy of the truth outside
    the window is not taken."""
    from sesyn_jax.sync.search import FINE_FACTOR, FINE_WINDOW, fine_offset

    rng = np.random.default_rng(0)
    knots = rng.normal(size=(60, 16))
    t = np.arange(400, dtype=float) / 4.0  # fine frames on a grid of knots

    def features(shift):
        x = t + shift / 4.0
        return np.stack([np.interp(x, np.arange(60), knots[:, c]) for c in range(16)], 1)

    g_a, g_b = features(0.0), features(-2.7)  # g_b[m + 2.7] = g_a[m]
    assert FINE_FACTOR == 2
    got = fine_offset(g_a.astype(np.float32), g_b.astype(np.float32), 0, coarse=0.35)
    assert got == pytest.approx(1.35, abs=0.05)
    # the window: from a coarse answer far from the truth, the answer stays within it
    far = fine_offset(g_a.astype(np.float32), g_b.astype(np.float32), 0, coarse=6.0)
    assert abs(far - 6.0) <= (FINE_WINDOW + 0.5) / FINE_FACTOR
    # and within --max-offset (model frames): lags of 2 fine frames at most, plus the parabola
    held = fine_offset(g_a, g_b, 0, coarse=0.35, max_offset=1)
    assert 0.75 <= held <= 1.25


def test_recordings_at_60_fps_are_refined_at_60_fps(tmp_path, capsys):
    """Two 60 fps recordings cut from one: the learned offset is refined at 60 fps (said in the
    JSON) and lands within a third of a 60 fps frame of the cut; a 30 fps pair is not refined."""
    make_examples(str(tmp_path))
    poses = readers.read_recording(str(tmp_path / "cam_60fps")).poses
    np.save(tmp_path / "a.npy", poses[:600])
    np.save(tmp_path / "b.npy", poses[37:])  # b starts 37 frames (0.6167 s) later
    code, r = run_json(capsys, [tmp_path / "a.npy", tmp_path / "b.npy", "--fps", "60"])
    assert code == 0 and r["method"] == "learned"
    assert r["searches"]["learned"]["refined_at_fps"] == 60
    assert r["offset_frames"] == pytest.approx(-37, abs=0.33)
    slow = [resample(p, 60, 30) for p in (poses[:600], poses[36:])]
    np.save(tmp_path / "a30.npy", slow[0])
    np.save(tmp_path / "b30.npy", slow[1])
    code, r = run_json(capsys, [tmp_path / "a30.npy", tmp_path / "b30.npy", "--fps", "30"])
    assert code == 0 and "refined_at_fps" not in r["searches"]["learned"]
    assert r["offset_frames"] == pytest.approx(-18, abs=0.33)
