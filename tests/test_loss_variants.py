"""Loss variants: every term against a float64 numpy transcription of its equation, padded and
unpadded; variants selected by name; the ablation runner end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesyn_jax import ablate, losses, variants
from sesyn_jax.train.state import create_state, make_optimizer
from sesyn_jax.train.step import make_train_step
from sesyn_jax.model import STGCNEmbedding, init_variables

from test_losses import make_pair, np_softmax, pad


def np_sim(a, b, kind="l2", temperature=1.0, scale_by_dim=False):
    if kind == "l2":
        s = -np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T, 0)
    else:
        s = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (
            b / np.linalg.norm(b, axis=1, keepdims=True)
        ).T
    if scale_by_dim:
        s = s / a.shape[1]
    return s / temperature


def np_terms(fu, fv, sim, tau=1, lam=0.001, delta=1.0):
    fu, fv = fu.astype(np.float64), fv.astype(np.float64)
    m = len(fu)
    s = np_sim(np_softmax(np_sim(fu, fv, **sim)) @ fv, fu, **sim)
    logp = s - s.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    g = np.arange(m, dtype=np.float64)
    beta = np_softmax(s)
    mu = beta @ g
    var = (beta * (g[None] - mu[:, None]) ** 2).sum(1)
    err = mu - g
    hub = np.where(np.abs(err) <= delta, 0.5 * err**2, delta * (np.abs(err) - 0.5 * delta))
    return {
        "identity": -np.mean(np.diag(logp)),
        "deviation": np.mean(np.abs(err)),
        "interval": np.mean([abs(mu[i] - mu[i - tau] - tau) for i in range(tau, m)]),
        "tcc_reg": np.mean(err**2),
        "tcc_reg_var": np.mean(err**2 / var + lam * 0.5 * np.log(var)),
        "tcc_reg_huber": np.mean(hub),
    }


TERM_CALLS = {
    "identity": ("identity", {}),
    "deviation": ("deviation", {}),
    "interval": ("interval", {"tau": 2}),
    "tcc_reg": ("tcc_reg", {}),
    "tcc_reg_var": ("tcc_reg", {"variance": True}),
    "tcc_reg_huber": ("tcc_reg", {"huber_delta": 1.0}),
}
SIMS = [
    dict(kind="l2"),
    dict(kind="l2", temperature=0.1, scale_by_dim=True),
    dict(kind="cosine", temperature=0.1),
    dict(kind="cosine"),
]


@pytest.mark.parametrize("sim", SIMS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_terms_match_numpy_padded_and_unpadded(sim):
    fu, fv = make_pair(11, 18, 21, c=8, scale=0.3)
    if sim.get("scale_by_dim"):
        fu, fv = fu * 3, fv * 3
    ref = np_terms(fu, fv, sim, tau=2)
    pu, mu = pad(fu, 26, 4.0)
    pv, mv = pad(fv, 26, -2.0)
    opts = {
        "similarity": sim["kind"],
        "temperature": sim.get("temperature", 1.0),
        "scale_by_dim": sim.get("scale_by_dim", False),
    }
    for name, (term, extra) in TERM_CALLS.items():
        fn = losses.LOSS_TERMS[term]
        plain = float(fn(jnp.asarray(fu), jnp.asarray(fv), **extra, **opts))
        padded = float(
            fn(jnp.asarray(pu), jnp.asarray(pv), jnp.asarray(mu), jnp.asarray(mv), **extra, **opts)
        )
        np.testing.assert_allclose(plain, ref[name], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(padded, ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "name",
    [
        "iden",
        "iden+devi",
        "iden+devi+intv",
        "tcc_cls",
        "tcc_reg",
        "tcc_reg_var",
        "tcc_reg_huber",
        "iden+devi+intv_cos_t0.1",
    ],
)
def test_variant_names_train(name):
    """A variant's name (its config line) is all it takes: one jitted train step runs, with a
    finite loss and a gradient norm per term."""
    weights, options = variants.resolve(name)
    model = STGCNEmbedding(widths=(8,), kernel_size=3)
    tx = make_optimizer(0.01)
    state = create_state(init_variables(model, jax.random.PRNGKey(0)), tx)
    rng = np.random.default_rng(0)
    batch = {
        "poses1": jnp.asarray(rng.normal(size=(2, 12, 17, 3)), jnp.float32),
        "poses2": jnp.asarray(rng.normal(size=(2, 12, 17, 3)), jnp.float32),
        "mask1": jnp.ones((2, 12), bool),
        "mask2": jnp.arange(12)[None].repeat(2, 0) < 10,
    }
    step = jax.jit(make_train_step(model, losses.make_loss_fn(weights, options), tx))
    state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    assert set(weights) <= {k.split("/")[1] for k in metrics if k.startswith("grad_norm/")}
    if name.endswith("cos_t0.1"):
        assert options["interval"] == {"similarity": "cosine", "temperature": 0.1}
    with pytest.raises(ValueError, match="unknown loss variant"):
        variants.resolve("iden+foo")


def test_ablation_runner_and_resume(tmp_path, monkeypatch):
    cfg_path = tmp_path / "cfg.py"
    cfg_path.write_text(
        "from configs import quickstart\n"
        "def get_config():\n"
        "    c = quickstart.get_config()\n"
        "    c.data.camera_pairs = 1\n"
        "    c.model.widths = (8, 16)\n"
        "    c.model.kernel_size = 5\n"
        "    c.train.epochs = 1\n"
        "    c.train.eval_every = 0\n"
        "    return c\n"
    )
    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = [
        "--config",
        str(cfg_path),
        "--variants",
        "iden,tcc_cls",
        "--seeds",
        "0,1",
        "--workdir",
        str(tmp_path / "abl"),
        "--config.train.lr=0.0123",  # applies to every variant
    ]
    assert ablate.main(args) == 0
    run_cfg = json.loads((tmp_path / "abl" / "tcc_cls" / "seed1" / "config.json").read_text())
    assert run_cfg["train"]["lr"] == 0.0123 and run_cfg["seed"] == 1
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())["table"]
    assert set(table) == {"iden", "tcc_cls"}
    runs = table["iden"]["frame_error"]["runs"]
    assert len(runs) == 2
    np.testing.assert_allclose(table["iden"]["frame_error"]["std"], np.std(runs, ddof=1))
    assert (tmp_path / "abl" / "ablation.png").exists()
    # resuming: finished runs are read back, nothing retrains
    mtime = os.path.getmtime(tmp_path / "abl" / "iden" / "seed0" / "export" / "model.json")
    assert ablate.main(args) == 0
    assert os.path.getmtime(tmp_path / "abl" / "iden" / "seed0" / "export" / "model.json") == mtime


def test_summary_leaves_diverged_runs_out_of_the_means():
    runs = {
        "a": [
            {
                "frame_error": 2.0,
                "acc@1": 0.5,
                "acc@5": 0.8,
                "acc@10": 0.9,
                "rel_error": 0.1,
                "racc@10": 0.4,
            },
            ablate.diverged_result(12),
            {
                "frame_error": 4.0,
                "acc@1": 0.3,
                "acc@5": 0.6,
                "acc@10": 0.7,
                "rel_error": 0.3,
                "racc@10": 0.2,
            },
        ]
    }
    t = ablate.summarize(runs)["a"]
    assert t["diverged"] == 1
    assert t["frame_error"]["mean"] == pytest.approx(3.0)
    assert t["frame_error"]["std"] == pytest.approx(np.sqrt(2.0))
    assert "diverged" in ablate.markdown(ablate.summarize(runs), [0, 1, 2])


def test_cosine_similarity_gradient_finite_with_zero_frames():
    """Padded frames embed as zeros; the cosine option must not turn them into nan gradients."""
    import jax

    from sesyn_jax import losses

    f_u = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32).at[4:].set(0.0)
    f_v = jnp.asarray(np.random.default_rng(1).normal(size=(5, 4)), jnp.float32).at[3:].set(0.0)
    mu, mv = jnp.arange(6) < 4, jnp.arange(5) < 3
    grads = jax.grad(
        lambda a, b: losses.identity_loss(a, b, mu, mv, similarity="cosine", temperature=0.1),
        argnums=(0, 1),
    )(f_u, f_v)
    assert all(bool(jnp.isfinite(g).all()) for g in grads)
    s = np.asarray(losses.cosine_similarity(f_u[:4], f_v[:3]), np.float64)
    a, b = np.asarray(f_u[:4], np.float64), np.asarray(f_v[:3], np.float64)
    want = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (
        b / np.linalg.norm(b, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)
