"""Training across two JAX processes on this machine (CPU devices, jax.distributed on a local
port, gloo collectives) against the same global batch in one process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from sesyn_jax.train import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4
RUN = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_multiprocess import small_config
from sesyn_jax.train.loop import train_and_evaluate
cfg = small_config({n}, {pid}, {port})
res = train_and_evaluate(cfg, {workdir!r}, stop_after_steps={steps}, progress=False)
print("RESULT", json.dumps(res))
"""


def small_config(processes=1, process_id=-1, port=0):
    from tests.test_training import tiny_config

    cfg = tiny_config(epochs=1)
    cfg.train.batch_size = 4
    cfg.train.log_every = 1
    # A smooth loss: the published one's logits are so large (an identity loss ~1e2 at init)
    # that its softmaxes are nearly hard matches, and a float32 rounding difference between two
    # reduction orders flips matches and grows to percents within a few steps.
    cfg.model.dtype = "float64"
    cfg.loss.weights = {"identity": 1.0, "deviation": 0.5}
    cfg.loss.options = {
        "identity": {"similarity": "cosine", "temperature": 0.1},
        "deviation": {"similarity": "cosine", "temperature": 0.1},
    }
    if processes > 1:
        cfg.mesh.num_processes = processes
        cfg.mesh.process_id = process_id
        cfg.mesh.coordinator_address = f"127.0.0.1:{port}"
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_group(commands: list[list[str]], env: dict, timeout: float = 400) -> list[tuple[int, str]]:
    """Start one process per command, all at once; (exit status, output) of each. All are
    killed if one is still running after ``timeout`` seconds."""
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for cmd in commands
    ]
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def launch(n: int, workdir: str, steps: int = STEPS) -> list[str]:
    """Run n processes of the same command; every one is killed if the group hangs."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    script = [
        RUN.format(root=ROOT, n=n, pid=i, port=port, workdir=workdir, steps=steps) for i in range(n)
    ]
    ends = run_group([[sys.executable, "-c", s] for s in script], env)
    for code, out in ends:
        assert code == 0, out[-3000:]
    return [out for _, out in ends]


def saved_state(workdir: str, step: int, like=None):
    """The train state of a checkpoint; ``like``: a state whose shardings it is restored into
    (needed when it was written by another number of processes)."""
    import orbax.checkpoint as ocp

    manager = checkpoints.checkpoint_manager(workdir, 3)
    if like is None:
        state = manager.restore(step, args=ocp.args.StandardRestore())["state"]
    else:
        state = checkpoints.restore_state(manager, step, like)
    manager.close()
    return state


def flat(tree) -> dict:
    import jax

    return {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_two_processes_equal_one_and_resume_in_one(tmp_path):
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    outs = launch(2, two)
    assert all('"status": "interrupted"' in o for o in outs)
    assert all("Gloo" in o for o in outs)  # CPU collectives across processes
    launch(1, one)
    ref = saved_state(one, STEPS)
    a, b = flat(saved_state(two, STEPS, like=ref)), flat(ref)
    assert a.keys() == b.keys() and any("batch_stats" in k for k in a)
    for k in a:  # parameters, BatchNorm statistics and optimizer state
        np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-12, err_msg=k)
    rows = lambda w: [json.loads(line) for line in open(os.path.join(w, "metrics.jsonl"))]
    ra, rb = rows(two), rows(one)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in ra], [r["loss"] for r in rb], rtol=1e-9)
    # the checkpoint the two processes wrote resumes in one process, to the end of the epoch
    res = json.loads(launch(1, two, steps=0)[0].split("RESULT ")[-1])
    assert res["status"] == "finished" and res["step"] > STEPS
    assert os.path.exists(os.path.join(two, "export", "model.json"))
    steps = [r["step"] for r in rows(two) if "loss" in r]
    assert steps == list(range(1, res["step"] + 1))


TRAIN_CMD = [
    sys.executable,
    "train.py",
    "--config",
    "configs/quickstart.py",
    "--config.train.epochs=1",
    "--config.train.log_every=1",
    "--config.train.eval_every=1",
    "--config.data.camera_pairs=1",
    "--config.model.widths=(8,8)",
    "--config.model.kernel_size=5",
    "--progress=false",
]


def train_py(workdir: str, n: int, timeout: float = 400) -> list[tuple[int, str]]:
    """The README's train command started once per process on localhost; (exit status,
    output) of each. All are killed if one is still running after ``timeout`` seconds."""
    port = free_port()
    commands = [
        TRAIN_CMD
        + [
            f"--workdir={workdir}",
            f"--config.mesh.num_processes={n}",
            f"--config.mesh.process_id={i}",
            f"--config.mesh.coordinator_address=127.0.0.1:{port}",
        ]
        for i in range(n)
    ]
    return run_group(commands, dict(os.environ, JAX_PLATFORMS="cpu"), timeout)


def test_two_processes_run_train_py_to_the_end_and_rerun_as_finished(tmp_path):
    """Both processes of the README's multi-process command finish: one metrics row per
    step, an evaluation row, an export that loads, no export left half-written; starting the
    finished run again says so and exits 0 in both."""
    from sesyn_jax import checkpoint

    work = str(tmp_path / "run")
    ends = train_py(work, 2)
    for code, out in ends:
        assert code == 0, out[-3000:]
    assert "done:" in ends[0][1]
    rows = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 4
    evals = [r for r in rows if "val" in r]
    assert len(evals) == 1 and evals[0]["step"] == steps[-1]
    assert np.isfinite(evals[0]["val"]["frame_error"])
    loaded = checkpoint.load_inference(work)
    assert loaded.model_config["widths"] == (8, 8) and loaded.meta["step"] == steps[-1]
    assert not [f for f in os.listdir(work) if f.startswith(".tmp")]
    again = train_py(work, 2)
    for code, out in again:
        assert code == 0, out[-3000:]
    assert "already finished" in again[0][1]


def test_two_processes_without_a_coordinator_is_a_config_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_"))}
    out = subprocess.run(
        TRAIN_CMD + [f"--workdir={tmp_path / 'run'}", "--config.mesh.num_processes=2"],
        cwd=ROOT,
        env=dict(env, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "mesh.coordinator_address" in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_cluster_environment_starts_jax_distributed_and_mesh_settings_override(
    monkeypatch, capsys
):
    import jax
    from ml_collections import ConfigDict

    from sesyn_jax.train import distributed

    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append(a))
    monkeypatch.setattr(jax.config, "update", lambda *a: None)
    mesh = lambda n=1, address="", pid=-1: ConfigDict(
        {"num_processes": n, "coordinator_address": address, "process_id": pid}
    )
    if not distributed.cluster_detected():  # a plain machine: one process, nothing started
        distributed.init_distributed(mesh())
        assert calls == []
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed.cluster_detected()
    distributed.init_distributed(mesh())
    distributed.init_distributed(mesh(2, "127.0.0.1:99", 1))
    assert calls == [("10.0.0.1:1234", 4, 3), ("127.0.0.1:99", 2, 1)]
    # it says what it waits for (jax.distributed waits silently, then aborts the process)
    err = capsys.readouterr().err
    assert "process 3 of 4: waiting for every process to join at 10.0.0.1:1234" in err
    with pytest.raises(distributed.ConfigError, match="process_id 5"):
        distributed.init_distributed(mesh(2, "127.0.0.1:99", 5))


def test_each_process_reads_its_own_slice_of_the_global_batch():
    from sesyn_jax.data import mocap_syn
    from sesyn_jax.data.pairs import PairBatcher

    cfg = mocap_syn.BuildConfig(frames=120, camera_pairs=1)
    data = mocap_syn.embedded_fresh_crops(cfg, "train")
    whole = PairBatcher(data, 4, (128,), seed=1)
    parts = [PairBatcher(data, 4, (128,), seed=1, process_index=i, process_count=2) for i in (0, 1)]
    idx = whole.batch_indices(3)[5]
    full = whole.make_batch(idx, 3)
    halves = [p.make_batch(idx, 3) for p in parts]
    np.testing.assert_array_equal(halves[0]["index"], full["index"][:2])
    np.testing.assert_array_equal(halves[1]["index"], full["index"][2:])
    for k in ("poses1", "poses2", "offset"):
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), full[k])


if __name__ == "__main__":
    pytest.main([__file__])
