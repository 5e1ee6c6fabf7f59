"""Training input: batches prefetched to the devices in a background thread (same order, same
result), pairs rendered on the devices in the loop (resume stays exact, 4 devices compile once),
the step time and data wait in metrics.jsonl, TensorBoard event files and a profiler trace."""

import glob
import json
import os
import struct
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from sesyn_jax import checkpoint, config_checks
from sesyn_jax.data.pairs import prefetch_in_thread
from sesyn_jax.train.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**fields):
    from configs import sync_default

    c = sync_default.get_config()
    c.data.render_on = "host"
    c.data.frames = 64
    c.data.max_offset = 16
    c.data.buckets = (64,)
    c.data.pairs_per_epoch = 16
    c.model.widths = (8, 16)
    c.model.kernel_size = 5
    c.train.epochs = 2
    c.train.batch_size = 8
    c.train.eval_every = 0
    c.train.checkpoint_every = 1
    c.train.log_every = 1
    for name, value in fields.items():
        group, key = name.split("__")
        setattr(getattr(c, group), key, value)
    return c


def variables(workdir):
    return jax.tree_util.tree_leaves(checkpoint.load_inference(str(workdir)).variables)


def test_prefetch_in_thread_keeps_order_raises_and_stops():
    assert list(prefetch_in_thread(iter(range(50)), 2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("broken batch")

    got = prefetch_in_thread(failing(), 2)
    assert next(got) == 1
    with pytest.raises(ValueError, match="broken batch"):
        next(got)
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    got = prefetch_in_thread(endless(), 2)
    assert [next(got) for _ in range(5)] == [0, 1, 2, 3, 4]
    got.close()
    assert closed == [True]  # the producer was closed in its thread


def test_host_batches_prefetched_to_the_devices_train_the_same_model(tmp_path):
    """data.prefetch=2 (built and placed in a thread) against 0 (on the loop's thread): the
    same batches in the same order, so the same losses and the same parameters."""
    runs = {}
    for prefetch in (0, 2):
        work = tmp_path / f"p{prefetch}"
        train_and_evaluate(tiny_config(data__prefetch=prefetch), str(work), progress=False)
        rows = [json.loads(line) for line in open(work / "metrics.jsonl")]
        runs[prefetch] = ([r["loss"] for r in rows if "loss" in r], variables(work))
    assert len(runs[0][0]) == 4 and runs[0][0] == runs[2][0]
    for a, b in zip(runs[0][1], runs[2][1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_step_time_and_data_wait_are_logged(tmp_path):
    res = train_and_evaluate(tiny_config(train__epochs=3), str(tmp_path / "run"), progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    logged = [r for r in rows if "loss" in r]
    assert len(logged) == 6
    for r in logged:
        assert r["step_ms"] > 0 and 0 <= r["data_wait_ms"] <= r["step_ms"]
        assert r["pairs_per_s"] == pytest.approx(8000 / r["step_ms"], rel=1e-2)
    timing = res["timing"]
    assert timing["steps"] == 5  # every step after the first window (the compilation)
    assert 0 <= timing["data_wait_share"] <= 1
    assert timing["data_wait_share"] == pytest.approx(
        timing["data_wait_ms"] / timing["step_ms"], rel=1e-9
    )


def read_events(path):
    """Scalars of a TensorBoard event file, read as TFRecords (length, crc, Event proto, crc)."""
    from tensorboardX.proto import event_pb2

    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def test_tensorboard_events_and_profiler_trace(tmp_path):
    pytest.importorskip("tensorboardX")
    cfg = tiny_config(train__tensorboard=True, train__profile_steps=(2, 3))
    train_and_evaluate(cfg, str(tmp_path / "run"), progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    files = glob.glob(str(tmp_path / "run" / "tensorboard" / "events.out.tfevents.*"))
    assert len(files) == 1
    events = read_events(files[0])
    for r in rows:
        if "loss" in r:
            assert events["loss"][r["step"]] == pytest.approx(r["loss"], rel=1e-6)
            assert events["data_wait_ms"][r["step"]] == pytest.approx(r["data_wait_ms"], rel=1e-6)
        else:
            assert events["val/frame_error"][r["step"]] == pytest.approx(r["val"]["frame_error"])
    traces = glob.glob(str(tmp_path / "run" / "profile" / "**" / "*.xplane.pb"), recursive=True)
    assert traces and os.path.getsize(traces[0]) > 0


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("data.render_on", "gpu", "data.render_on must be"),
        ("data.render", False, "needs data.render=True"),
        ("train.profile_steps", (3, 2), "train.profile_steps"),
        ("data.prefetch", -1, "data.prefetch"),
    ],
)
def test_bad_input_settings_are_refused(field, value, match):
    cfg = tiny_config(data__render_on="device")
    group, name = field.split(".")
    setattr(getattr(cfg, group), name, value)
    with pytest.raises(config_checks.ConfigError, match=match):
        config_checks.check_config(cfg)


DEVICE_RENDER = textwrap.dedent("""
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path.insert(0, os.getcwd())
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax, numpy as np
    from sesyn_jax import checkpoint
    from sesyn_jax.train.loop import train_and_evaluate
    from test_training_input import tiny_config
    assert jax.device_count() == 4
    cfg = tiny_config(data__render_on="device", train__epochs=3)
    full = train_and_evaluate(cfg, sys.argv[1] + "/full", progress=False)
    cut = train_and_evaluate(cfg, sys.argv[1] + "/cut", stop_after_steps=3, progress=False)
    rest = train_and_evaluate(cfg, sys.argv[1] + "/cut", progress=False)
    leaves = lambda w: jax.tree_util.tree_leaves(checkpoint.load_inference(w).variables)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(leaves(sys.argv[1] + "/full"), leaves(sys.argv[1] + "/cut")))
    print("RESULT", json.dumps({"full": full["status"], "cut": cut["status"],
                                "rest": rest["status"], "diff": diff,
                                "recompiles": full["recompiles_after_first_epoch"],
                                "compiles": full["compiles"]}))
""")


def test_device_rendering_on_four_devices_resumes_exactly(tmp_path):
    """data.render_on='device' on 4 virtual CPU devices: a run stopped after 3 steps and
    resumed ends with the parameters of an uninterrupted one, and the step compiles in the
    first epoch only."""
    out = subprocess.run(
        [sys.executable, "-c", DEVICE_RENDER, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.split("RESULT ")[-1])
    assert (res["full"], res["cut"], res["rest"]) == ("finished", "interrupted", "finished")
    assert res["diff"] == 0.0
    assert res["recompiles"] == 0 and res["compiles"] >= 1
