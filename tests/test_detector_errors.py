"""The errors real 2D detectors make, in both renderers (``render.detect_with_errors`` and
``render_jax.detect_with_errors``): left/right swaps, jumps to another person, long gaps, jitter
bursts and occluded joints. Each effect against its definition (independent float64
computations), its rate against the configured probability, numpy against JAX in distribution,
and a field at 0 turning its effect off exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesyn_jax.data import cameras as cam_lib
from sesyn_jax.data import mocap_syn, normalization, render, render_jax
from sesyn_jax.data.resample import interpolate
from sesyn_jax.data.syn_json import Pair
from sesyn_jax.graph import COCO_JOINTS, MIRROR

BUCKET = 128
MIN_LENGTH = 64
RUNS = render_jax.RUNS
OFF = render.DETECTOR_ERRORS_OFF
# no missing joints and no dropped frames, so that every run of errors shows in the output
CLEAN = dict(missing_prob=(0.0, 0.0), drop_frame_prob=(0.0, 0.0))
# higher rates than the defaults, so that a few hundred pairs hold many runs
BUSY = dict(swap_prob=0.03, jump_prob=0.03, gap_prob=0.01, burst_prob=0.03)
OCCLUDED = dict(occluded_score_cut=0.5, occluded_drop=0.25)
ONLY = {name: {**OFF, f"{name}_prob": BUSY[f"{name}_prob"]} for name in RUNS}
ONLY["occluded"] = {**OFF, **OCCLUDED}
N_NUMPY = 240  # numpy pairs per effect (each rendered with the effect and without)
N_JAX = 1024


@pytest.fixture(scope="module")
def clips():
    return [c for c in mocap_syn.load_embedded() if c.name not in mocap_syn.TEST_CLIPS]


def rendered(clips, **fields) -> render.RenderedPairs:
    aug = render.Augment(**{**CLEAN, **fields})
    return render.RenderedPairs(clips, mocap_syn.BuildConfig(), aug, 256, 0, MIN_LENGTH)


def pair_before_detector_errors(ds: render.RenderedPairs, rng) -> Pair:
    """``RenderedPairs.pair`` as it was before the detector errors: the reference that every
    error at 0 must reproduce draw for draw."""
    aug, cfg = ds.augment, ds.cfg
    clip = ds.clips[int(rng.choice(len(ds.clips), p=ds.weights))]
    stretch = float(np.exp(rng.uniform(*np.log(aug.stretch))))
    window = min(cfg.window, int((len(clip.joints) - 1) / stretch) + 1)
    start = rng.uniform(0, len(clip.joints) - 1 - (window - 1) * stretch)
    joints = interpolate(clip.joints, start + stretch * np.arange(window))
    if rng.random() < aug.mirror:
        joints = render.mirror(joints)
    width, height = aug.sizes[int(rng.integers(len(aug.sizes)))]
    cams = cam_lib.sample_camera_pair(
        rng,
        joints,
        width,
        height,
        focal_range=tuple(f * max(width, height) for f in aug.focal),
        distance_range=aug.distance_m,
        height_range=aug.height_m,
    )[:2]
    views = []
    for cam in cams:
        uv, _ = cam_lib.project(cam, joints)
        sigma = rng.uniform(*aug.noise) * float(np.median(np.ptp(uv[..., 1], axis=1)))
        missing, drop = rng.uniform(*aug.missing_prob), rng.uniform(*aug.drop_frame_prob)
        corruption = cam_lib.Corruption(sigma, sigma, missing, drop)
        views.append(cam_lib.detect(rng, cam, joints, corruption))
    crop = render.scaled_crop(rng, cfg, window, ds.min_length)
    return crop.apply(Pair(clip.name, views[0], views[1], 0, (width, height)))


def test_every_error_at_zero_is_the_renderer_without_them(clips):
    """Default corruption, every detector error off: the same pairs as before they existed."""
    ds = render.RenderedPairs(
        clips, mocap_syn.BuildConfig(), render.Augment(**OFF), 256, 0, MIN_LENGTH
    )
    for i in range(20):
        got = ds.pair(i, np.random.default_rng([4, i]))
        want = pair_before_detector_errors(ds, np.random.default_rng([4, i]))
        assert got.offset == want.offset and got.resolution == want.resolution
        for a, b in ((got.view1, want.view1), (got.view2, want.view2)):
            np.testing.assert_array_equal(
                a, normalization.normalize(b, "published", want.resolution)
            )


def numpy_effects(clips, name: str) -> dict:
    """Pairs with the effect ``name`` alone and the same pairs without it (the same generator
    seeds: the errors are drawn last): per view, the fraction of frames that differ, and the
    frames themselves for the checks of each effect."""
    with_it, without = rendered(clips, **ONLY[name]), rendered(clips, **OFF)
    out = {"changed": [], "views": []}
    for i in range(N_NUMPY):
        a = with_it.pair(i, np.random.default_rng([9, i]))
        b = without.pair(i, np.random.default_rng([9, i]))
        assert a.offset == b.offset and a.resolution == b.resolution
        for va, vb in ((a.view1, b.view1), (a.view2, b.view2)):
            assert va.shape == vb.shape
            out["views"].append((va, vb))
            if name == "occluded":
                seen = vb[..., 2] > 0
                out["changed"].append((va != vb).any(-1)[seen].mean())
            else:
                out["changed"].append((va != vb).any((1, 2)).mean())
    out["changed"] = np.array(out["changed"])
    return out


@pytest.fixture(scope="module")
def numpy_stats(clips):
    return {name: numpy_effects(clips, name) for name in ONLY}


def test_numpy_effects_do_what_they_say(numpy_stats):
    """Each effect alone against the same pairs without it: a swapped frame is the clean frame
    with every left joint's detection in its right joint's place (COCO indices) and back, a gap
    frame is all 0, a burst moves joints but keeps their scores, an occluded joint keeps its
    position with its score halved or goes missing, and nothing else changes."""
    lw, rw = COCO_JOINTS.index("left_wrist"), COCO_JOINTS.index("right_wrist")
    la, ra = COCO_JOINTS.index("left_ankle"), COCO_JOINTS.index("right_ankle")
    nose = COCO_JOINTS.index("nose")
    counts, moved = {}, []
    for name, stats in numpy_stats.items():
        n = 0
        for va, vb in stats["views"]:
            if name == "occluded":
                diff = (va != vb).any(-1)
                dimmed = diff & (va[..., 2] > 0)
                np.testing.assert_array_equal(va[..., :2][dimmed], vb[..., :2][dimmed])
                np.testing.assert_allclose(va[..., 2][dimmed], 0.5 * vb[..., 2][dimmed], 1e-6)
                assert (va[diff & ~dimmed] == 0).all()
                n += diff.sum()
                continue
            frames = (va != vb).any((1, 2))
            n += frames.sum()
            a, b = va[frames], vb[frames]
            if name == "swap":
                np.testing.assert_array_equal(a, b[:, list(MIRROR)])
                np.testing.assert_array_equal(a[:, lw], b[:, rw])
                np.testing.assert_array_equal(a[:, ra], b[:, la])
                np.testing.assert_array_equal(a[:, nose], b[:, nose])
            elif name == "gap":
                assert (a == 0).all()
            elif name == "burst":
                both = (a[..., 2] > 0) & (b[..., 2] > 0)
                np.testing.assert_array_equal(a[..., 2][both], b[..., 2][both])
                moved += list((a[..., :2][both] != b[..., :2][both]).any(-1))
        counts[name] = n
    assert min(counts.values()) > 50, counts
    assert np.mean(moved) > 0.99  # burst joints moved (a coordinate may round alike)


def test_occluded_joints_jumps_and_bursts_against_their_definitions(clips):
    """One view through a known camera, no pixel noise: the joints beyond the torso's centre
    depth + margin (depth along the optical axis, float64) are dimmed or dropped as drawn; jump
    frames show the other person's projection, burst frames the extra noise x person height."""
    joints = clips[0].joints[:60].astype(np.float64)
    target = joints[:, :, :].reshape(-1, 3).mean(0)
    center = target + np.array([3.0, 0.2, 4.0])
    cam = cam_lib.look_at(center, target, 1500.0, 1920, 1080)
    t, j = joints.shape[:2]
    rng = np.random.default_rng(0)
    d = cam_lib.DetectorDraws(
        1.0, np.zeros((t, j, 2)), np.full((t, j), 0.9), np.zeros((t, j), bool), np.zeros(t, bool)
    )
    none = np.zeros(t, bool)
    drop = rng.random((t, j)) < 0.3
    e = render.ErrorDraws(none, none, none, none, np.zeros((t, j, 2)), drop)
    aug = render.Augment(**{**OFF, "occluded_score_cut": 0.4, "occluded_drop": 0.3})
    out = render.detect_with_errors(cam, joints, None, d, e, aug, 100.0)
    forward = (target - center) / np.linalg.norm(target - center)
    depth = (joints - center) @ forward
    torso = [COCO_JOINTS.index(n) for n in ("left_shoulder", "right_shoulder")]
    torso += [COCO_JOINTS.index(n) for n in ("left_hip", "right_hip")]
    occluded = depth > depth[:, torso].mean(1, keepdims=True) + 0.1
    assert 0.1 < occluded.mean() < 0.5
    want_score = np.where(occluded & drop, 0.0, np.where(occluded, 0.9 * 0.6, 0.9))
    np.testing.assert_allclose(out[..., 2], want_score, rtol=1e-6)
    # the left and the right side take turns on the far side as the person turns: both occur
    left = [i for i, n in enumerate(COCO_JOINTS) if n.startswith("left_")]
    right = [i for i, n in enumerate(COCO_JOINTS) if n.startswith("right_")]
    assert occluded[:, left].any() and occluded[:, right].any()

    jump, burst = none.copy(), none.copy()
    jump[10:17], burst[30:34] = True, True
    noise = rng.standard_normal((t, j, 2))
    e = render.ErrorDraws(none, jump, none, burst, noise, np.zeros((t, j), bool))
    aug = render.Augment(**{**OFF, "burst_noise": 0.05})
    other = joints + np.array([1.5, 0.0, -0.5])
    out = render.detect_with_errors(cam, joints, other, d, e, aug, 200.0)
    rel = (joints - center) @ cam.rotation.T
    uv = 1500.0 * rel[..., :2] / rel[..., 2:] + [960, 540]
    rel = (other - center) @ cam.rotation.T
    other_uv = 1500.0 * rel[..., :2] / rel[..., 2:] + [960, 540]
    want = np.where(jump[:, None, None], other_uv, uv) + np.where(
        burst[:, None, None], noise * 0.05 * 200.0, 0.0
    )
    seen = out[..., 2] > 0
    assert seen[jump].mean() > 0.5 and seen[burst].mean() > 0.5
    np.testing.assert_allclose(out[..., :2][seen], want[seen], atol=1e-3)


