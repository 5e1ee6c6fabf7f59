"""Data: SYN JSON reading (crop, normalization, quirks, errors), other readers, batching."""

import json
import os

import numpy as np
import pytest

from sesyn_jax.data import pairs as pairs_lib
from sesyn_jax.data import readers, syn_json
from sesyn_jax.data.syn_json import PoseFormatError


def write_view(path, poses, category_id, resolution=(200, 100), num_frame=None, **overrides):
    anns = [
        {"frame_index": i, "person_id": 0, "id": 0, "keypoints": poses[i].tolist()}
        for i in range(len(poses))
    ]
    data = {
        "info": {
            "num_frame": num_frame or len(poses),
            "num_keypoints": 17,
            "keypoint_channels": ["x", "y", "score"],
            "resolution": list(resolution),
        },
        "annotations": anns,
        "category_id": category_id,
    }
    data.update(overrides)
    with open(path, "w") as f:
        json.dump(data, f)


def test_crop_and_normalization_hand_worked(tmp_path):
    poses = np.zeros((4, 17, 3))
    poses[:, 0] = [[20, 10, 0.9], [40, 30, 0.8], [100, 50, 0.0], [200, 100, 1.0]]
    write_view(tmp_path / "a_C001.json", poses, category_id=1)
    view = syn_json.read_syn_view(str(tmp_path / "a_C001.json"))
    x = syn_json.normalize_view(view)
    assert x.shape == (3, 17, 3)  # first category_id frame dropped
    np.testing.assert_allclose(x[0, 0], [40 / 200 - 0.5, 30 / 100 - 0.5, 0.8], rtol=1e-6)
    np.testing.assert_allclose(x[1, 0], [0, 0, 0])  # score 0: every channel zeroed
    np.testing.assert_allclose(x[2, 0], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(x[:, 5], 0.0)  # joints never seen stay 0


def test_pairing_offsets_and_quirks(tmp_path):
    rng = np.random.default_rng(0)
    for name, c1, c2 in [("S001C001P001", 3, 0), ("S002C001P001", 0, 5)]:
        p = rng.uniform(1, 99, (20, 17, 3))
        write_view(tmp_path / f"{name}.json", p, c1)
        write_view(tmp_path / f"{name.replace('C001', 'C002')}.json", p, c2)
    pairs = syn_json.load_split(str(tmp_path), cache=False)
    assert [p.offset for p in pairs] == [3, -5]
    assert len(pairs[0].view1) == 17 and len(pairs[0].view2) == 20
    # CMU naming and the num_frame > 1000 quirk: len(annotations) // 5 frames are used
    write_view(tmp_path / "x_C11.json", rng.uniform(1, 99, (30, 17, 3)), 0, num_frame=1200)
    v = syn_json.read_syn_view(str(tmp_path / "x_C11.json"), long_file_quirk=True)
    assert v.poses.shape[0] == 6
    assert syn_json.read_syn_view(str(tmp_path / "x_C11.json")).poses.shape[0] == 1200
    write_view(tmp_path / "x_C21.json", rng.uniform(1, 99, (30, 17, 3)), 2, num_frame=1200)
    cmu = syn_json.pair_files(str(tmp_path), "cmu")
    assert [tuple(os.path.basename(f) for f in pr) for pr in cmu] == [("x_C11.json", "x_C21.json")]


def test_unequal_views_and_cache(tmp_path):
    p = np.ones((10, 17, 3))
    write_view(tmp_path / "a_C001.json", p, 0)
    with pytest.raises(PoseFormatError, match="1 view-1 files .* but 0 view-2"):
        syn_json.pair_files(str(tmp_path))
    write_view(tmp_path / "a_C002.json", p * 2, 2)
    cache = tmp_path / "cache"
    first = syn_json.load_split(str(tmp_path), cache_dir=str(cache))
    assert len(os.listdir(cache)) == 1
    second = syn_json.load_split(str(tmp_path), cache_dir=str(cache))
    np.testing.assert_array_equal(first[0].view2, second[0].view2)
    assert second[0].offset == -2
    # a changed file is parsed again, not served from the cache
    write_view(tmp_path / "a_C002.json", p * 3, 1)
    os.utime(tmp_path / "a_C002.json", ns=(1, 10**18))  # a different modification time
    third = syn_json.load_split(str(tmp_path), cache_dir=str(cache))
    assert third[0].offset == -1
    assert not np.array_equal(third[0].view2, second[0].view2)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["info"].pop("num_frame"), "missing field 'info.num_frame'"),
        (lambda d: d["info"].update(num_keypoints=18), "num_keypoints' is 18"),
        (
            lambda d: d["annotations"][0].update(keypoints=[[1, 2, 3]] * 18),
            r"annotations\[0\].keypoints' has 18 joints; expected 17",
        ),
        (lambda d: d["annotations"][1].update(keypoints=[[float("nan"), 2, 3]] * 17), "non-finite"),
        (lambda d: d.update(category_id=-1), "category_id"),
        (lambda d: d["info"].update(resolution=[0, 10]), "resolution"),
    ],
)
def test_malformed_syn_files(tmp_path, mutate, message):
    path = tmp_path / "bad_C001.json"
    write_view(path, np.ones((3, 17, 3)), 0)
    with open(path) as f:
        data = json.load(f)
    mutate(data)
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(PoseFormatError, match=message) as e:
        syn_json.read_syn_view(str(path))
    assert str(path) in str(e.value)


