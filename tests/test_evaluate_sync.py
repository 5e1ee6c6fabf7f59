"""evaluate.py's report and the sync tool (formats, refusals, N views, several persons)."""

import json
import os

import jax
import numpy as np
import pytest

from sesyn_jax import checkpoint, sync
from sesyn_jax.data import mocap_syn
from sesyn_jax.data.splits import load_pairs
from sesyn_jax.data.syn_json import write_syn_view
from sesyn_jax.model import STGCNEmbedding, init_variables

SMALL = dict(widths=(16, 16), kernel_size=5)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "export"
    variables = init_variables(STGCNEmbedding(**SMALL), jax.random.PRNGKey(0))
    checkpoint.save_inference(str(path), variables, SMALL, source="test")
    return str(path)


@pytest.fixture(scope="module")
def motion():
    """Pixel poses (T, 17, 3) of one real clip seen by one camera: a single recording that
    the tests crop into shifted copies, so any network matches them frame for frame."""
    clip = next(c for c in mocap_syn.load_embedded() if c.name == "cmu_01_01")
    from sesyn_jax.data import cameras

    rng = np.random.default_rng(0)
    cam, _, _ = cameras.sample_camera_pair(rng, clip.joints[:300].astype(np.float64))
    return cameras.detect(
        rng, cam, clip.joints[:300].astype(np.float64), cameras.Corruption(missing_prob=0.0)
    )


def run(capsys, args):
    code = sync.main(args)
    return code, capsys.readouterr().out


def test_two_views_npy_and_syn_json(tmp_path, ckpt, motion, capsys):
    a, b = motion[10:130], motion[17:150]  # frame m of a = frame m - 7 of b
    np.save(tmp_path / "a.npy", a)
    write_syn_view(str(tmp_path / "b.json"), b, 0, (1920, 1080))
    code, out = run(
        capsys,
        [
            "--checkpoint",
            ckpt,
            str(tmp_path / "a.npy"),
            str(tmp_path / "b.json"),
            "--fps",
            "30",
            "--resolution",
            "1920x1080",
            "--json",
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert code == 0
    r = json.loads(out)
    assert r["offset_frames"] == -7 and r["confidence"] > 0.9
    assert r["offset_seconds"] == pytest.approx(-7 / 30, abs=1e-4)
    assert os.path.getsize(tmp_path / "p.png") > 10_000
    code, out = run(
        capsys,
        [
            "--checkpoint",
            ckpt,
            str(tmp_path / "a.npy"),
            str(tmp_path / "b.json"),
            "--fps",
            "30",
            "--resolution",
            "1920x1080",
        ],
    )
    assert "offset: -7 frames = -0.233 s" in out and "started 7 frames" in out


def test_openpose_and_coco_formats(tmp_path, ckpt, motion, capsys):
    body25 = [0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11]
    op = tmp_path / "op"
    op.mkdir()
    for t, frame in enumerate(motion[40:160]):
        kp = np.zeros((25, 3))
        kp[body25] = frame
        (op / f"x_{t:012d}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": kp.ravel().tolist()}]})
        )
    dets = [
        {"image_id": t, "category_id": 1, "keypoints": f.ravel().tolist(), "score": 1.0}
        for t, f in enumerate(motion[30:170])
    ]
    (tmp_path / "coco.json").write_text(json.dumps(dets))
    code, out = run(
        capsys,
        [
            "--checkpoint",
            ckpt,
            str(op),
            str(tmp_path / "coco.json"),
            "--resolution",
            "1920x1080",
            "--json",
        ],
    )
    assert code == 0 and json.loads(out)["offset_frames"] == 10