def test_other_person_is_the_clip_elsewhere(clips):
    """``render.other_person``: the clip at a start drawn as the pair's, mirrored alike, moved
    horizontally by the drawn distance in the drawn direction."""
    motion = clips[1].joints
    for seed, mirrored in ((0, False), (1, True)):
        got = render.other_person(
            np.random.default_rng(seed), motion, 1.1, 100, mirrored, (0.8, 2.5)
        )
        rng = np.random.default_rng(seed)
        start = rng.uniform(0, len(motion) - 1 - 99 * 1.1)
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 2.5)
        base = interpolate(motion, start + 1.1 * np.arange(100))
        if mirrored:
            base = render.mirror(base)
        shift = (got - base).reshape(-1, 3)
        np.testing.assert_allclose(shift, shift[:1].repeat(len(shift), 0), atol=1e-12)
        assert 0.8 <= np.hypot(shift[0, 0], shift[0, 2]) <= 2.5 and abs(shift[0, 1]) < 1e-12
        np.testing.assert_allclose(shift[0], distance * np.array([np.sin(angle), 0, np.cos(angle)]))


def test_run_masks_agree():
    """The numpy run mask (a loop over the runs) and the JAX one (shifted ORs) on random
    starts and lengths."""
    rng = np.random.default_rng(3)
    start = rng.random((50, 150)) < 0.05
    length = rng.integers(1, 31, (50, 150))
    want = np.stack([render.run_mask(s, n) for s, n in zip(start, length)])
    got = np.asarray(render_jax.run_mask(jnp.asarray(start), jnp.asarray(length), 30))
    np.testing.assert_array_equal(got, want)
    assert 0.2 < want.mean() < 0.8


