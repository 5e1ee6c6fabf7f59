"""What train.py, evaluate.py and the converter do with input that cannot work: one line naming
the file or the field and exit status 2, nothing written. The memory estimate a config is
checked with is compared against XLA's own."""

import errno
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from sesyn_jax import checkpoint, cli, config_checks, convert_cli, loading, losses, report
from sesyn_jax.model import STGCNEmbedding, init_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, cwd=ROOT, timeout=300):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(proc_or_text, *fragments):
    """Exit status 2 (for a process) and exactly one stderr line holding every fragment."""
    text = proc_or_text if isinstance(proc_or_text, str) else proc_or_text.stderr
    if not isinstance(proc_or_text, str):
        assert proc_or_text.returncode == 2, text[-2000:]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text[-2000:]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- the --config file


def parse(argv, capsys):
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
    with pytest.raises(SystemExit) as e:
        cli.parse_flags_or_exit(["prog", *argv], fv)
    assert e.value.code == 2
    return one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("def get_config(:\n", "SyntaxError: invalid syntax, line 1"),
        ("x = 1\n", "has no function get_config()"),
        ("def get_config():\n    return undefined_name\n", "NameError"),
        ("def get_config():\n    return 3\n", "must return an ml_collections.ConfigDict, got int"),
        (
            "from configs import quickstart\n\n\ndef get_config():\n"
            "    c = quickstart.get_config()\n    c.train.lr = '0.02'\n    return c\n",
            "TypeError: Could not override field 'lr'",
        ),
    ],
)
def test_a_config_file_that_cannot_be_loaded(tmp_path, capsys, content, message):
    path = tmp_path / "c.py"
    if content is not None:
        path.write_text(content)
    line = parse(["--config", str(path)], capsys)
    assert f"--config {path}" in line and message in line


def test_a_config_folder(tmp_path, capsys):
    assert "is a folder" in parse([f"--config={tmp_path}"], capsys)


def test_train_and_evaluate_with_a_missing_config_file(tmp_path):
    for script, rest in (
        ("train.py", ["--workdir", str(tmp_path / "w")]),
        ("evaluate.py", ["--checkpoint", "default", "--out", str(tmp_path / "e")]),
    ):
        out = run([script, "--config", "configs/nothere.py", *rest])
        one_line_error(out, "--config configs/nothere.py: no such file")
    assert os.listdir(tmp_path) == []


def test_empty_workdir_and_checkpoint_are_refused(tmp_path):
    config = os.path.join(ROOT, "configs", "quickstart.py")
    out = run([os.path.join(ROOT, "train.py"), "--config", config, "--workdir", ""], cwd=tmp_path)
    one_line_error(out, "--workdir is empty")
    out = run(["evaluate.py", "--config", "configs/quickstart.py", "--checkpoint", ""])
    one_line_error(out, "--checkpoint is empty")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- config fields


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.model.kernel_size=8", "model.kernel_size must be an odd whole number >= 1"),
        ("--config.model.kernel_size=0", "model.kernel_size must be an odd whole number >= 1"),
        ("--config.model.widths=(0,)", "model.widths must be a non-empty list of positive"),
        ("--config.model.widths=()", "model.widths must be a non-empty list of positive"),
        ("--config.seed=-1", "seed must be a whole number in [0, 2**32)"),
        ("--config.data.frames=100000", "data.frames=100000 (bucket 100000) with "),
    ],
)
def test_train_refuses_a_config_field(tmp_path, override, message):
    extra = ["--config.data.buckets=(100000,)"] if "frames" in override else []
    out = run(
        ["train.py", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "w")]
        + [override, *extra]
    )
    line = one_line_error(out, message)
    if "frames" in override:
        assert "needs about" in line and "this machine's memory holds" in line
    assert not (tmp_path / "w").exists()


def quickstart(**fields):
    from configs import quickstart as q

    c = q.get_config()
    c.unlock()
    for k, v in fields.items():
        group, name = k.split("__") if "__" in k else (None, k)
        setattr(c[group] if group else c, name, v)
    return c


