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


def launch(n: int, workdir: str, steps: int = STEPS) -> list[str]:
    """Run n processes of the same command; every one is killed if the group hangs."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUN.format(root=ROOT, n=n, pid=i, port=port, workdir=workdir, steps=steps),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=150)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


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


def test_each_process_reads_its_own_slice_of_the_global_batch():
    from sesyn_jax.data import mocap_syn
    from sesyn_jax.data.pairs import PairBatcher

    cfg = mocap_syn.BuildConfig(frames=120, camera_pairs=1)
    data = mocap_syn.embedded_fresh_crops(cfg, "train")
    whole = PairBatcher(data, 4, (128,), seed=1)
    parts = [PairBatcher(data, 4, (128,), seed=1, process_index=i, process_count=2) for i in (0, 1)]
    idx = whole._batches(3)[5]
    full = whole.make_batch(idx, 3)
    halves = [p.make_batch(idx, 3) for p in parts]
    np.testing.assert_array_equal(halves[0]["index"], full["index"][:2])
    np.testing.assert_array_equal(halves[1]["index"], full["index"][2:])
    for k in ("poses1", "poses2", "offset"):
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), full[k])


if __name__ == "__main__":
    pytest.main([__file__])
