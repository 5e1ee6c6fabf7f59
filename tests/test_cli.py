"""train.py and evaluate.py answer bad flags and config values with exit status 2 and a message
naming what to change, before anything is compiled or written."""

import os
import json
import subprocess
import sys

import jax
import pytest

from sesyn_jax import checkpoint
from sesyn_jax.model import STGCNEmbedding, init_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, config="configs/quickstart.py"):
    return subprocess.run(
        [sys.executable, script, "--config", config, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.train.lr=-1", "train.lr must be a positive number"),
        ("--config.train.log_every=0", "train.log_every must be >= 1"),
        ("--config.data.buckets=(8,)", "add a bucket >= 120"),
        ("--config.data.buckets=()", "data.buckets must be a non-empty tuple"),
        ("--config.model.layout=foo", "model.layout must be one of ['coco', 'coco13'"),
        ("--config.loss.weights.foo=1.0", "loss.weights.foo"),
        ("--config.train.lrr=0.1", 'Did you mean "lr"'),
        ("--config.eval.rule=mean", "eval.rule must be one of"),
    ],
)
def test_train_bad_config(tmp_path, override, message):
    out = run("train.py", "--workdir", str(tmp_path / "w"), override)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "w").exists()


def test_train_workdir_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    out = run("train.py", "--workdir", str(tmp_path / "f"))
    assert out.returncode == 2 and "is a file" in out.stderr
    assert (tmp_path / "f").read_text() == "x"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "export"
    cfg = dict(widths=(8,), kernel_size=3)
    checkpoint.save_inference(
        str(path), init_variables(STGCNEmbedding(**cfg), jax.random.PRNGKey(0)), cfg
    )
    return str(path)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--drop_rates=abc", "'abc' is not a number"),
        ("--drop_rates=100", "100 is out of range"),
        ("--drop_rates=-10", "-10 is out of range"),
        ("--noise_px=-3", "-3 is out of range"),
        ("--noise_px=inf", "inf is out of range"),
        ("--config.eval.batch_size=0", "eval.batch_size must be >= 1"),
    ],
)
def test_evaluate_bad_flags(tmp_path, ckpt, flag, message):
    out = run("evaluate.py", "--checkpoint", ckpt, "--out", str(tmp_path / "e"), flag)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "e").exists()


def test_evaluate_out_is_a_file(tmp_path, ckpt):
    (tmp_path / "f").write_text("keep")
    out = run("evaluate.py", "--checkpoint", ckpt, "--out", str(tmp_path / "f"))
    assert out.returncode == 2 and "is a file" in out.stderr
    assert (tmp_path / "f").read_text() == "keep"


def evaluate_shipped(out, *overrides):
    """evaluate.py --checkpoint default with configs/sync_default.py -> (process, results)."""
    r = run(
        "evaluate.py",
        *overrides,
        "--checkpoint",
        "default",
        "--nosweeps",
        "--noprogress",
        "--out",
        str(out),
        config="configs/sync_default.py",
    )
    assert r.returncode == 0, r.stderr
    return r, json.loads((out / "results.json").read_text())


def test_evaluate_the_shipped_model_as_a_script(tmp_path):
    """evaluate.py end to end with --checkpoint default: Table 1 of the shipped model on the
    held-out pairs, as the README reports it."""
    r, res = evaluate_shipped(tmp_path / "eval")
    table = res["table1"]
    assert table["SeSyn"]["frame_error"] == pytest.approx(46 / 96)  # 0.48 frames
    assert table["SeSyn"]["frame_error"] < min(
        table[k]["frame_error"] for k in ("Zero", "Length", "Speed", "Simple", "SSM")
    )
    assert "| SeSyn | 0.48 |" in r.stdout


def test_evaluate_the_shipped_model_on_a_syn_json_folder(tmp_path):
    """The held-out data of users comes as SYN JSON files: the shipped model's config names
    them with data.source=syn (its training settings, such as data.render, do not get in the
    way), and the files give the offsets the in-memory pairs give."""
    from sesyn_jax.data import mocap_syn
    from sesyn_jax.data.syn_json import write_syn_view
    from test_shipped_model import FIRST_16

    records, _ = mocap_syn.build_pairs(mocap_syn.load_embedded(), mocap_syn.BuildConfig())
    test = tmp_path / "test"
    test.mkdir()
    for r in [r for r in records if r.split == "test"][:16]:
        for view, cat in ((1, r.category_id1), (2, r.category_id2)):
            write_syn_view(
                str(test / f"{r.name}_C00{view}.json"), r.view_frames(view), cat, (1920, 1080)
            )
    _, res = evaluate_shipped(
        tmp_path / "eval", "--config.data.source=syn", f"--config.data.test_dir={test}"
    )
    assert res["predictions"]["SeSyn"] == FIRST_16