def test_seeds_and_model_fields_in_process():
    for fields, message in [
        (dict(data__seed=-3), "data.seed must be a whole number"),
        (dict(model__widths=(16, 16.5)), "model.widths must be"),
        (dict(model__kernel_size=True), "model.kernel_size must be"),
        (dict(model__layout="foo"), "model.layout must be one of"),
        (dict(train__weight_decay=float("nan")), "train.weight_decay is nan; every number"),
        (dict(data__fps=60.0), "data.fps is 60, but the embedded clips are 30 fps"),
        (dict(data__fps=0.0), r"data.fps must be the data.s frame rate \(> 0\), got 0.0"),
        (dict(train__batch_size=0), "train.batch_size must be >= 1, got 0"),
        (dict(eval__min_overlap=1000), "eval.min_overlap is 1000 frames, but two data.frames"),
    ]:
        with pytest.raises(config_checks.ConfigError, match=message):
            config_checks.check_config(quickstart(**fields))
    config_checks.check_config(quickstart())  # the shipped configs pass
    c = quickstart()
    del c.data["prefetch"]  # a config file that deleted a field
    with pytest.raises(config_checks.ConfigError, match="the config has no field 'prefetch'"):
        config_checks.check_config(c)


@pytest.mark.parametrize(
    "weights, options, message",
    [
        ({}, {}, "loss.weights must give at least one term a positive weight"),
        ({"identity": 0.0}, {}, "loss.weights must give at least one term a positive weight"),
        ({"identity": -1.0}, {}, "loss.weights.identity must be a number >= 0, got -1.0"),
        ({"identity": float("nan")}, {}, "loss.weights.identity is nan"),
        ({"interval": 1.0}, {"interval": {"tau": 0}}, "loss.options.interval {'tau': 0}: "),
        ({"interval": 1.0}, {"interval": {"taux": 1}}, "loss.options.interval {'taux': 1}: "),
    ],
)
def test_loss_weights_and_options_are_checked_before_the_run(weights, options, message):
    import ml_collections

    c = quickstart()
    c.loss.weights = ml_collections.ConfigDict(weights)
    c.loss.options = ml_collections.ConfigDict(options)
    with pytest.raises(config_checks.ConfigError) as e:
        config_checks.check_config(c)
    assert message in str(e.value), str(e.value)


# ----------------------------------------------------------------------------- memory estimate


def xla_train_step_bytes(widths, batch, frames, weights):
    """XLA's own figure for one train step (embed both views, the loss, its gradient): the
    compiled function's temporaries plus its arguments and outputs."""
    model = STGCNEmbedding(widths=tuple(widths), kernel_size=9)
    variables = init_variables(model, jax.random.PRNGKey(0))
    pair_loss = losses.make_loss_fn(weights, {})
    batch_loss = losses.batched_loss_fn(pair_loss)
    needs_offset = getattr(pair_loss, "needs_offset", False)

    def step(params, stats, p1, p2, m1, m2, off):
        def loss(params):
            out, _ = model.apply(
                {"params": params, "batch_stats": stats},
                jnp.concatenate([p1, p2]),
                jnp.concatenate([m1, m2]),
                train=True,
                mutable=["batch_stats"],
            )
            return batch_loss(out[batch:], out[:batch], m2, m1, off if needs_offset else None)[0]

        return jax.value_and_grad(loss)(params)

    f32 = jax.ShapeDtypeStruct((batch, frames, 17, 3), jnp.float32)
    mask = jax.ShapeDtypeStruct((batch, frames), bool)
    off = jax.ShapeDtypeStruct((batch,), jnp.float32)
    mem = (
        jax.jit(step)
        .lower(variables["params"], variables["batch_stats"], f32, f32, mask, mask, off)
        .compile()
        .memory_analysis()
    )
    return mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes


@pytest.mark.parametrize(
    "widths, batch, frames, weights",
    [
        ((16, 32), 4, 256, {"identity": 1.0, "deviation": 0.5, "interval": 0.035}),
        ((8,), 2, 1024, {"aligned": 1.0}),
    ],
)
def test_memory_estimate_bounds_what_xla_allocates(widths, batch, frames, weights):
    """The estimate a config is refused with covers XLA's own figure for the same train step
    and is not far above it (so that a config that fits is not refused)."""
    cfg = quickstart(
        model__widths=widths, train__batch_size=batch, data__frames=frames, data__buckets=(frames,)
    )
    cfg.loss.weights = weights
    estimate = config_checks.step_memory(cfg, training=True)["bytes"]
    xla = xla_train_step_bytes(widths, batch, frames, weights)
    assert xla <= estimate <= 2 * xla, (estimate, xla)