def test_not_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{oops")
    with pytest.raises(PoseFormatError, match="not valid JSON"):
        syn_json.read_syn_view(str(path))


def openpose_frame(path, people):
    with open(path, "w") as f:
        json.dump(
            {"version": 1.3, "people": [{"pose_keypoints_2d": p.ravel().tolist()} for p in people]},
            f,
        )


def test_openpose_body25_mapping_and_tracking(tmp_path):
    # person A near x=100 (confident), person B near x=500; B comes first in the file at t=1
    def body25(x0, conf):
        p = np.zeros((25, 3))
        p[:, 0] = x0 + np.arange(25)
        p[:, 1] = 10 * np.arange(25)
        p[:, 2] = conf
        return p

    for t in range(3):
        a, b = body25(100 + t, 0.9), body25(500 - t, 0.5)
        openpose_frame(tmp_path / f"v_{t:012d}_keypoints.json", [b, a] if t == 1 else [a, b])
    rec = readers.read_recording(str(tmp_path), openpose_model="BODY_25")
    assert rec.poses.shape == (3, 17, 3)
    # COCO left shoulder = BODY_25 joint 5, right hip = 9, left eye = 16
    np.testing.assert_allclose(rec.poses[:, 5, 0], [105, 106, 107])
    np.testing.assert_allclose(rec.poses[0, 12, 0], 109)
    np.testing.assert_allclose(rec.poses[0, 1, 1], 160)
    everyone = readers.read_recording(str(tmp_path), all_persons=True, openpose_model="BODY_25")
    assert everyone.poses.shape == (2, 3, 17, 3)
    np.testing.assert_allclose(everyone.poses[1, :, 0, 0], [500, 499, 498])


def test_openpose_coco18_and_errors(tmp_path):
    p = np.zeros((18, 3))
    p[:, 0] = np.arange(18)
    p[:, 2] = 1
    openpose_frame(tmp_path / "f_0_keypoints.json", [p])
    rec = readers.read_recording(str(tmp_path))
    # COCO-17 left ear = COCO-18 joint 17, right hip = 8
    assert rec.poses[0, 3, 0] == 17 and rec.poses[0, 12, 0] == 8
    openpose_frame(tmp_path / "f_1_keypoints.json", [np.zeros((15, 3))])
    with pytest.raises(PoseFormatError, match="has 15 keypoints"):
        readers.read_recording(str(tmp_path))


def test_coco_results_and_numpy(tmp_path):
    dets = [
        {"image_id": 7, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.9},
        {"image_id": 3, "category_id": 1, "keypoints": [2.0] * 51, "score": 0.8},
    ]
    (tmp_path / "r.json").write_text(json.dumps(dets))
    rec = readers.read_recording(str(tmp_path / "r.json"))
    # image id k is frame k; frames no detection names have no person
    np.testing.assert_allclose(rec.poses[:, 0, 0], [0, 0, 0, 2.0, 0, 0, 0, 1.0])
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 1, "keypoints": [1] * 50}]))
    with pytest.raises(PoseFormatError, match="has 50 values"):
        readers.read_recording(str(tmp_path / "bad.json"))
    np.savez(tmp_path / "p.npz", poses=np.ones((5, 17, 3)), fps=25.0, resolution=[640, 480])
    rec = readers.read_recording(str(tmp_path / "p.npz"))
    assert rec.fps == 25.0 and rec.resolution == (640, 480)
    np.save(tmp_path / "bad.npy", np.ones((5, 18, 3)))
    with pytest.raises(PoseFormatError, match=r"shape \(5, 18, 3\)"):
        readers.read_recording(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "empty.npy", np.ones((0, 17, 3)))
    with pytest.raises(PoseFormatError, match="no frames"):
        readers.read_recording(str(tmp_path / "empty.npy"))