def expected_coverage(prob: float, frames: tuple, positions: np.ndarray) -> np.ndarray:
    """P(frame t is in a run) for runs starting with probability ``prob`` at every frame of the
    window and lasting L ~ uniform{lo..hi}: 1 - prod over the k <= t frames before it of
    (1 - prob P(L > k))."""
    lo, hi = frames
    k = np.arange(hi)
    longer = np.clip((hi - k) / (hi - lo + 1), 0, 1)  # P(L > k)
    log_miss = np.cumsum(np.log1p(-prob * longer))
    return 1 - np.exp(log_miss[np.minimum(positions, hi - 1)])


@pytest.fixture(scope="module")
def jax_runs(clips):
    """JAX draws of N_JAX pairs at the BUSY rates, their run masks over each view's window,
    and the masks and pairs of the cropped views with the runs on and off."""
    pairs_on = rendered(clips, **BUSY, occluded_score_cut=0.0, occluded_drop=0.0)
    spec_on = render_jax.Spec.of(pairs_on, BUCKET, "published")
    spec_off = render_jax.Spec.of(rendered(clips, **OFF), BUCKET, "published")
    spec_occ = render_jax.Spec.of(rendered(clips, **ONLY["occluded"]), BUCKET, "published")
    packed = tuple(jnp.asarray(x) for x in render_jax.pack_clips(pairs_on))
    keys = jax.random.split(render_jax.step_key(8, 0), N_JAX)
    draws = jax.jit(jax.vmap(lambda k: render_jax.draw(k, spec_on, packed[1])))(keys)

    def batch(spec):
        fn = jax.jit(jax.vmap(lambda d: render_jax.render_pair(spec, *packed, d)[0]))
        return jax.device_get(fn(draws))

    d = jax.device_get(draws)
    masks = {}
    for name in RUNS:
        start = d._asdict()[name + "_u"] < getattr(spec_on, name + "_prob")
        length, longest = d._asdict()[name + "_len"], getattr(spec_on, name + "_frames")[1]
        masks[name] = np.asarray(
            render_jax.run_mask(jnp.asarray(start), jnp.asarray(length), longest)
        )
    return dict(
        spec=spec_on,
        draws=d,
        masks=masks,
        on=batch(spec_on),
        off=batch(spec_off),
        occ=batch(spec_occ),
    )