def test_refusals(tmp_path, ckpt, motion, capsys):
    np.save(tmp_path / "ok.npy", motion[:120])
    still = np.repeat(motion[:1], 120, axis=0)
    np.save(tmp_path / "still.npy", still)
    np.save(tmp_path / "nobody.npy", np.zeros((120, 17, 3), np.float32))
    np.save(tmp_path / "short.npy", motion[:10])
    for name, reason in [
        ("still", "almost no motion"),
        ("nobody", "no person"),
        ("short", "only 10 frames"),
    ]:
        code, out = run(
            capsys,
            [
                "--checkpoint",
                ckpt,
                str(tmp_path / "ok.npy"),
                str(tmp_path / f"{name}.npy"),
                "--resolution",
                "1920x1080",
            ],
        )
        assert code == 3 and "cannot synchronize" in out and reason in out, out
    code, out = run(
        capsys, ["--checkpoint", ckpt, str(tmp_path / "ok.npy"), str(tmp_path / "missing.npy")]
    )
    assert code == 2


def test_three_views_robust_fit(tmp_path, ckpt, motion, capsys):
    for name, start in (("v0", 30), ("v1", 42), ("v2", 21)):
        np.save(tmp_path / f"{name}.npy", motion[start : start + 140])
    code, out = run(
        capsys,
        ["--checkpoint", ckpt]
        + [str(tmp_path / f"v{i}.npy") for i in range(3)]
        + ["--resolution", "1920x1080", "--json"],
    )
    r = json.loads(out)
    assert [v["offset_frames"] for v in r["views"]] == [0, -12, 9]
    assert all(abs(p["residual_frames"]) < 0.5 for p in r["pairs"])


def test_fit_offsets_rejects_an_outlier_pair():
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


def test_several_persons(tmp_path, ckpt, motion, capsys):
    other = motion[::-1].copy()  # a second person doing something else
    other[..., 0] += 600 * (other[..., 2] > 0)
    a = np.stack([other[20:140], motion[20:140]])  # (2, T, 17, 3), persons swapped
    b = np.stack([motion[25:160], other[25:160]])  # frame m of a = m - 5 of b
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    code, out = run(
        capsys,
        [
            "--checkpoint",
            ckpt,
            str(tmp_path / "a.npy"),
            str(tmp_path / "b.npy"),
            "--all-persons",
            "--resolution",
            "1920x1080",
            "--json",
        ],
    )
    r = json.loads(out)
    assert code == 0 and r["offset_frames"] == -5
    matched = {(p["a"].split("#")[1], p["b"].split("#")[1]) for p in r["persons"]}
    assert matched == {("0", "1"), ("1", "0")}
    fused, agree = sync.fuse_persons(
        [
            sync.PairResult("a", "b", o, c, None, None)
            for o, c in [(4, 0.9), (5, 0.8), (30, 0.3), (4, 0.7)]
        ]
    )
    assert fused == 4 and agree == pytest.approx(2.4 / 2.7)


def np_simple_offsets(pairs):
    """Simple baseline in plain numpy: flattened poses, row argmax of -||a - b||^2, floor of
    the numpy median of (argmax - index)."""
    out = []
    for p in pairs:
        a = p.view1.reshape(len(p.view1), -1).astype(np.float64)
        b = p.view2.reshape(len(p.view2), -1).astype(np.float64)
        d = ((a[:, None] - b[None]) ** 2).sum(-1)
        out.append(int(np.floor(np.median(np.argmin(d, 1) - np.arange(len(a))))))
    return np.array(out)


def test_evaluate_report(tmp_path, ckpt):
    from configs import quickstart
    from sesyn_jax import metrics, report

    cfg = quickstart.get_config()
    loaded = checkpoint.load_inference(ckpt)
    res = report.evaluate_checkpoint(
        cfg,
        loaded,
        ckpt,
        out=str(tmp_path / "eval"),
        drop_rates=(0, 10),
        noise_px=(0, 9),
        progress=False,
    )
    pairs = load_pairs(cfg, "test")
    true = np.array([p.offset for p in pairs])
    want = metrics.sync_metrics(np_simple_offsets(pairs), true)
    assert res["table1"]["Simple"] == pytest.approx(want)
    assert list(res["table1"]) == ["Zero", "Length", "Speed", "Simple", "SSM", "SeSyn"]
    assert res["table1"]["Zero"]["frame_error"] == pytest.approx(np.abs(true).mean())
    lengths = np.array([len(p.view2) - len(p.view1) for p in pairs])
    assert res["predictions"]["Length"] == lengths.tolist()
    assert res["drop_frames"]["0%"] == res["table1"]["SeSyn"]
    on_disk = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert on_disk["table1"]["SSM"]["frame_error"] == res["table1"]["SSM"]["frame_error"]
    assert "| SeSyn |" in (tmp_path / "eval" / "results.md").read_text()
    assert os.path.getsize(tmp_path / "eval" / "error_vs_offset.png") > 10_000