def make_pair(name, n1, n2, offset):
    return syn_json.Pair(
        name, np.full((n1, 17, 3), 1.0, np.float32), np.full((n2, 17, 3), 2.0, np.float32), offset
    )


def test_batches_padding_masks_and_order():
    data = [make_pair(f"p{i}", 50 + i, 60 + 2 * i, i) for i in range(10)] + [
        make_pair("long", 100, 90, -1)
    ]
    b = pairs_lib.PairBatcher(data, 4, buckets=(64, 128), seed=3, train=True)
    # bucket 64 holds p0..p1 (max len <= 64) -> not a full batch; bucket 128 holds the other 9
    epoch = list(b.epoch(0, prefetch=0))
    assert len(epoch) == b.steps_per_epoch() == 2
    for batch in epoch:
        assert batch["poses1"].shape == (4, 128, 17, 3)
        for j, i in enumerate(batch["index"]):
            n1, n2 = len(data[i].view1), len(data[i].view2)
            assert batch["mask1"][j].sum() == n1 and batch["mask2"][j].sum() == n2
            assert np.all(batch["poses1"][j, n1:] == 0) and np.all(batch["poses1"][j, :n1] == 1)
    again = [x["index"].tolist() for x in b.epoch(0, prefetch=2)]
    assert again == [x["index"].tolist() for x in epoch]  # order depends on (seed, epoch)
    assert again[1:] == [x["index"].tolist() for x in b.epoch(0, skip=1)]
    assert again != [x["index"].tolist() for x in b.epoch(1)] or len(again) == 1
    ev = pairs_lib.PairBatcher(data, 4, buckets=(64, 128), train=False)
    seen = np.concatenate([x["index"][x["valid"]] for x in ev.epoch(0)])
    assert sorted(seen.tolist()) == list(range(11))
    # two processes split every global batch
    halves = [
        pairs_lib.PairBatcher(data, 4, (64, 128), seed=3, process_index=k, process_count=2)
        for k in range(2)
    ]
    first = [next(iter(h.epoch(0, prefetch=0)))["index"] for h in halves]
    np.testing.assert_array_equal(np.concatenate(first), epoch[0]["index"])
    with pytest.raises(ValueError, match="longer than the largest bucket"):
        pairs_lib.PairBatcher(data, 4, buckets=(64,))


def test_test_time_corruptions():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (100, 17, 3)).astype(np.float32)
    x[..., 2] = rng.uniform(0.1, 1.0, (100, 17))
    x[:, 3, 2] = 0
    x[:, 3, :2] = 0
    assert len(pairs_lib.drop_frames(x, 0.1, rng)) == 90
    y = pairs_lib.add_pixel_noise(x, 9.0, (1920, 1080), np.random.default_rng(1))
    d = (y - x)[:, :, 0] * 1920
    assert abs(d[:, 5:].std() - 9.0) < 0.5
    assert np.all(y[:, 3] == 0)


# OpenPose's documented keypoint names (output order), written out here independently of the
# reader's index table, and COCO-17's order.
BODY_25_NAMES = [
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "mid_hip",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
    "l_big_toe",
    "l_small_toe",
    "l_heel",
    "r_big_toe",
    "r_small_toe",
    "r_heel",
]
OPENPOSE_COCO18_NAMES = [
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
]
COCO17_NAMES = [
    "nose",
    "l_eye",
    "r_eye",
    "l_ear",
    "r_ear",
    "l_shoulder",
    "r_shoulder",
    "l_elbow",
    "r_elbow",
    "l_wrist",
    "r_wrist",
    "l_hip",
    "r_hip",
    "l_knee",
    "r_knee",
    "l_ankle",
    "r_ankle",
]


@pytest.mark.parametrize(
    "model, names", [("BODY_25", BODY_25_NAMES), ("COCO", OPENPOSE_COCO18_NAMES)]
)
def test_openpose_every_joint_lands_on_its_coco_name(tmp_path, model, names):
    p = np.zeros((len(names), 3))
    p[:, 0] = 1000 + np.arange(len(names))  # x encodes the OpenPose index
    p[:, 1] = 50
    p[:, 2] = 0.8
    for t in range(2):
        openpose_frame(tmp_path / f"v_{t:012d}_keypoints.json", [p])
    rec = readers.read_recording(str(tmp_path), openpose_model=model)
    want = [1000 + names.index(n) for n in COCO17_NAMES]
    np.testing.assert_array_equal(rec.poses[0, :, 0], want)