def test_the_memory_refusal_names_the_estimate_and_the_limit(monkeypatch):
    cfg = quickstart(data__frames=2000, data__buckets=(2048,))
    need = config_checks.step_memory(cfg, training=True)
    # the documented arithmetic: 18 copies of 2 views x 8 pairs x 2048 frames x 17 joints x
    # sum(widths) floats, 16 of 8 pairs' 2048 x 2048 similarities
    assert need["activations"] == 18 * 2 * 8 * 2048 * 17 * sum(cfg.model.widths) * 4
    assert need["similarities"] == 16 * 8 * 2048 * 2048 * 4
    monkeypatch.setattr(
        config_checks, "memory_limit", lambda c: (need["bytes"] - 1, "a small device")
    )
    with pytest.raises(config_checks.ConfigError) as e:
        config_checks.check_memory(cfg, training=True)
    msg = str(e.value)
    assert "data.frames=2000 (bucket 2048) with train.batch_size=8" in msg
    assert f"needs about {need['bytes'] / 1e9:.1f} GB" in msg and "a small device holds" in msg
    monkeypatch.setattr(config_checks, "memory_limit", lambda c: (need["bytes"], "enough"))
    config_checks.check_memory(cfg, training=True)


# ----------------------------------------------------------------------------- output folders


def test_output_folders_that_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    for path, message in [
        (tmp_path / "f", "is a file"),
        (tmp_path / "f" / "w", "f is a file, not a folder"),
        ("/proc/sesyn-w", "cannot write in /proc"),
    ]:
        with pytest.raises(config_checks.ConfigError, match=message):
            config_checks.check_output_folder(str(path), "--workdir")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as m:
        m.setattr(config_checks.tempfile, "mkstemp", read_only)
        with pytest.raises(config_checks.ConfigError, match="Read-only file system"):
            config_checks.check_output_folder(str(tmp_path / "w"), "--workdir")
    usage = shutil.disk_usage(tmp_path)
    with pytest.raises(config_checks.ConfigError, match="free on its disk, about"):
        config_checks.check_output_folder(str(tmp_path / "w"), "--out", usage.free * 2)
    config_checks.check_output_folder(str(tmp_path / "w" / "x"), "--out", 10**6)
    assert sorted(os.listdir(tmp_path)) == ["f"]  # the probes leave nothing