def crop_of(masks_view: np.ndarray, first: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(N, W) window masks -> (N, BUCKET) masks of the cropped frames (False after them)."""
    t = np.arange(BUCKET)
    idx = np.minimum(first[:, None] + t, masks_view.shape[1] - 1)
    return np.take_along_axis(masks_view, idx, 1) & (t < length[:, None])


def test_jax_runs_start_and_cover_at_the_configured_rates(jax_runs):
    """Run starts over the real frames of every window: the configured probability within 4.5
    binomial standard deviations; covered frames: the exact coverage of the run model within
    4.5 standard errors of the per-view fractions."""
    d, spec = jax_runs["draws"], jax_runs["spec"]
    real = np.arange(spec.window)[None, None, :] < d.window[:, None, None]  # (N, 1, W)
    real = np.broadcast_to(real, (N_JAX, 2, spec.window))
    positions = np.broadcast_to(np.arange(spec.window), real.shape)
    for name in RUNS:
        p, frames = getattr(spec, name + "_prob"), getattr(spec, name + "_frames")
        starts = d._asdict()[name + "_u"][real] < p
        se = np.sqrt(p * (1 - p) / starts.size)
        assert abs(starts.mean() - p) < 4.5 * se, (name, starts.mean(), p)
        lengths = d._asdict()[name + "_len"][real]
        assert lengths.min() == frames[0] and lengths.max() == frames[1], name
        covered = jax_runs["masks"][name]
        want = expected_coverage(p, frames, positions)
        per_view = (covered & real).sum(-1) / real.sum(-1)
        want_view = (want * real).sum(-1) / real.sum(-1)
        se = (per_view - want_view).std() / np.sqrt(per_view.size)
        assert abs(per_view.mean() - want_view.mean()) < 4.5 * se, (name, per_view.mean())


def test_jax_effects_do_what_they_say(jax_runs):
    """All four runs on against off, frame by frame of the cropped views: frames in no run are
    unchanged, gap frames are 0, frames swapped and in no other run are the clean frame with
    left and right exchanged, burst-only frames keep their scores; occluded joints dimmed by
    half or dropped."""
    d, on, off, occ = jax_runs["draws"], jax_runs["on"], jax_runs["off"], jax_runs["occ"]
    firsts = (np.maximum(d.offset, 0), np.maximum(-d.offset, 0))
    for v, first in enumerate(firsts):
        key = f"poses{v + 1}"
        m = {n: crop_of(jax_runs["masks"][n][:, v], first, d.length[:, v]) for n in RUNS}
        real = on[f"mask{v + 1}"]
        a, b = on[key], off[key]
        anything = m["swap"] | m["jump"] | m["gap"] | m["burst"]
        # separate compilations (with every error off none is computed) may round differently:
        # float32 rounding of the normalized coordinates, a few 1e-6
        close = dict(rtol=0, atol=1e-5)
        np.testing.assert_allclose(a[real & ~anything], b[real & ~anything], **close)
        assert (a[real & m["gap"]] == 0).all()
        swap_only = real & m["swap"] & ~(m["jump"] | m["gap"] | m["burst"])
        np.testing.assert_allclose(a[swap_only], b[swap_only][:, list(MIRROR)], **close)
        burst_only = real & m["burst"] & ~(m["jump"] | m["gap"] | m["swap"])
        both = (a[burst_only][..., 2] > 0) & (b[burst_only][..., 2] > 0)
        np.testing.assert_allclose(
            a[burst_only][..., 2][both], b[burst_only][..., 2][both], **close
        )
        assert (a[burst_only][..., :2] != b[burst_only][..., :2]).any(-1)[both].mean() > 0.99
        jump_only = real & m["jump"] & ~(m["swap"] | m["gap"] | m["burst"])
        assert (a[jump_only] != b[jump_only]).any((1, 2)).all()
        assert min(swap_only.sum(), burst_only.sum(), jump_only.sum()) > 100
        assert (real & m["gap"]).sum() > 100
        c = occ[key]
        diff = np.abs(c - b).max(-1) > close["atol"]
        dimmed = diff & (c[..., 2] > 0)
        np.testing.assert_allclose(c[..., :2][dimmed], b[..., :2][dimmed], **close)
        np.testing.assert_allclose(c[..., 2][dimmed], 0.5 * b[..., 2][dimmed], rtol=1e-6)
        assert (c[diff & ~dimmed] == 0).all()
        # an occluded joint goes missing with probability occluded_drop (0.25), independently
        dropped = (diff & ~dimmed).sum()
        n = diff.sum()
        assert abs(dropped / n - 0.25) < 4.5 * np.sqrt(0.25 * 0.75 / n), (dropped, n)


def ks_distance(a, b) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, "right") / len(a)
    return float(np.abs(cdf_a - np.searchsorted(b, grid, "right") / len(b)).max())


def test_numpy_and_jax_effects_follow_the_same_distributions(numpy_stats, jax_runs):
    """Per view, the fraction of frames each run effect changes (numpy: the pair with the effect
    against the pair without; JAX: the cropped run masks, shown above to be exactly the changed
    frames) and the fraction of seen joints occlusion changes: KS distance below the 0.1 %
    critical value and means within 4.5 standard errors."""
    d = jax_runs["draws"]
    firsts = (np.maximum(d.offset, 0), np.maximum(-d.offset, 0))
    for name in ONLY:
        want = numpy_stats[name]["changed"]
        if name == "occluded":
            got = []
            for v in range(2):
                a, b = jax_runs["occ"][f"poses{v + 1}"], jax_runs["off"][f"poses{v + 1}"]
                seen = b[..., 2] > 0
                changed = np.abs(a - b).max(-1) > 1e-6
                got.append((changed & seen).sum((1, 2)) / seen.sum((1, 2)))
        else:
            got = []
            for v, first in enumerate(firsts):
                m = crop_of(jax_runs["masks"][name][:, v], first, d.length[:, v])
                got.append(m.sum(1) / d.length[:, v])
        got = np.concatenate(got)
        n, m = len(want), len(got)
        critical = 1.95 * np.sqrt((n + m) / (n * m))
        assert ks_distance(want, got) < critical, (name, ks_distance(want, got), critical)
        se = np.sqrt(want.var() / n + got.var() / m)
        assert abs(want.mean() - got.mean()) < 4.5 * se, (name, want.mean(), got.mean(), se)
        assert got.mean() > 0.01, name