def test_normalizations_against_their_formulas():
    from sesyn_jax.data import normalization

    rng = np.random.default_rng(0)
    poses = np.zeros((6, 17, 3), np.float32)
    poses[..., 0] = rng.uniform(300, 900, (6, 17))
    poses[..., 1] = rng.uniform(100, 1000, (6, 17))
    poses[..., 2] = 0.9
    poses[1, 4] = [1500.0, 900.0, 0.0]  # an unseen joint keeps nothing
    out = normalization.normalize(poses, "published", (1920, 1080))
    np.testing.assert_allclose(out[0, 0, :2], poses[0, 0, :2] / [1920, 1080] - 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out[1, 4], [0.0, 0.0, 0.0])
    # 'person': the median box centre and the median of max(width, height), in float64
    seen = poses[..., 2] > 0
    lo = np.array([poses[t, seen[t], :2].min(0) for t in range(6)], np.float64)
    hi = np.array([poses[t, seen[t], :2].max(0) for t in range(6)], np.float64)
    centre, size = np.median((lo + hi) / 2, 0), np.median((hi - lo).max(1))
    out = normalization.normalize(poses, "person")
    want = (poses[..., :2].astype(np.float64) - centre) / size
    np.testing.assert_allclose(out[seen][:, :2], want[seen], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[1, 4], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[..., 2], poses[..., 2])
    # the same person farther away, elsewhere in a portrait image: the same input
    moved = poses.copy()
    moved[..., :2] = poses[..., :2] * 0.4 + [120.0, 700.0]
    moved[~seen] = 0.0
    np.testing.assert_allclose(normalization.normalize(moved, "person"), out, atol=1e-5)
    # pairs stored in the published normalization reach 'person' through the pixels
    back = normalization.renormalize(
        normalization.normalize(poses, "published", (1080, 1920)), "person", (1080, 1920)
    )
    np.testing.assert_allclose(back, out, atol=1e-5)
    with pytest.raises(ValueError, match="resolution"):
        normalization.normalize(poses, "published")


def test_numpy_nan_joints_are_not_seen_and_inf_is_refused(tmp_path):
    """NaN (as many pipelines write for a joint not seen) becomes score 0 with a note naming
    the first; an infinite value is refused naming its frame and joint."""
    poses = np.random.default_rng(0).uniform(10, 100, (60, 17, 3)).astype(np.float32)
    poses[50:55, 9, 0] = np.nan  # left wrist x in frames 50-54
    poses[57, 3, 2] = np.nan  # left ear score
    np.save(tmp_path / "nan.npy", poses)
    rec = readers.read_recording(str(tmp_path / "nan.npy"))
    seen = ~np.isnan(poses).any(-1)
    np.testing.assert_array_equal(rec.poses[seen], poses[seen])
    np.testing.assert_array_equal(rec.poses[~seen], 0)
    assert rec.notes == [
        f"{tmp_path / 'nan.npy'}: 6 joints with NaN values (first at frame 50, joint 9 "
        f"(left_wrist)) read as not seen (score 0)"
    ]
    poses[12, 16, 1] = np.inf
    np.save(tmp_path / "inf.npy", poses)
    with pytest.raises(PoseFormatError) as e:
        readers.read_recording(str(tmp_path / "inf.npy"))
    assert str(e.value) == (
        f"{tmp_path / 'inf.npy'}: field 'poses' holds an infinite value at frame 12, joint 16 "
        f"(right_ankle); a joint that was not seen is NaN or has score 0"
    )


def test_npz_fps_errors_and_overrides_are_one_clean_line(tmp_path):
    path = tmp_path / "b.npz"
    np.savez(path, poses=np.ones((5, 17, 3)), fps=0.0)
    with pytest.raises(PoseFormatError) as e:
        readers.read_recording(str(path))
    assert str(e.value) == f"{path}: field 'fps' must be a positive number, got 0.0"
    np.savez(path, poses=np.ones((5, 17, 3)), fps=60.0)
    rec = readers.read_recording(str(path), fps=30.0)
    assert rec.fps == 30.0
    assert rec.notes == [f"{path}: the file says 60 fps; using the 30 fps given (--fps)"]
    assert readers.read_recording(str(path), fps=60.0).notes == []
