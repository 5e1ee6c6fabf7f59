"""Pairs rendered on the device against the numpy renderer: the same draws give the same pairs
(projection, corruption, crop and normalization to float32 rounding), fresh draws follow the same
distributions (two-sample Kolmogorov-Smirnov bounds and means within their standard errors), a
key gives one batch, and the batch sharded over four devices equals the unsharded one."""

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesyn_jax.data import mocap_syn, render, render_jax
from sesyn_jax.data import normalization as norm_lib
from sesyn_jax.data.pairs import pad_to

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = 128
MIN_LENGTH = 64  # what the shipped recipe's trainer asks for (2 x receptive radius 24 + 16)


class RecordingRng:
    """A numpy Generator that records every draw as (method, args, result)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self.rng, name)

        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            self.calls.append((name, args, result))
            return result

        return call


@pytest.fixture(scope="module")
def pairs():
    clips = [c for c in mocap_syn.load_embedded() if c.name not in mocap_syn.TEST_CLIPS]
    return render.RenderedPairs(
        clips, mocap_syn.BuildConfig(), render.Augment(), 256, 0, MIN_LENGTH
    )


@pytest.fixture(scope="module")
def packed(pairs):
    clips, lengths = render_jax.pack_clips(pairs)
    return jnp.asarray(clips), jnp.asarray(lengths)


def numpy_draws(calls, spec: render_jax.Spec, aug: render.Augment) -> tuple[dict, list]:
    """The draws ``RenderedPairs.pair`` made, in the order it makes them, as ``Draws`` fields
    (per-frame fields padded to the window), and the pixel sigma of each view."""
    it = iter(calls)

    def take(name):
        method, args, result = next(it)
        assert method == name, (method, name)
        return args, result

    w = spec.window
    d = dict(clip=take("choice")[1], stretch=np.exp(take("uniform")[1]))
    d["start"] = take("uniform")[1]
    d["mirror"] = take("random")[1] < aug.mirror
    d["size"] = take("integers")[1]
    d["azimuth"] = take("uniform")[1]
    separation = take("uniform")[1]
    d["separation"] = separation * take("choice")[1]
    cams = np.array([[take("uniform")[1] for _ in range(3)] for _ in range(2)])
    d["focal"], d["distance"], d["height"] = cams.T
    views, sigmas = [], []
    for _ in range(2):
        v = dict(noise=take("uniform")[1], missing_prob=take("uniform")[1])
        v["drop_prob"] = take("uniform")[1]
        sigma = take("uniform")[1]
        sigmas.append(sigma)
        noise = take("normal")[1]
        window = len(noise)
        v["pixel_noise"] = np.zeros((w, 17, 2))
        v["pixel_noise"][:window] = noise / sigma
        v["score"] = np.full((w, 17), 0.8)
        v["score"][:window] = take("uniform")[1]
        v["missing_u"] = np.ones((w, 17))
        v["missing_u"][:window] = take("random")[1]
        v["drop_u"] = np.ones(w)  # a frame is kept when drop_u >= drop_prob (0: no draw)
        if v["drop_prob"] > 0:
            v["drop_u"][:window] = take("random")[1]
        views.append(v)
    for k in views[0]:
        d[k] = np.stack([views[0][k], views[1][k]])
    d["window"] = window
    d["offset"] = take("integers")[1]
    d["length"] = take("integers")[1]
    # the detector's errors (render.other_person, render.draw_errors), drawn last
    d["other_start"], d["other_angle"], d["other_distance"] = 0.0, 0.0, 0.0
    if aug.jump_prob > 0:
        d["other_start"], d["other_angle"] = take("uniform")[1], take("uniform")[1]
        d["other_distance"] = take("uniform")[1]
    errors = []
    for _ in range(2):
        e = {}
        for name in render_jax.RUNS:
            e[name + "_u"], e[name + "_len"] = np.ones(w), np.ones(w)  # u >= prob: no run
            if getattr(aug, name + "_prob") > 0:
                e[name + "_u"][:window] = take("random")[1]
                e[name + "_len"][:window] = take("integers")[1]
        e["burst_noise"] = np.zeros((w, 17, 2))
        if aug.burst_prob > 0:
            e["burst_noise"][:window] = take("standard_normal")[1]
        e["occluded_u"] = np.ones((w, 17))
        if aug.occluded_drop > 0:
            e["occluded_u"][:window] = take("random")[1]
        errors.append(e)
    for k in errors[0]:
        d[k] = np.stack([errors[0][k], errors[1][k]])
    assert next(it, None) is None, "the numpy renderer made draws this test does not know"
    dtypes = {"clip": np.int32, "window": np.int32, "size": np.int32, "offset": np.int32}
    dtypes.update({name + "_len": np.int32 for name in render_jax.RUNS})
    fields = {k: np.asarray(d[k], dtypes.get(k, np.float32)) for k in render_jax.Draws._fields}
    fields["mirror"] = np.asarray(d["mirror"], bool)
    fields["length"] = fields["length"].astype(np.int32)
    return fields, sigmas


def batch_row(pair, normalization: str) -> dict:
    """One row of ``PairBatcher.make_batch`` for a numpy pair: each view brought to the model's
    normalization and padded to the bucket."""
    r1, r2 = pair.resolutions
    a, m1 = pad_to(norm_lib.renormalize(pair.view1, normalization, r1), BUCKET)
    b, m2 = pad_to(norm_lib.renormalize(pair.view2, normalization, r2), BUCKET)
    return dict(poses1=a, mask1=m1, poses2=b, mask2=m2, offset=pair.offset)


def stack(rows):
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("normalization", ["person", "published"])
def test_same_draws_give_the_numpy_pairs(pairs, packed, normalization):
    """The numpy renderer's own draws (recorded) through the device rendering: the same views,
    masks and offsets. Tolerance: float32 against float64 projection of pixels up to ~2000,
    about 1e-4 px, i.e. ~1e-6 after 'published' and ~1e-5 after 'person' normalization."""
    check_same_draws(pairs, packed, normalization)


def test_same_draws_with_every_detector_error(pairs, packed):
    """As above with the detector errors at rates high enough that the 12 pairs hold runs of
    every kind (swaps, jumps, gaps, bursts) besides the occluded joints."""
    aug = render.Augment(swap_prob=0.05, jump_prob=0.05, gap_prob=0.02, burst_prob=0.05)
    busy = render.RenderedPairs(pairs.clips, pairs.cfg, aug, 256, 0, MIN_LENGTH)
    draws = check_same_draws(busy, packed, "published")
    for name in render_jax.RUNS:
        assert (draws[name + "_u"] < getattr(aug, name + "_prob")).sum() >= 3, name


def check_same_draws(pairs, packed, normalization) -> dict:
    """Pairs of the numpy renderer and of the device rendering of its recorded draws: equal
    (see the test above); returns the draws, stacked."""
    spec = render_jax.Spec.of(pairs, BUCKET, normalization)
    rows, draws = [], []
    for i in range(12):
        rng = RecordingRng([7, i])
        rows.append(batch_row(pairs.pair(i, rng), normalization))
        draws.append(numpy_draws(rng.calls, spec, pairs.augment)[0])
    want = stack(rows)
    stacked = render_jax.Draws(**{k: np.stack([d[k] for d in draws]) for k in draws[0]})
    fn = jax.jit(jax.vmap(lambda d: render_jax.render_pair(spec, *packed, d)[0]))
    got = jax.device_get(fn(stacked))
    assert len({int(d["window"]) for d in draws}) > 1 or len(set(want["offset"])) > 3
    np.testing.assert_array_equal(got["offset"], want["offset"])
    for v in ("1", "2"):
        np.testing.assert_array_equal(got["mask" + v], want["mask" + v])
        seen_want = want["poses" + v][..., 2] > 0
        seen_got = got["poses" + v][..., 2] > 0
        # a joint within rounding of the image border may flip; none did in these pairs
        assert (seen_want != seen_got).sum() == 0
        assert seen_want[want["mask" + v]].mean() > 0.5
        atol = 2e-5 if normalization == "person" else 2e-6
        np.testing.assert_allclose(got["poses" + v], want["poses" + v], atol=atol, rtol=0)
    return stacked._asdict()


def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap of the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, "right") / len(a)
    return float(np.abs(cdf_a - np.searchsorted(b, grid, "right") / len(b)).max())


def pair_statistics(batch, sigma_px) -> dict:
    """Per-pair quantities of a batch dict of numpy arrays (views in any normalization: unseen
    joints and dropped frames are 0 in every channel)."""
    out = {"offset": batch["offset"], "length1": batch["mask1"].sum(1)}
    out["length2"] = batch["mask2"].sum(1)
    out["sigma_px"] = sigma_px[:, 0]
    seen = batch["poses1"][..., 2] > 0
    real = batch["mask1"]
    dropped = real & ~seen.any(-1)
    out["dropped_frames"] = dropped.sum(1) / real.sum(1)
    kept = real & ~dropped
    out["missing_joints"] = (~seen & kept[..., None]).sum((1, 2)) / (17 * kept.sum(1))
    return out


def test_fresh_draws_follow_the_numpy_distributions(pairs, packed):
    """Offsets, crop lengths, the pixel noise sigma, the missing-joint and dropped-frame rates
    of 400 numpy pairs and 2048 device pairs: KS distance below the 0.1 % critical value
    1.95 sqrt((n + m) / (n m)) and means within 4.5 standard errors."""
    spec = render_jax.Spec.of(pairs, BUCKET, "published")
    rows, sigmas = [], []
    for i in range(400):
        rng = RecordingRng([11, i])
        rows.append(batch_row(pairs.pair(i, rng), "published"))
        sigmas.append(numpy_draws(rng.calls, spec, pairs.augment)[1])
    want = pair_statistics(stack(rows), np.array(sigmas))
    fn = jax.jit(render_jax.render_batch, static_argnums=(0, 4, 5))
    batch, info = jax.device_get(fn(spec, *packed, render_jax.step_key(3, 0), 2048, None))
    got = pair_statistics(batch, info["sigma_px"])
    n, m = len(rows), len(batch["offset"])
    critical = 1.95 * np.sqrt((n + m) / (n * m))
    for name in want:
        a, b = np.asarray(want[name], np.float64), np.asarray(got[name], np.float64)
        assert ks_distance(a, b) < critical, (name, ks_distance(a, b), critical)
        se = np.sqrt(a.var() / n + b.var() / m)
        assert abs(a.mean() - b.mean()) < 4.5 * se, (name, a.mean(), b.mean(), se)
    # the draws are not degenerate: every statistic varies, offsets span the configured range
    assert got["offset"].min() == -30 and got["offset"].max() == 30
    assert all(np.std(v) > 0 for v in got.values())


def test_per_joint_draws_are_normal_and_uniform(pairs):
    """The counter-hashed per-joint draws of 64 pairs (~650,000 of each kind): the pixel noise
    against the standard normal CDF, the missing-joint and dropped-frame uniforms against the
    uniform CDF, the scores' range; and x and y noise uncorrelated."""
    spec = render_jax.Spec.of(pairs, BUCKET, "published")
    lengths = jnp.asarray(render_jax.pack_clips(pairs)[1])
    keys = jax.random.split(render_jax.step_key(5, 0), 64)
    d = jax.device_get(jax.vmap(lambda k: render_jax.draw(k, spec, lengths))(keys))
    erf = np.vectorize(math.erf)
    for name, values, cdf in (
        ("pixel noise", d.pixel_noise, lambda x: 0.5 * (1 + erf(x / np.sqrt(2)))),
        ("missing_u", d.missing_u, lambda x: x),
        ("drop_u", d.drop_u, lambda x: x),
    ):
        x = np.sort(np.ravel(values).astype(np.float64))[::7]  # every 7th: CDF at 1e5 points
        gap = np.abs(cdf(x) - np.arange(1, len(x) + 1) / len(x)).max()
        assert gap < 1.95 / np.sqrt(len(x)), (name, gap)
    noise = d.pixel_noise.reshape(-1, 2)
    assert abs(noise.mean()) < 5 / np.sqrt(noise.size) and abs(noise.var() - 1) < 0.01
    assert abs(np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]) < 5 / np.sqrt(len(noise))
    assert d.score.min() >= 0.75 and d.score.max() < 0.98 and abs(d.score.mean() - 0.865) < 1e-3


