"""The Flax embedding against a float64 numpy forward written in the published (N, C, T, V)
layout and operation order of the published network, plus padding, BatchNorm and shape checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesyn_jax import graph
from sesyn_jax.model import STGCNEmbedding, count_params, init_variables


def perturbed_variables(model, seed, frames=16):
    """Initial variables moved away from their init (random BN statistics, edge importances,
    biases), so that a swapped or dropped tensor cannot go unnoticed."""
    variables = init_variables(model, jax.random.PRNGKey(seed), frames)
    rng = np.random.default_rng(seed)

    def bump(path, x):
        name = jax.tree_util.keystr(path)
        x = np.asarray(x)
        if name.endswith("['var']"):
            return jnp.asarray(rng.uniform(0.5, 2.0, x.shape), jnp.float32)
        if "edge_importance" in name:
            return jnp.asarray(rng.uniform(0.5, 1.5, x.shape), jnp.float32)
        return jnp.asarray(x + rng.normal(0, 0.05, x.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(bump, variables)


def np_bn(x, p, s, axis_c, train, mask=None):
    """x with channels on axis_c; stats over the other axes (real positions only)."""
    shape = [1] * x.ndim
    shape[axis_c] = -1
    if train:
        xm = np.moveaxis(x, axis_c, -1)
        w = np.ones(xm.shape[:-1], bool) if mask is None else mask
        vals = xm[w]
        mean, var = vals.mean(0), vals.var(0)
        n = vals.shape[0]
        new = dict(mean=0.9 * s["mean"] + 0.1 * mean, var=0.9 * s["var"] + 0.1 * var * n / (n - 1))
    else:
        mean, var, new = s["mean"], s["var"], None
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5)
    return y * p["scale"].reshape(shape) + p["bias"].reshape(shape), new


def np_forward(variables, poses, layout="coco", strategy="spatial", train=False):
    """Unmasked float64 forward in the published layout: (N, C, T, V)."""
    P = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
    S = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["batch_stats"])
    lay = graph.get_layout(layout)
    A = graph.adjacency(layout, strategy)
    x = np.asarray(poses, np.float64)[:, :, list(lay.joints)]
    n, t, v, c = x.shape
    x = x.transpose(0, 2, 3, 1).reshape(n, v * c, t)  # (N, V*C, T), channel v*C + c
    x, _ = np_bn(x, P["data_bn"], S["data_bn"], 1, train)
    x = x.reshape(n, v, c, t).transpose(0, 2, 3, 1)  # (N, C, T, V)
    i = 0
    while f"block_{i}" in P:
        bp, bs = P[f"block_{i}"], S[f"block_{i}"]
        a = A * P[f"edge_importance_{i}"]
        k = a.shape[0]
        if "residual_conv" in bp:
            r = (
                np.einsum("nitv,io->notv", x, bp["residual_conv"]["kernel"])
                + bp["residual_conv"]["bias"][:, None, None]
            )
            res, _ = np_bn(r, bp["residual_bn"], bs["residual_bn"], 1, train)
        elif i == 0:
            res = 0.0
        else:
            res = x
        y = np.einsum("nitv,io->notv", x, bp["gcn"]["kernel"]) + bp["gcn"]["bias"][:, None, None]
        cout = y.shape[1] // k
        y = y.reshape(n, k, cout, t, v)
        y = np.einsum("nkctv,kvw->nctw", y, a)
        y, _ = np_bn(y, bp["tcn_bn1"], bs["tcn_bn1"], 1, train)
        y = np.maximum(y, 0)
        kern = bp["tcn_conv"]["kernel"]  # (k_t, C_in, C_out)
        kt = kern.shape[0]
        yp = np.pad(y, ((0, 0), (0, 0), (kt // 2, kt // 2), (0, 0)))
        z = np.zeros((n, kern.shape[2], t, v))
        for dt in range(kt):
            z += np.einsum("nitv,io->notv", yp[:, :, dt : dt + t], kern[dt])
        z += bp["tcn_conv"]["bias"][:, None, None]
        z, _ = np_bn(z, bp["tcn_bn2"], bs["tcn_bn2"], 1, train)
        x = np.maximum(z + res, 0)
        i += 1
    return x.transpose(0, 2, 3, 1).reshape(n, t, -1)  # index v * C_out + c


def test_published_architecture_size():
    model = STGCNEmbedding()
    variables = init_variables(model, jax.random.PRNGKey(0))
    assert count_params(variables["params"]) == 1_167_009
    out = model.apply(variables, jnp.zeros((2, 30, 17, 3)))
    assert out.shape == (2, 30, 17 * 128)


@pytest.mark.parametrize(
    "layout,strategy", [("coco", "spatial"), ("9", "uniform"), ("13", "distance")]
)
def test_eval_forward_matches_numpy(layout, strategy):
    model = STGCNEmbedding(layout=layout, strategy=strategy, widths=(8, 8, 16), kernel_size=5)
    variables = perturbed_variables(model, 1)
    poses = np.random.default_rng(0).normal(size=(2, 21, 17, 3)).astype(np.float32)
    out = np.asarray(model.apply(variables, jnp.asarray(poses)))
    ref = np_forward(variables, poses, layout, strategy)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_published_size_forward_matches_numpy():
    model = STGCNEmbedding()
    variables = perturbed_variables(model, 2)
    poses = np.random.default_rng(1).normal(size=(1, 24, 17, 3)).astype(np.float32)
    out = np.asarray(model.apply(variables, jnp.asarray(poses)))
    ref = np_forward(variables, poses)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(out / scale, ref / scale, atol=1e-5)


def test_train_forward_and_batch_stats_match_numpy():
    model = STGCNEmbedding(widths=(8, 16), kernel_size=3)
    variables = perturbed_variables(model, 3)
    poses = np.random.default_rng(2).normal(size=(3, 10, 17, 3)).astype(np.float32)
    out, upd = model.apply(variables, jnp.asarray(poses), train=True, mutable=["batch_stats"])
    ref = np_forward(variables, poses, train=True)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-4)
    # data_bn running statistics: PyTorch momentum 0.1 and the unbiased variance.
    x = poses.reshape(3 * 10, 51).astype(np.float64)
    old = variables["batch_stats"]["data_bn"]
    np.testing.assert_allclose(
        upd["batch_stats"]["data_bn"]["mean"],
        0.9 * np.asarray(old["mean"]) + 0.1 * x.mean(0),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        upd["batch_stats"]["data_bn"]["var"],
        0.9 * np.asarray(old["var"]) + 0.1 * x.var(0, ddof=1),
        rtol=1e-5,
    )


def test_padding_does_not_change_real_frames():
    model = STGCNEmbedding(widths=(8, 8, 16), kernel_size=5)
    variables = perturbed_variables(model, 4)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(13, 17, 3)).astype(np.float32)
    b = rng.normal(size=(20, 17, 3)).astype(np.float32)
    batch = np.full((2, 20, 17, 3), 7.0, np.float32)  # garbage in padded frames
    batch[0, :13] = a
    batch[1] = b
    mask = np.zeros((2, 20), bool)
    mask[0, :13] = True
    mask[1] = True

    # eval mode: each sequence alone, unpadded
    out = np.asarray(model.apply(variables, jnp.asarray(batch), jnp.asarray(mask)))
    alone = np.asarray(model.apply(variables, jnp.asarray(a[None])))[0]
    np.testing.assert_allclose(out[0, :13], alone, rtol=1e-5, atol=1e-6)
    assert np.all(out[0, 13:] == 0)

    # train mode: statistics over real frames only == the two sequences' frames pooled
    out_t, upd = model.apply(
        variables, jnp.asarray(batch), jnp.asarray(mask), train=True, mutable=["batch_stats"]
    )
    ref = np_forward(variables, batch, train=True)  # unmasked: would differ
    assert not np.allclose(np.asarray(out_t)[1], ref[1], atol=1e-3)
    x = np.concatenate([a.reshape(13, 51), b.reshape(20, 51)]).astype(np.float64)
    old = variables["batch_stats"]["data_bn"]
    np.testing.assert_allclose(
        upd["batch_stats"]["data_bn"]["var"],
        0.9 * np.asarray(old["var"]) + 0.1 * x.var(0, ddof=1),
        rtol=1e-5,
    )


def test_bad_input_shapes():
    model = STGCNEmbedding(widths=(4,))
    variables = init_variables(model, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="18 joints"):
        model.apply(variables, jnp.zeros((1, 5, 18, 3)))
    with pytest.raises(ValueError, match="poses must be"):
        model.apply(variables, jnp.zeros((5, 17, 3)))


@pytest.mark.parametrize("mode", ["edge", "reflect"])
def test_temporal_padding_modes_against_numpy(mode):
    """'edge' / 'reflect' temporal padding equals numpy's np.pad of each sequence at its own
    length followed by a float64 valid convolution; padded batch rows change nothing."""
    from sesyn_jax.model import TemporalConv

    rng = np.random.default_rng(0)
    k, c_in, c_out = 5, 3, 4
    x = rng.normal(size=(2, 11, 2, c_in)).astype(np.float32)
    lengths = np.array([11, 3])
    conv = TemporalConv(c_out, k, padding=mode)
    variables = conv.init(jax.random.PRNGKey(0), jnp.asarray(x))
    w = np.asarray(variables["params"]["kernel"], np.float64)
    bias = np.asarray(variables["params"]["bias"], np.float64)
    y = np.asarray(conv.apply(variables, jnp.asarray(x), jnp.asarray(lengths)))
    for b, n in enumerate(lengths):
        xp = np.pad(x[b, :n].astype(np.float64), ((2, 2), (0, 0), (0, 0)), mode=mode)
        want = np.stack([np.einsum("kvi,kio->vo", xp[t : t + k], w) for t in range(n)]) + bias
        np.testing.assert_allclose(y[b, :n], want, rtol=1e-5, atol=1e-5)


def test_padding_option_checked():
    with pytest.raises(ValueError, match="padding"):
        init_variables(STGCNEmbedding(widths=(8,), padding="circular"), jax.random.PRNGKey(0))


def test_inner_mask_against_numpy():
    from sesyn_jax.model import inner_mask

    lengths = np.array([10, 3, 7, 0])
    mask = np.arange(10)[None, :] < lengths[:, None]
    got = np.asarray(inner_mask(jnp.asarray(mask), 2))
    want = np.zeros_like(mask)
    for b, n in enumerate(lengths):
        want[b, 2 : max(2, n - 2)] = True
    want[1] = mask[1]  # 3 frames have no inner frame: keep the real ones
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.asarray(inner_mask(jnp.asarray(mask), 0)), mask)


@pytest.mark.parametrize("padding", ["zero", "edge", "reflect"])
def test_inner_frames_cannot_see_where_a_sequence_ends(padding):
    """A frame further than the receptive radius from both ends embeds the same whatever the
    sequence around it is cut to; a frame near an end does not (that is the cue)."""
    model = STGCNEmbedding(widths=(8, 8, 16), kernel_size=5, padding=padding)
    assert model.receptive_radius == 6
    variables = perturbed_variables(model, seed=2)
    x = np.random.default_rng(1).normal(size=(1, 60, 17, 3)).astype(np.float32)
    whole = np.asarray(model.apply(variables, x))[0]
    cut = np.asarray(model.apply(variables, x[:, 10:50]))[0]  # frame m of cut = m + 10
    np.testing.assert_allclose(cut[6:34], whole[16:44], rtol=1e-5, atol=1e-5)
    assert np.abs(cut[0] - whole[10]).max() > 1e-3


@pytest.mark.parametrize("form", ["batched", "einsum"])
def test_neighbourhood_sum_forms_against_numpy(form):
    """Both forms of the graph convolution's neighbourhood sum equal the float64 sum, values and
    gradients (the gradient of the adjacency feeds the learnable edge importance)."""
    from sesyn_jax.model import neighbourhood_sum

    rng = np.random.default_rng(3)
    a = graph.adjacency(graph.get_layout("coco"), "spatial") * rng.uniform(0.5, 1.5)
    x = rng.normal(size=(2, 5, 17, 4))
    g = rng.normal(size=(2, 5, 17, 3, 4))
    want = np.einsum("btvi,kvw->btwki", x, a)
    want_dx = np.einsum("btwki,kvw->btvi", g, a)
    want_da = np.einsum("btwki,btvi->kvw", g, x)
    f = lambda x, a: jnp.sum(neighbourhood_sum(x, a, form=form) * g.astype(np.float32))
    got = neighbourhood_sum(jnp.asarray(x, jnp.float32), jnp.asarray(a, jnp.float32), form=form)
    dx, da = jax.grad(f, argnums=(0, 1))(jnp.asarray(x, jnp.float32), jnp.asarray(a, jnp.float32))
    for have, ref in ((got, want), (dx, want_dx), (da, want_da)):
        np.testing.assert_allclose(np.asarray(have), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="form"):
        neighbourhood_sum(jnp.asarray(x, jnp.float32), jnp.asarray(a, jnp.float32), form="loop")


def test_neighbourhood_sum_takes_the_batched_form_on_the_cpu(monkeypatch):
    """Without a form, the CPU gets the per-frame batched product and an accelerator the einsum,
    decided without starting a backend."""
    from sesyn_jax import hostmem
    from sesyn_jax.model import neighbourhood_sum

    x, a = jnp.ones((1, 2, 17, 3)), jnp.ones((3, 17, 17))
    batched = "([2], [1]), ([0], [0])"  # the product's batch axis: one product per frame
    assert hostmem.cpu_backend()
    jaxpr = lambda: str(jax.make_jaxpr(lambda x, a: neighbourhood_sum(x, a))(x, a))  # untraced
    assert batched in jaxpr()
    monkeypatch.setattr(hostmem, "cpu_backend", lambda: False)
    assert batched not in jaxpr()
