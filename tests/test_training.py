"""Training: the optimizer against PyTorch's SGD rule in numpy, a smoke run, kill-and-resume,
and a sharded step on 4 simulated CPU devices."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sesyn_jax import checkpoint, config_checks
from sesyn_jax.train import loop
from sesyn_jax.train import state as train_state
from sesyn_jax.train.loop import train_and_evaluate
from sesyn_jax.train.state import create_state, make_optimizer
from sesyn_jax.train.step import embed_views, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_optimizer_equals_pytorch_sgd_nesterov_rule():
    """torch.optim.SGD(lr, momentum, nesterov=True, weight_decay) written out in numpy."""
    lr, mu, wd = 0.005, 0.9, 1e-4
    rng = np.random.default_rng(0)
    p = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))}
    grads = [{k: rng.normal(size=v.shape) for k, v in p.items()} for _ in range(4)]
    ref = {k: v.copy() for k, v in p.items()}
    buf = {}
    for g in grads:
        for k in ref:
            d = g[k] + wd * ref[k]
            buf[k] = d.copy() if k not in buf else mu * buf[k] + d
            ref[k] = ref[k] - lr * (d + mu * buf[k])
    tx = make_optimizer(lr, mu, True, wd)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, p)
        state = tx.init(params)
        for g in grads:
            upd, state = tx.update(jax.tree_util.tree_map(jnp.asarray, g), state, params)
            params = optax.apply_updates(params, upd)
        for k in ref:
            np.testing.assert_allclose(np.asarray(params[k]), ref[k], rtol=1e-12)


def tiny_config(**train):
    from configs import quickstart

    c = quickstart.get_config()
    c.data.camera_pairs = 1
    c.model.widths = (8, 16)
    c.model.kernel_size = 5
    c.train.epochs = 3
    c.train.batch_size = 8
    c.train.eval_every = 0
    c.train.checkpoint_every = 1
    c.train.log_every = 1
    for k, v in train.items():
        setattr(c.train, k, v)
    return c


def test_smoke_run_and_export(tmp_path):
    cfg = tiny_config(epochs=1)
    res = train_and_evaluate(cfg, str(tmp_path / "run"), progress=False)
    assert res["status"] == "finished" and res["recompiles_after_first_epoch"] == 0
    loaded = checkpoint.load_inference(str(tmp_path / "run"))
    assert loaded.model_config["widths"] == (8, 16)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert "frame_error" in rows[-1]["val"]
    with pytest.raises(config_checks.ConfigError, match=r"another config .*train\.epochs: 1 -> 2"):
        train_and_evaluate(tiny_config(epochs=2), str(tmp_path / "run"), progress=False)


def test_a_workdir_that_cannot_be_resumed_is_named_and_left_as_it_was(tmp_path):
    work = str(tmp_path / "run")
    res = train_and_evaluate(tiny_config(epochs=2), work, stop_after_steps=1, progress=False)
    assert res["status"] == "interrupted"
    saved = (tmp_path / "run" / "config.json").read_text()
    # checkpoints of another network, config.json gone: refused, and no config.json written
    # that would then refuse the right config
    os.remove(tmp_path / "run" / "config.json")
    other = tiny_config(epochs=2)
    other.model.widths = (4, 4)
    with pytest.raises(config_checks.ConfigError, match="checkpoints/1 cannot be restored"):
        train_and_evaluate(other, work, progress=False)
    assert not (tmp_path / "run" / "config.json").exists()
    (tmp_path / "run" / "config.json").write_text(saved[:10])  # cut short
    with pytest.raises(config_checks.ConfigError, match="config.json: cannot be read as the run"):
        train_and_evaluate(tiny_config(epochs=2), work, progress=False)
    (tmp_path / "run" / "config.json").write_text(saved)
    res = train_and_evaluate(tiny_config(epochs=2), work, stop_after_steps=1, progress=False)
    assert res["status"] == "interrupted" and res["step"] == 2


def test_config_differences_name_the_keys():
    from sesyn_jax.train.loop import _config_differences

    old = {"data": {"augment": {"flip": True}, "root": "a"}, "seed": 0}
    new = {"data": {"augment": {"flip": True, "speed": [0.8, 1.2]}, "root": "b"}, "seed": 0}
    assert _config_differences(old, new) == (
        "data.augment.speed: missing -> [0.8, 1.2]; data.root: 'a' -> 'b'"
    )
    many_old = {f"k{i}": i for i in range(8)}
    many_new = {f"k{i}": -i - 1 for i in range(8)}
    assert _config_differences(many_old, many_new).endswith("k4: 4 -> -5 and 3 more")


def test_bad_config_errors_before_anything_is_written(tmp_path):
    cfg = tiny_config()
    cfg.data.source = "syn"
    cfg.data.root = str(tmp_path / "nowhere")
    with pytest.raises(config_checks.ConfigError, match="does not exist"):
        train_and_evaluate(cfg, str(tmp_path / "w"), progress=False)
    assert not os.path.exists(tmp_path / "w")
    cfg = tiny_config()
    cfg.loss.weights = {"identiy": 1.0}
    with pytest.raises(config_checks.ConfigError, match="not registered"):
        config_checks.check_config(cfg)
    for field, value, match in (
        ("data.protocol", "ntu", "data.protocol"),
        ("data.max_offset", 120, "data.max_offset"),
        ("model.padding", "circular", "model.padding"),
        ("eval.rule", "mean", "eval.rule"),
        ("eval.max_offset", -1, "eval.max_offset"),
        ("eval.min_overlap", 2.5, "eval.min_overlap"),
    ):
        cfg = tiny_config()
        group, name = field.split(".")
        setattr(getattr(cfg, group), name, value)
        with pytest.raises(config_checks.ConfigError, match=match):
            config_checks.check_config(cfg)


def test_kill_and_resume_is_bit_identical(tmp_path):
    """Kill a train.py process (SIGKILL) after its first checkpoint, resume it in its workdir,
    and compare with an uninterrupted run."""
    ref = tiny_config()
    train_and_evaluate(ref, str(tmp_path / "ref"), progress=False)
    want = checkpoint.load_inference(str(tmp_path / "ref")).variables

    work = tmp_path / "killed"
    args = [
        sys.executable,
        "train.py",
        "--config",
        "configs/quickstart.py",
        "--workdir",
        str(work),
        "--noprogress",
        "--config.data.camera_pairs=1",
        "--config.model.widths=(8,16)",
        "--config.model.kernel_size=5",
        "--config.train.epochs=3",
        "--config.train.batch_size=8",
        "--config.train.eval_every=0",
        "--config.train.checkpoint_every=1",
        "--config.train.log_every=1",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ck = work / "checkpoints"
        if ck.exists() and any(d.isdigit() for d in os.listdir(ck)):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert not (work / "export").exists(), "the run finished before it could be killed"
    with open(work / "config.json") as f:
        cfg_json = json.load(f)
    assert cfg_json["train"]["epochs"] == 3
    res = train_and_evaluate(ref, str(work), progress=False)
    assert res["status"] == "finished"
    got = checkpoint.load_inference(str(work)).variables
    for (pa, a), (pb, b) in zip(
        jax.tree_util.tree_flatten_with_path(want)[0], jax.tree_util.tree_flatten_with_path(got)[0]
    ):
        assert pa == pb
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(pa))


SHARDED = textwrap.dedent("""
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path.insert(0, os.getcwd())
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)  # float64: any difference is a real one
    from jax.sharding import NamedSharding, PartitionSpec as P
    from sesyn_jax import losses
    from sesyn_jax.model import STGCNEmbedding, init_variables
    from sesyn_jax.train.state import create_state, make_optimizer
    from sesyn_jax.train.step import make_train_step
    assert jax.device_count() == 4
    model = STGCNEmbedding(widths=(8, 16), kernel_size=5, dtype=jnp.float64)
    to64 = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)
    tx = make_optimizer(0.01)
    rng = np.random.default_rng(0)
    batch = {"poses1": rng.normal(size=(4, 24, 17, 3)),
             "poses2": rng.normal(size=(4, 24, 17, 3)),
             "mask1": np.arange(24)[None] < np.array([[24], [20], [17], [24]]),
             "mask2": np.arange(24)[None] < np.array([[22], [24], [24], [19]])}
    step = make_train_step(model, losses.make_loss_fn({"identity": 1, "deviation": 0.5,
                                                       "interval": 0.035}), tx)
    state0 = create_state(to64(init_variables(model, jax.random.PRNGKey(0))), tx)
    single = jax.jit(step)
    s1, m1 = single(state0, batch)
    s1, m1b = single(s1, batch)
    mesh = jax.make_mesh((4,), ("data",))
    rep, dat = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    sharded = jax.jit(step, in_shardings=(rep, dat), out_shardings=(rep, rep), donate_argnums=(0,))
    init = to64(init_variables(model, jax.random.PRNGKey(0)))
    state = jax.device_put(create_state(init, tx), rep)
    b = jax.device_put(batch, dat)
    assert len(b["poses1"].sharding.device_set) == 4
    s2, m2 = sharded(state, b)
    s2, m2b = sharded(s2, b)
    diff = max(float(jnp.max(jnp.abs(a - c))) for a, c in zip(jax.tree_util.tree_leaves(s1.params),
                                                              jax.tree_util.tree_leaves(s2.params)))
    print(json.dumps({"loss1": float(m1b["loss"]), "loss2": float(m2b["loss"]),
                      "param_diff": diff}))
