"""Pairs rendered afresh from 3D motion: the offset's sign, crops that say nothing about the
offset, time-stretch and mirroring against their definitions, image sizes, and a training run on
rendered pairs with the contrastive loss that writes its settings into the export."""

import json

import numpy as np
import pytest

from sesyn_jax import checkpoint, config_checks
from sesyn_jax.train.loop import train_and_evaluate
from sesyn_jax.data import cameras as cam_lib
from sesyn_jax.data import mocap_syn, normalization, render
from sesyn_jax.data.resample import interpolate
from sesyn_jax.graph import COCO_JOINTS

QUIET = render.Augment(
    stretch=(1.0, 1.0),
    mirror=0.0,
    noise=(0.0, 0.0),
    missing_prob=(0.0, 0.0),
    drop_frame_prob=(0.0, 0.0),
    **render.DETECTOR_ERRORS_OFF,
)


@pytest.fixture(scope="module")
def clips():
    return [c for c in mocap_syn.load_embedded() if c.name not in mocap_syn.TEST_CLIPS]


def test_offset_sign_with_one_camera_for_both_views(clips, monkeypatch):
    """Both views through the same camera and no noise: frame m of view 1 is frame m + offset of
    view 2 (the convention of every pair: offset = category_id1 - category_id2)."""
    draw = cam_lib.sample_camera_pair

    def same_camera(*a, **k):
        c1, _, meta = draw(*a, **k)
        return c1, c1, meta

    monkeypatch.setattr(cam_lib, "sample_camera_pair", same_camera)
    ds = render.RenderedPairs(clips, mocap_syn.BuildConfig(), QUIET, min_length=64)
    rng = np.random.default_rng(0)
    seen_offsets = set()
    for i in range(40):
        p = ds.pair(i, rng)
        d = p.offset
        seen_offsets.add(d)
        m = np.arange(max(0, -d), min(len(p.view1), len(p.view2) - d))
        assert len(m) > 0
        a, b = p.view1[m], p.view2[m + d]
        both = (a[..., 2] > 0) & (b[..., 2] > 0)
        np.testing.assert_allclose(a[..., :2][both], b[..., :2][both], atol=1e-5)
    assert len(seen_offsets) > 10


def test_crops_say_nothing_about_the_offset(clips):
    cfg = mocap_syn.BuildConfig(frames=120, max_offset=30)
    ds = render.RenderedPairs(clips, cfg, render.Augment(), min_length=64)
    rng = np.random.default_rng(1)
    rows = np.array(
        [(len(p.view1), len(p.view2), p.offset) for p in (ds.pair(i, rng) for i in range(1500))]
    )
    l1, l2, off = rows.T
    assert off.min() == -30 and off.max() == 30
    assert l1.min() >= 64 and l2.min() >= 64 and max(l1.max(), l2.max()) <= 120
    for x in (l1, l2, l2 - l1):
        assert abs(np.corrcoef(x, off)[0, 1]) < 0.06


def test_interpolate_and_mirror_against_their_definitions():
    t = np.arange(10, dtype=np.float64)
    joints = np.stack([t * 0.1, t**2, -t], -1)[:, None, :].repeat(17, 1)  # (10, 17, 3)
    joints[:, :, 0] += np.arange(17) * 10.0  # x tells the joints apart
    times = np.array([0.0, 0.5, 2.25, 8.8])
    got = interpolate(joints, times)
    lo = np.floor(times).astype(int)
    w = (times - lo)[:, None, None]
    np.testing.assert_allclose(got, joints[lo] * (1 - w) + joints[lo + 1] * w)
    m = render.mirror(joints)
    left, right = COCO_JOINTS.index("left_wrist"), COCO_JOINTS.index("right_wrist")
    np.testing.assert_array_equal(m[:, left, 0], -joints[:, right, 0])
    np.testing.assert_array_equal(m[:, left, 1:], joints[:, right, 1:])
    np.testing.assert_array_equal(render.mirror(m), joints)


def test_image_sizes_and_normalization_of_rendered_pairs(clips):
    sizes = ((1920, 1080), (1080, 1920))
    ds = render.RenderedPairs(
        clips, mocap_syn.BuildConfig(), render.Augment(sizes=sizes), min_length=64
    )
    rng = np.random.default_rng(2)
    pairs = [ds.pair(i, rng) for i in range(30)]
    assert {p.resolution for p in pairs} == set(sizes)
    for p in pairs[:5]:
        px = normalization.to_pixels(p.view1, p.resolution)
        seen = px[..., 2] > 0
        assert (px[..., 0][seen] < p.resolution[0]).all()
        assert (px[..., 1][seen] < p.resolution[1]).all()


def test_bad_augment_settings_are_refused():
    with pytest.raises(ValueError, match="stretch"):
        render.Augment(stretch=(1.2, 0.9))
    with pytest.raises(ValueError, match="mirror"):
        render.Augment(mirror=1.5)
    with pytest.raises(ValueError, match="missing_prob"):
        render.Augment(missing_prob=(0.0, 1.0))
    with pytest.raises(ValueError, match="swap_frames"):
        render.Augment(swap_frames=(0, 8))
    with pytest.raises(ValueError, match="gap_frames"):
        render.Augment(gap_frames=(30, 5))
    with pytest.raises(ValueError, match="jump_prob"):
        render.Augment(jump_prob=1.0)
    with pytest.raises(ValueError, match="occluded_drop"):
        render.Augment(occluded_drop=-0.1)
    with pytest.raises(ValueError, match="burst_noise"):
        render.Augment(burst_noise=float("nan"))
    from configs import sync_default

    cfg = sync_default.get_config()
    cfg.data.augment.noise = (0.5, 0.1)
    with pytest.raises(config_checks.ConfigError, match="data.augment: noise"):
        config_checks.check_config(cfg)
    cfg = sync_default.get_config()
    cfg.data.augment.burst_frames = (2.5, 4)
    with pytest.raises(config_checks.ConfigError, match="data.augment: burst_frames"):
        config_checks.check_config(cfg)
    cfg = sync_default.get_config()
    cfg.data.protocol = "paper"
    with pytest.raises(config_checks.ConfigError, match="data.render"):
        config_checks.check_config(cfg)
    cfg = sync_default.get_config()
    cfg.model.normalization = "image"
    with pytest.raises(config_checks.ConfigError, match="model.normalization"):
        config_checks.check_config(cfg)


def test_training_on_rendered_pairs_writes_its_settings(tmp_path):
    from configs import sync_default

    cfg = sync_default.get_config()
    cfg.model.widths = (8, 16)
    cfg.model.kernel_size = 5
    cfg.data.pairs_per_epoch = 16
    cfg.train.epochs = 1
    cfg.train.eval_every = 0
    res = train_and_evaluate(cfg, str(tmp_path / "run"), progress=False)
    assert res["status"] == "finished"
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(np.isfinite(r["aligned"]) for r in rows if "aligned" in r)
    loaded = checkpoint.load_inference(str(tmp_path / "run"))
    assert loaded.normalization == "person" and loaded.fps == 30.0
    assert loaded.inner_radius == 2 * 2  # two blocks, kernel 5
    assert loaded.meta["config"]["loss"]["weights"] == {"aligned": 1.0}
