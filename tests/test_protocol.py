"""MOCAP-SYN protocols: 'paper' reproduces the published layout (and the files this project
always built), 'independent' makes lengths and ends say nothing about the offset; fresh
training crops every epoch."""

import hashlib
import json

import numpy as np
import pytest

from sesyn_jax.data import build_mocap_syn, mocap_syn, syn_json
from sesyn_jax.data.pairs import PairBatcher


@pytest.fixture(scope="module")
def clips():
    return mocap_syn.load_embedded()


def test_paper_protocol_reproduces_the_earlier_build(clips):
    # Fingerprint of the 120-frame build as this project wrote it before the protocols existed:
    # every pair's name and category_ids, and the sum of every pixel and score.
    recs, summary = mocap_syn.build_pairs(
        clips, mocap_syn.BuildConfig(frames=120, protocol="paper")
    )
    ids = [(r.name, r.category_id1, r.category_id2) for r in recs]
    assert (
        hashlib.sha256(repr(ids).encode()).hexdigest()
        == "92a2af65be00a1f934bdc68cc678ca183d89522b401c205250a7758c9c5c2be5"
    )
    total = sum(
        float(np.float64(r.view_frames(1)).sum() + np.float64(r.view_frames(2)).sum()) for r in recs
    )
    assert total == pytest.approx(2075399606.1192265, rel=1e-9)
    assert (summary["train"]["pairs"], summary["test"]["pairs"]) == (246, 100)
    for r in recs:  # both views end together: the offset is the difference of the lengths
        p = r.to_pair(1920, 1080)
        assert len(p.view2) - len(p.view1) == p.offset


def test_independent_lengths_carry_no_information_about_the_offset():
    cfg = mocap_syn.BuildConfig(frames=120, max_offset=30)
    rng = np.random.default_rng(0)
    crops = [mocap_syn.draw_crop(rng, cfg) for _ in range(20000)]
    off = np.array([c.offset for c in crops])
    l1 = np.array([c.length1 for c in crops])
    l2 = np.array([c.length2 for c in crops])
    assert off.min() == -30 and off.max() == 30
    assert l1.min() == 90 and l1.max() == 120 and l2.min() == 90 and l2.max() == 120
    # every crop fits its window of frames + max_offset frames
    assert (np.maximum(off, 0) + l1 <= 150).all() and (np.maximum(-off, 0) + l2 <= 150).all()
    for x in (l1, l2, l2 - l1):
        assert abs(np.corrcoef(x, off)[0, 1]) < 0.03
    # the same length distribution whatever the offset's sign or size (std of a mean ~0.2)
    for sel in (off < -10, np.abs(off) <= 10, off > 10):
        assert l1[sel].mean() == pytest.approx(105, abs=0.6)
        assert (l2 - l1)[sel].mean() == pytest.approx(0, abs=0.9)


def test_independent_build_round_trips_through_files(clips, tmp_path):
    use = [c for c in clips if c.name in ("cmu_01_01", "cmu_01_03")]
    cfg = mocap_syn.BuildConfig(frames=120, train_stride=150, test_stride=300)
    recs, summary = mocap_syn.build_pairs(use, cfg)
    build_mocap_syn.write_dataset(recs, summary, cfg, str(tmp_path / "ds"), "embedded", use)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["config"]["protocol"] == "independent"
    read = syn_json.load_split(str(tmp_path / "ds" / "test"), cache=False)
    mem = [r.to_pair(cfg.width, cfg.height) for r in recs if r.split == "test"]
    assert [p.offset for p in read] == [p.offset for p in mem]
    for p, q, r in zip(read, mem, [r for r in recs if r.split == "test"]):
        assert (len(p.view1), len(p.view2)) == (r.length1, r.length2)
        np.testing.assert_allclose(p.view1, q.view1, atol=1e-6)
        np.testing.assert_allclose(p.view2, q.view2, atol=1e-6)


def test_builder_command_line_protocols(tmp_path):
    for proto in ("paper", "independent"):
        out = tmp_path / proto
        assert (
            build_mocap_syn.main(
                ["--out", str(out), "--frames", "120", "--camera-pairs", "1", "--protocol", proto]
            )
            == 0
        )
        pairs = syn_json.load_split(str(out / "test"), cache=False)
        same = np.mean([len(p.view2) - len(p.view1) == p.offset for p in pairs])
        assert same == 1.0 if proto == "paper" else same < 0.2


def _synthetic_records(n_windows=3, window=150):
    """Records whose two views are one and the same sequence, each frame tagged with its index
    in the window, so a crop can be checked frame by frame."""
    recs = []
    for w in range(n_windows):
        v = np.zeros((window, 17, 3), np.float32)
        v[..., 0] = np.arange(window)[:, None] + 1000 * w
        v[..., 2] = 1.0
        recs.append(mocap_syn.PairRecord(f"w{w}", "c", "train", v, v.copy(), 0, 0, 120, 120, {}))
    return recs


def test_fresh_crops_every_epoch_and_the_same_on_resume():
    cfg = mocap_syn.BuildConfig(frames=120, max_offset=30, width=1, height=1)
    data = mocap_syn.FreshCrops(_synthetic_records(), cfg)
    batcher = PairBatcher(data, 1, (128,), seed=3, train=True)
    by_epoch = {}
    for epoch in (0, 1):
        for batch in batcher.epoch(epoch, prefetch=0):
            i, off = int(batch["index"][0]), int(batch["offset"][0])
            m1, m2 = batch["mask1"][0], batch["mask2"][0]
            t1 = batch["poses1"][0, m1, 0, 0] + 0.5  # window frame index (x / 1 - 0.5)
            t2 = batch["poses2"][0, m2, 0, 0] + 0.5
            assert 90 <= m1.sum() <= 120 and 90 <= m2.sum() <= 120
            assert t2[0] - t1[0] == -off  # frame m of view 1 = frame m + off of 2
            by_epoch[epoch, i] = (off, int(m1.sum()), int(m2.sum()))
    assert any(by_epoch[0, i] != by_epoch[1, i] for i in range(3))
    again = PairBatcher(data, 1, (128,), seed=3, train=True)
    for batch in again.epoch(1, skip=1, prefetch=0):  # resumed mid-epoch: same crops
        i = int(batch["index"][0])
        assert (
            int(batch["offset"][0]),
            int(batch["mask1"][0].sum()),
            int(batch["mask2"][0].sum()),
        ) == by_epoch[1, i]
    evaluation = PairBatcher(data, 1, (128,), train=False)  # evaluation: the fixed crops
    b = next(evaluation.epoch(0, prefetch=0))
    assert int(b["mask1"][0].sum()) == 120 and int(b["offset"][0]) == 0