""")


def test_sharded_step_equals_single_device():
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(r["loss2"], r["loss1"], rtol=1e-10)
    assert r["param_diff"] < 1e-10


def test_bfloat16_compute_keeps_float32_parameters():
    from sesyn_jax import losses
    from sesyn_jax.model import STGCNEmbedding, init_variables

    model = STGCNEmbedding(widths=(8, 16), kernel_size=5, dtype=jnp.bfloat16)
    tx = make_optimizer(0.01)
    state = create_state(init_variables(model, jax.random.PRNGKey(0)), tx)
    rng = np.random.default_rng(0)
    batch = {
        "poses1": jnp.asarray(rng.uniform(-0.4, 0.4, (2, 16, 17, 3)), jnp.float32),
        "poses2": jnp.asarray(rng.uniform(-0.4, 0.4, (2, 16, 17, 3)), jnp.float32),
        "mask1": jnp.ones((2, 16), bool),
        "mask2": jnp.ones((2, 16), bool),
    }
    step = jax.jit(
        make_train_step(model, losses.make_loss_fn({"identity": 1.0, "deviation": 0.5}), tx)
    )
    new, metrics = step(state, batch)
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(new.params))
    # the same step in float32 gives a loss within bf16 rounding of it
    f32 = STGCNEmbedding(widths=(8, 16), kernel_size=5)
    _, m32 = jax.jit(
        make_train_step(f32, losses.make_loss_fn({"identity": 1.0, "deviation": 0.5}), tx)
    )(state, batch)
    np.testing.assert_allclose(float(metrics["loss"]), float(m32["loss"]), rtol=0.05)
    # the embeddings are computed in bf16 (a model that ignored its dtype would equal float32)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    e16 = np.asarray(model.apply(variables, batch["poses1"]))
    e32 = np.asarray(f32.apply(variables, batch["poses1"]))
    rel = np.abs(e16 - e32).max() / np.abs(e32).max()
    assert e16.dtype == np.float32 and 1e-4 < rel < 0.05


def test_non_finite_loss_stops_the_run(tmp_path):
    from sesyn_jax import losses

    @losses.register_term("test_only_nan")
    def _nan(f_u, f_v, mask_u=None, mask_v=None):
        return jnp.nan * jnp.mean(f_u)

    try:
        cfg = tiny_config(epochs=1)
        cfg.loss.weights = {"identity": 1.0, "test_only_nan": 1.0}
        res = train_and_evaluate(cfg, str(tmp_path / "run"), progress=False)
    finally:
        del losses.LOSS_TERMS["test_only_nan"]
    assert res["status"] == "non-finite" and res["step"] == 1
    assert not (tmp_path / "run" / "export").exists()
    assert not any(d.isdigit() for d in os.listdir(tmp_path / "run" / "checkpoints"))
    # evaluating the workdir says why it has no export, and that resuming would not help
    with pytest.raises(checkpoint.CheckpointError, match="its loss diverged .* would diverge"):
        checkpoint.load_inference(str(tmp_path / "run"))


def test_rerun_of_a_finished_run_and_of_one_killed_before_its_export(tmp_path, capsys):
    cfg = tiny_config(epochs=1)
    run = tmp_path / "run"
    first = train_and_evaluate(cfg, str(run), progress=False)
    assert first["status"] == "finished"
    before = (run / "metrics.jsonl").read_text()
    again = train_and_evaluate(cfg, str(run), progress=False)
    assert again == {"status": "finished", "step": first["step"], "already_finished": True}
    assert "already finished" in capsys.readouterr().out
    assert (run / "metrics.jsonl").read_text() == before
    # killed after its last checkpoint but before the export: re-running writes the export
    loaded = checkpoint.load_inference(str(run))
    params = loaded.variables["params"]
    import shutil

    shutil.rmtree(run / "export")
    done = train_and_evaluate(cfg, str(run), progress=False)
    assert done["status"] == "finished" and done["step"] == first["step"]
    again = checkpoint.load_inference(str(run))
    restored = again.variables["params"]
    # the final evaluation is made again, the same as the first run's
    assert again.meta["val"] == loaded.meta["val"] is not None
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_drops_metrics_rows_logged_after_the_checkpoint(tmp_path):
    cfg = tiny_config(epochs=2)
    run = tmp_path / "run"
    res = train_and_evaluate(cfg, str(run), stop_after_steps=3, progress=False)
    assert res["status"] == "interrupted"
    with open(run / "metrics.jsonl", "a") as f:  # as if killed while saving a later step
        f.write(json.dumps({"step": 4, "loss": 1.0}) + "\n" + '{"step": 5, "lo')
    train_and_evaluate(cfg, str(run), progress=False)
    steps = [
        json.loads(line)["step"]
        for line in open(run / "metrics.jsonl")
        if "loss" in json.loads(line)
    ]
    assert steps == sorted(set(steps)) and steps[0] == 1


def test_train_step_loss_runs_from_view_2_to_view_1():
    """The published training calls the loss with u = view 2 and v = view 1; the loss is not
    symmetric, so the step's reported loss tells the two directions apart."""
    from sesyn_jax import losses
    from sesyn_jax.model import STGCNEmbedding, init_variables

    model = STGCNEmbedding(widths=(8, 16), kernel_size=3)
    variables = init_variables(model, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    mask1 = np.arange(24)[None] < np.array([[24], [19]])
    mask2 = np.arange(24)[None] < np.array([[15], [22]])
    batch = {
        "poses1": rng.normal(size=(2, 24, 17, 3)).astype(np.float32),
        "mask1": mask1,
        "poses2": rng.normal(size=(2, 24, 17, 3)).astype(np.float32),
        "mask2": mask2,
    }
    loss_fn = losses.make_loss_fn({"identity": 1.0, "deviation": 0.5, "interval": 0.035})
    tx = make_optimizer(0.01)
    step = jax.jit(make_train_step(model, loss_fn, tx))
    _, metrics = step(create_state(variables, tx), batch)
    f1, f2, _ = embed_views(model, variables["params"], variables["batch_stats"], batch, True)
    one = jax.jit(lambda *a: loss_fn(*a)[0])
    per_pair = lambda u, v, mu, mv: [float(one(u[i], v[i], mu[i], mv[i])) for i in (0, 1)]
    forward = np.mean(per_pair(f2, f1, mask2, mask1))
    backward = np.mean(per_pair(f1, f2, mask1, mask2))
    assert float(metrics["loss"]) == pytest.approx(forward, rel=1e-5)
    assert abs(forward - backward) > 1e-3 * abs(forward)

    # a term that takes the known alignment: frame m of view 2 shows frame m - offset of view 1
    batch["offset"] = np.array([3, -5])
    aligned = losses.make_loss_fn({"aligned": 1.0})
    step = jax.jit(make_train_step(model, aligned, tx))
    _, metrics = step(create_state(variables, tx), batch)
    one = lambda u, v, mu, mv, d: float(aligned(u, v, mu, mv, d)[0])
    want = np.mean(
        [one(f2[i], f1[i], mask2[i], mask1[i], -float(d)) for i, d in enumerate((3, -5))]
    )
    wrong = np.mean(
        [one(f2[i], f1[i], mask2[i], mask1[i], float(d)) for i, d in enumerate((3, -5))]
    )
    assert float(metrics["loss"]) == pytest.approx(want, rel=1e-5)
    assert abs(want - wrong) > 1e-3 * abs(want)


def test_per_term_gradient_norms_only_on_logged_steps():
    """An unlogged step skips the per-term backward passes (norms reported as 0) and updates
    the state exactly as a logged one; the logged norms equal jax.grad of each weighted term."""
    from sesyn_jax import losses
    from sesyn_jax.model import STGCNEmbedding, init_variables

    model = STGCNEmbedding(widths=(8, 8), kernel_size=3)
    variables = init_variables(model, jax.random.PRNGKey(1))
    rng = np.random.default_rng(1)
    batch = {
        "poses1": rng.normal(size=(2, 20, 17, 3)).astype(np.float32),
        "mask1": np.arange(20)[None] < np.array([[20], [16]]),
        "poses2": rng.normal(size=(2, 20, 17, 3)).astype(np.float32),
        "mask2": np.arange(20)[None] < np.array([[18], [20]]),
    }
    weights = {"identity": 1.0, "deviation": 0.5}
    loss_fn = losses.make_loss_fn(weights)
    tx = make_optimizer(0.01)
    step = jax.jit(make_train_step(model, loss_fn, tx))
    s_log, m_log = step(create_state(variables, tx), batch, True)
    s_skip, m_skip = step(create_state(variables, tx), batch, False)
    for a, b in zip(jax.tree_util.tree_leaves(s_log), jax.tree_util.tree_leaves(s_skip)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert step._cache_size() == 1  # one program for both
    f1, f2, _ = embed_views(model, variables["params"], variables["batch_stats"], batch, True)
    for name, w in weights.items():
        assert float(m_skip[f"grad_norm/{name}"]) == 0.0

        def term(u, v, name=name, w=w):
            per = [
                losses.call_term(name, u[i], v[i], batch["mask2"][i], batch["mask1"][i], {})
                for i in (0, 1)
            ]
            return w * (per[0] + per[1]) / 2

        g = jax.grad(term, argnums=(0, 1))(f2, f1)
        want = np.sqrt(sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in g))
        assert float(m_log[f"grad_norm/{name}"]) == pytest.approx(want, rel=1e-4)


def test_learning_rate_schedules_against_their_formulas():
    import math

    cfg = tiny_config(epochs=4, lr=0.02, schedule="cosine")
    sched = train_state.make_schedule(cfg, steps_per_epoch=5)
    for t in (0, 7, 13, 20):
        want = 0.5 * 0.02 * (1 + math.cos(math.pi * t / 20))
        assert float(sched(t)) == pytest.approx(want, rel=1e-5, abs=1e-9)
    cfg = tiny_config(epochs=4, lr=0.02, schedule="warmup_cosine", warmup_epochs=1)
    sched = train_state.make_schedule(cfg, steps_per_epoch=5)
    assert float(sched(0)) == 0.0 and float(sched(2)) == pytest.approx(0.02 * 2 / 5)
    for t in (5, 12, 20):  # cosine from the end of the warm-up to the last step
        want = 0.5 * 0.02 * (1 + math.cos(math.pi * (t - 5) / 15))
        assert float(sched(t)) == pytest.approx(want, rel=1e-5, abs=1e-9)
    assert train_state.make_schedule(tiny_config(schedule="constant"), 5) == cfg.train.lr


def test_periodic_actions_are_due_every_n_and_at_the_end():
    assert [c for c in range(1, 11) if loop.due(c, 4)] == [4, 8]
    assert [c for c in range(1, 11) if loop.due(c, 4, c == 10)] == [4, 8, 10]
    assert not any(loop.due(c, 0) for c in range(1, 11))  # 0: only at the end
    assert loop.due(7, 0, last=True)


FOUR_DEVICES = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path.insert(0, os.getcwd())
    import jax
    from tests.test_training import tiny_config
    from sesyn_jax.train.loop import train_and_evaluate
    assert jax.device_count() == 4
    cfg = tiny_config(epochs=3, eval_every=1, log_every=2)
    cfg.data.buckets = (96, 128)
    print("RESULT", json.dumps(train_and_evaluate(cfg, sys.argv[1], progress=False)))
""")


def test_four_devices_train_and_evaluate_without_recompiling(tmp_path):
    """On 4 virtual CPU devices: the train step (logged steps or not) and the evaluator
    compile in the first epoch, once per bucket they meet, and never again."""
    out = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES, str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.split("RESULT ")[-1])
    assert res["status"] == "finished"
    assert res["recompiles_after_first_epoch"] == 0 and res["compiles"] >= 1
    assert res["evaluator_recompiles_after_first_epoch"] == 0 and res["evaluator_compiles"] >= 1
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len([r for r in rows if "val" in r]) == 3
    logged = [r for r in rows if "loss" in r]
    assert all(r["grad_norm/identity"] > 0 for r in logged)  # computed on logged steps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_a_step_and_leaves_complete_checkpoints(tmp_path, signum):
    """SIGTERM (a scheduler's preemption) or Ctrl-C (SIGINT) during training: the run stops,
    waits for the checkpoint being written and exits 128 + the signal's number with one
    message and no traceback; the checkpoints left resume."""
    work = tmp_path / "run"
    args = [sys.executable, "train.py", "--config", "configs/quickstart.py"]
    args += [f"--workdir={work}", "--noprogress", "--config.data.camera_pairs=1"]
    args += ["--config.model.widths=(8,8)", "--config.model.kernel_size=5"]
    args += ["--config.train.epochs=6", "--config.train.eval_every=0", "--config.train.log_every=1"]
    args += ["--config.train.checkpoint_every=1"]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ck = work / "checkpoints"
        if ck.exists() and any(d.isdigit() for d in os.listdir(ck)):
            proc.send_signal(signum)
            break
        time.sleep(0.05)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, out[-2000:]
    why = "signal 15" if signum == signal.SIGTERM else "Ctrl-C"
    assert f"stopped by {why} at step" in out and "Traceback" not in out, out[-2000:]
    assert not (work / "export").exists()
    names = os.listdir(work / "checkpoints")
    assert all(n.isdigit() for n in names), names  # no half-written checkpoint
    cfg = tiny_config(epochs=6, eval_every=0, batch_size=8)
    cfg.model.widths = (8, 8)
    res = train_and_evaluate(cfg, str(work), stop_after_steps=1, progress=False)
    assert res["status"] == "interrupted" and res["step"] == max(map(int, names)) + 1


def test_a_diverging_run_says_so_before_evaluating(tmp_path, capsys):
    """train.lr=1e30: the parameters are checked before the first evaluation (no step is
    logged before it), and the message names the learning rate, not the offset search."""
    cfg = tiny_config(epochs=2, eval_every=1, log_every=1000, lr=1e30)
    res = train_and_evaluate(cfg, str(tmp_path / "run"), progress=False)
    out = capsys.readouterr().out
    assert res["status"] == "non-finite" and res["step"] > 0
    assert "the loss diverged; lower the learning rate" in out and "min_overlap" not in out
    assert not (tmp_path / "run" / "export").exists()