def test_train_workdir_under_a_file_and_on_a_full_disk(tmp_path):
    (tmp_path / "f").write_text("x")
    out = run(["train.py", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "f/w")])
    one_line_error(out, "--workdir", "f is a file, not a folder")
    # a disk that fills during the run: orbax reports tensorstore's ENOSPC as a ValueError
    script = (
        "import runpy, sys\n"
        "from sesyn_jax.train import loop\n"
        "def full(*a, **k):\n"
        "    raise ValueError(\"RESOURCE_EXHAUSTED: Failed to write [os_error_code='28']\")\n"
        "loop.train_and_evaluate = full\n"
        f"sys.argv = ['train.py', '--config', 'configs/quickstart.py', '--workdir', "
        f"{str(tmp_path / 'w')!r}]\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    out = run(["-c", script])
    one_line_error(out, "writing failed (No space left on device)", "no checkpoint was complete")
    (tmp_path / "w2" / "checkpoints" / "40").mkdir(parents=True)
    (tmp_path / "w2" / "checkpoints" / "120").mkdir()
    msg = cli.workdir_write_failure(str(tmp_path / "w2"), OSError(errno.EROFS, "ro"))
    assert msg == (
        f"--workdir {tmp_path / 'w2'}: writing failed (Read-only file system); the checkpoint "
        f"of step 120 is kept: make room and run the same command to resume"
    )


def test_a_resumed_workdir_needs_only_the_space_its_checkpoints_do_not_hold(tmp_path):
    c = quickstart()
    total = config_checks.workdir_bytes(c)
    assert config_checks.workdir_bytes(c, str(tmp_path / "new")) == total
    ck = tmp_path / "w" / "checkpoints" / "40"
    ck.mkdir(parents=True)
    (ck / "state").write_bytes(b"0" * 100_000)
    (tmp_path / "w" / "metrics.jsonl").write_bytes(b"0" * 50_000)  # not a checkpoint
    assert config_checks.workdir_bytes(c, str(tmp_path / "w")) == total - 100_000
    (ck / "state").write_bytes(b"0" * total)  # never below one checkpoint's size
    one = config_checks.workdir_bytes(c, str(tmp_path / "w"))
    assert 0 < one < total / (c.train.keep + 2)


def test_os_error_reason_looks_through_wrappers():
    try:
        try:
            raise OSError(errno.ENOSPC, "disk")
        except OSError as e:
            raise RuntimeError("save failed") from e
    except RuntimeError as e:
        assert cli.os_error_reason(e) == os.strerror(errno.ENOSPC)
    assert cli.os_error_reason(ValueError("x [os_error_code='30']")) == os.strerror(errno.EROFS)
    assert cli.os_error_reason(ValueError("a bug")) is None


# ----------------------------------------------------------------------------- model.json


@pytest.fixture()
def export_copy(tmp_path, random_export):
    path = tmp_path / "ck"
    shutil.copytree(random_export, path)
    return path


def edit_model_json(path, edit):
    info = json.loads((path / "model.json").read_text())
    info = edit(info)
    (path / "model.json").write_text(json.dumps(info))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda i: [1, 2], "model.json: expected a JSON object with 'format' and 'model'"),
        (lambda i: {**i, "model": {**i["model"], "widths": ["a", 16]}}, "'model.widths' must be"),
        (lambda i: {**i, "model": {**i["model"], "widths": []}}, "'model.widths' must be"),
        (lambda i: {**i, "model": {**i["model"], "kernel_size": 4}}, "'model.kernel_size' must"),
        (lambda i: {**i, "model": {**i["model"], "layout": 7}}, "'model.layout' must be one of"),
        # same structure, other shapes: orbax would restore the stored shapes silently
        (
            lambda i: {**i, "model": {**i["model"], "kernel_size": 3}},
            "variables: params/block_0/tcn_conv/kernel has shape (5, 16, 16), but model.json's",
        ),
        (
            lambda i: {**i, "model": {**i["model"], "widths": [16, 32]}},
            "variables: cannot be restored as the network that model.json's 'model' fields",
        ),
    ],
)
def test_model_json_that_cannot_build_the_network(export_copy, edit, message):
    edit_model_json(export_copy, edit)
    with pytest.raises(checkpoint.CheckpointError) as e:
        loading.load_model(str(export_copy))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_or_damaged_variables_are_named(export_copy):
    weights = export_copy / "variables"
    files = sorted(p for p in weights.rglob("*") if p.is_file())
    biggest = max(files, key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:16])  # cut short
    with pytest.raises(checkpoint.CheckpointError, match="damaged or incomplete"):
        loading.load_model(str(export_copy))
    # through the command: one line, not followed by the reports of orbax's reads that were
    # still in flight (each an "Event loop is closed" traceback)
    out = run(
        ["evaluate.py", "--config", "configs/quickstart.py", "--checkpoint", str(export_copy)]
        + ["--out", str(export_copy.parent / "e")]
    )
    one_line_error(out, "damaged or incomplete")
    shutil.rmtree(weights)
    with pytest.raises(checkpoint.CheckpointError, match="variables: missing; a checkpoint"):
        loading.load_model(str(export_copy))


def test_model_json_that_is_a_folder(export_copy):
    os.remove(export_copy / "model.json")
    os.mkdir(export_copy / "model.json")
    with pytest.raises(checkpoint.CheckpointError, match="model.json: cannot be read as a file"):
        loading.load_model(str(export_copy))


def test_evaluate_names_a_broken_model_json(export_copy, tmp_path):
    edit_model_json(export_copy, lambda i: [1, 2])
    out = run(
        ["evaluate.py", "--config", "configs/quickstart.py", "--checkpoint", str(export_copy)]
        + ["--out", str(tmp_path / "e")]
    )
    one_line_error(out, f"{export_copy}/model.json: expected a JSON object")
    assert not (tmp_path / "e").exists()


def test_evaluate_out_under_a_file(random_export, tmp_path):
    (tmp_path / "f").write_text("keep")
    out = run(
        ["evaluate.py", "--config", "configs/quickstart.py", "--checkpoint", random_export]
        + ["--out", str(tmp_path / "f" / "e")]
    )
    one_line_error(out, f"--out {tmp_path}/f/e: {tmp_path}/f is a file, not a folder")
    assert os.listdir(tmp_path) == ["f"] and (tmp_path / "f").read_text() == "keep"


def test_an_interrupted_workdir_is_named_as_such(tmp_path):
    w = tmp_path / "w"
    (w / "checkpoints" / "12").mkdir(parents=True)
    (w / "checkpoints" / "4").mkdir()
    (w / "config.json").write_text("{}")
    with pytest.raises(checkpoint.CheckpointError) as e:
        loading.load_model(str(w))
    msg = str(e.value)
    assert "a train.py workdir without an export: the run was interrupted" in msg
    assert f"last training checkpoint is {w}/checkpoints/12" in msg
    assert f"--workdir {w} to resume" in msg
    shutil.rmtree(w / "checkpoints")
    with pytest.raises(checkpoint.CheckpointError, match="has no training checkpoint yet"):
        loading.load_model(str(w))