def test_a_key_gives_one_batch(pairs):
    render_fn = render_jax.make_device_renderer(pairs, 8, (64, 128, 256), "person")
    assert render_fn.spec.bucket == BUCKET
    a = jax.device_get(render_fn(render_jax.step_key(0, 5)))
    b = jax.device_get(render_fn(render_jax.step_key(0, 5)))
    c = jax.device_get(render_fn(render_jax.step_key(0, 6)))
    d = jax.device_get(render_fn(render_jax.step_key(1, 5)))
    assert set(a) == set(render_jax.TRAIN_KEYS)
    assert a["poses1"].shape == (8, BUCKET, 17, 3) and a["mask1"].shape == (8, BUCKET)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    for other in (c, d):
        assert not np.array_equal(a["poses1"], other["poses1"])
        assert not np.array_equal(a["offset"], other["offset"])
    # rows of one batch differ from each other too
    assert len({r.tobytes() for r in a["poses2"]}) == 8


SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from sesyn_jax.data import mocap_syn, render, render_jax
    assert jax.device_count() == 4, jax.devices()
    clips = [c for c in mocap_syn.load_embedded() if c.name not in mocap_syn.TEST_CLIPS]
    pairs = render.RenderedPairs(clips, mocap_syn.BuildConfig(), render.Augment(), 256, 0, 64)
    mesh = jax.make_mesh((4,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    sharded = render_jax.make_device_renderer(pairs, 8, (128,), "person", sharding)
    plain = render_jax.make_device_renderer(pairs, 8, (128,), "person")
    key = render_jax.step_key(0, 3)
    a, b = sharded(key), plain(key)
    assert a["poses1"].sharding == sharding, a["poses1"].sharding
    assert len(a["poses1"].addressable_shards) == 4
    assert a["poses1"].addressable_shards[0].data.shape == (2, 128, 17, 3)
    a, b = jax.device_get((a, b))
    for k in ("mask1", "mask2", "offset"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for k in ("poses1", "poses2"):
        # the same draws; XLA's code for 2 rows may round differently from its code for 8
        np.testing.assert_array_equal(a[k][..., 2] > 0, b[k][..., 2] > 0, err_msg=k)
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=2e-6, err_msg=k)
    print("equal")
    """
)


def test_sharded_equals_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "equal" in out.stdout, out.stderr[-3000:]