def np_simple_diagonal_offsets(pairs, max_offset, need):
    """Simple baseline under the diagonal rule in plain numpy: per offset the mean of
    -||a_m - b_(m+d)||^2 over the aligned frames, best offset with enough of them."""
    out = []
    for p in pairs:
        a = p.view1.reshape(len(p.view1), -1).astype(np.float64)
        b = p.view2.reshape(len(p.view2), -1).astype(np.float64)
        best, arg = -np.inf, None
        for d in range(-max_offset, max_offset + 1):
            m = np.arange(max(0, -d), min(len(a), len(b) - d))
            if len(m) >= need:
                s = -np.mean(np.sum((a[m] - b[m + d]) ** 2, 1))
                if s > best:
                    best, arg = s, d
        out.append(arg)
    return np.array(out)


def test_evaluate_with_the_diagonal_rule(tmp_path, ckpt):
    from configs import quickstart
    from sesyn_jax import report

    cfg = quickstart.get_config()
    cfg.eval.rule, cfg.eval.max_offset, cfg.eval.min_overlap = "diagonal", 30, 40
    pairs = load_pairs(cfg, "test")[:12]
    res = report.evaluate_checkpoint(
        cfg,
        checkpoint.load_inference(ckpt),
        ckpt,
        out=str(tmp_path / "eval"),
        sweeps=False,
        progress=False,
        pairs=pairs,
    )
    assert res["search"] == {"rule": "diagonal", "max_offset": 30, "min_overlap": 40}
    assert res["predictions"]["Simple"] == np_simple_diagonal_offsets(pairs, 30, 40).tolist()
    assert all(abs(p) <= 30 for name in ("SeSyn", "SSM", "Speed") for p in res["predictions"][name])


def test_syn_json_views_are_cut_by_category_id(tmp_path, ckpt, motion, capsys):
    """Two SYN JSON views of one synchronous window, cut by category_id 9 and 2: the offset is
    category_id(A) - category_id(B) = 7, as the published pipeline defines it."""
    write_syn_view(str(tmp_path / "w_C001.json"), motion[:140], 9, (1920, 1080))
    write_syn_view(str(tmp_path / "w_C002.json"), motion[:140], 2, (1920, 1080))
    code, out = run(
        capsys,
        [
            "--checkpoint",
            ckpt,
            str(tmp_path / "w_C001.json"),
            str(tmp_path / "w_C002.json"),
            "--json",
        ],
    )
    assert code == 0 and json.loads(out)["offset_frames"] == 7


def test_evaluation_takes_sequences_longer_than_every_bucket(ckpt, motion):
    """train.py, evaluate.py and the ablation runner share this path: a test sequence longer
    than the largest bucket gets a bucket of its own instead of an error."""
    from ml_collections import ConfigDict

    from sesyn_jax import evaluation
    from sesyn_jax.data.readers import normalize_recording
    from sesyn_jax.data.syn_json import Pair

    x = normalize_recording(motion, (1920, 1080))
    pairs = [Pair("p", x[10:80], x[17:90], -7), Pair("q", x[:50], x[5:60], -5)]
    loaded = checkpoint.load_inference(ckpt)
    embed = evaluation.make_embed_fn(loaded.model())
    eval_cfg = ConfigDict({"batch_size": 2, "rule": "median", "max_offset": 0, "min_overlap": 0.5})
    short, m_short = evaluation.evaluate_model(embed, loaded.variables, pairs, eval_cfg, (32,), 30)
    long, _ = evaluation.evaluate_model(embed, loaded.variables, pairs, eval_cfg, (128,), 30)
    np.testing.assert_array_equal(short, long)
    assert short.tolist() == [-7, -5] and m_short["frame_error"] == 0.0