# ----------------------------------------------------------------------------- the shipped name


def test_default_is_the_shipped_model_whatever_the_working_directory_holds(
    tmp_path, monkeypatch, random_export
):
    shutil.copytree(random_export, tmp_path / "default")  # a user's own model called default
    monkeypatch.chdir(tmp_path)
    shipped = loading.load_model("default")
    assert shipped.meta["source"].startswith("python train.py --config configs/sync_default.py")
    assert shipped.model_config["widths"] == (32, 32, 32, 64, 64, 64)
    own = loading.load_model("./default")
    assert own.model_config["widths"] == (16, 16)
    assert report.default_out("default") == "eval_default"
    assert report.default_out("./default") == os.path.join("./default", "eval")


def test_a_failed_evaluation_writes_nothing(tmp_path):
    """A test folder without views fails after the model is loaded: neither ./eval_default nor
    a folder called default appears."""
    empty = tmp_path / "test"
    empty.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = run(
        [os.path.join(ROOT, "evaluate.py"), "--config", os.path.join(ROOT, "configs/quickstart.py")]
        + ["--config.data.source=syn", f"--config.data.test_dir={empty}", "--checkpoint"]
        + ["default", "--nosweeps", "--noprogress"],
        cwd=cwd,
    )
    one_line_error(out, f"{empty}: no view files")
    assert os.listdir(cwd) == []


def test_results_written_together_or_not_at_all(tmp_path, monkeypatch, random_export):
    from configs import quickstart as q
    from sesyn_jax.data.splits import load_pairs

    cfg = q.get_config()
    pairs = load_pairs(cfg, "test")[:4]
    loaded = checkpoint.load_inference(random_export)
    out = tmp_path / "new" / "eval"

    def full(*a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(report.os, "rename", full)
        with pytest.raises(report.OutputError, match="No space left on device"):
            report.evaluate_checkpoint(
                cfg, loaded, "ck", out=str(out), sweeps=False, progress=False, pairs=pairs
            )
    assert os.listdir(tmp_path) == []  # neither the folder nor its new parent
    (out).mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    res = report.evaluate_checkpoint(
        cfg, loaded, "ck", out=str(out), sweeps=False, progress=False, pairs=pairs
    )
    assert sorted(os.listdir(out)) == [
        "error_vs_offset.png",
        "notes.txt",
        "results.json",
        "results.md",
    ]
    assert json.loads((out / "results.json").read_text())["table1"] == res["table1"]
    assert os.listdir(out.parent) == ["eval"]  # no temporary folder left


# ----------------------------------------------------------------------------- the converter


def test_converter_inputs_a_user_might_give(tmp_path, capsys, random_export):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 64)
    (tmp_path / "f").write_text("x")
    cases = [
        (["torch2flax", str(tmp_path / "nothere.pth"), "o"], "nothere.pth: cannot be read"),
        (["torch2flax", str(junk), "o"], "junk.pth: not a checkpoint"),
        (["torch2flax", random_export, "o"], "export: a folder; expected a PyTorch .pth"),
        (["flax2torch", str(junk), "o.pth"], "junk.pth: a file; flax2torch takes an export"),
        (["flax2torch", str(tmp_path / "nothere"), "o.pth"], "nothere: no such checkpoint"),
        (["flax2torch", "default", "o.pth"], "default: this model pads its temporal"),
    ]
    for argv, message in cases:
        assert convert_cli.main(argv) == 2
        one_line_error(capsys.readouterr().err, message)
    pytest.importorskip("torch")
    for dst, message in [
        (tmp_path / "f" / "o.pth", "f is a file, not a folder"),
        (tmp_path, "a folder; give a .pth file name"),
    ]:
        assert convert_cli.main(["flax2torch", random_export, str(dst)]) == 2
        one_line_error(capsys.readouterr().err, f"{dst}: cannot be written", message)
    # a model.json that leaves layout and strategy at their defaults exports
    assert convert_cli.main(["flax2torch", random_export, str(tmp_path / "ok.pth")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["f", "junk.pth", "ok.pth"]
    np.testing.assert_equal((tmp_path / "f").read_text(), "x")
