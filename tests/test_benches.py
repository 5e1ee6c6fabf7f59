"""bench/accelerator_check.py on the CPU at its small sizes: the JSON line's fields, float32 and
bfloat16 against float64, the FLOPs of XLA's cost analysis against the network's products counted
by hand, and the peak table's lookup."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import accelerator_check  # noqa: E402


def forward_flops(widths, kernel_size: int, frames: int, sequences: int) -> float:
    """Products of the ST-GCN forward (graph sum, 1x1 conv to K = 3 partitions, temporal conv,
    residual 1x1 conv where the width changes), 2 FLOPs per multiply-add; 17 joints, 3 inputs."""
    v, k, c_in, macs = 17, 3, 3, 0
    for i, c in enumerate(widths):
        macs += frames * v * (v * k * c_in + k * c_in * c + c * c * kernel_size)
        if i > 0 and c_in != c:
            macs += frames * v * c_in * c
        c_in = c
    return 2.0 * macs * sequences


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "accelerator_check.py"), "--steps", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert "peak dense FLOP/s" in out.stdout  # the table is printed
    return json.loads(lines[-1])


def test_accelerator_check_on_the_cpu(report):
    small = accelerator_check.SMALL
    assert report["platform"] == "cpu" and report["small"] is True
    assert report["frames"] == small["frames"] and report["widths"] == list(small["widths"])
    assert report["peak_flops_per_s"] == {"float32": None, "bfloat16": None}
    n = report["numerics"]
    # float32 on the CPU against float64: rounding only (measured ~1e-7 and ~3e-6)
    assert n["float32"]["loss_rel_err"] < 1e-5 and n["float32"]["grad_rel_err"] < 1e-4
    assert n["float32"]["grad_max_abs_err_over_max"] < 1e-4
    # bfloat16 products keep 8 bits: errors of a few 1e-3 in the loss, some 1e-2 in the gradient
    assert 1e-5 < n["bfloat16"]["loss_rel_err"] < 3e-2
    assert 1e-4 < n["bfloat16"]["grad_rel_err"] < 0.3
    rows = report["throughput"]
    assert [(r["dtype"], r["batch"]) for r in rows] == [("float32", 2), ("bfloat16", 2)]
    fwd = forward_flops(small["widths"], 9, small["frames"], sequences=2 * small["batches"][0])
    for r in rows:
        assert r["pairs_per_s"] > 0 and r["step_s"] > 0 and r["mfu"] is None
        # one train step: forward, backward (about twice the forward), the loss, BatchNorm and
        # the per-term gradient norms: measured 4.1x the products of the forward
        assert 2.5 * fwd < r["flops_per_step"] < 6 * fwd, (r["flops_per_step"], fwd)
        assert r["flops_per_s"] == pytest.approx(r["flops_per_step"] / r["step_s"], rel=1e-3)
    assert report["input"]["device_pairs_per_s"] > 0 and report["input"]["numpy_pairs_per_s"] > 0
    assert report["scaling"] is None and report["skipped"] == []


def test_peak_table_lookup():
    peak = accelerator_check.peak_flops
    assert peak("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
    assert peak("NVIDIA H100 PCIe", "bfloat16") == 756e12  # the longer name wins
    assert peak("NVIDIA A100-SXM4-40GB", "float32") == 156e12
    assert peak("TPU v5 lite", "bfloat16") == 197e12
    assert peak("cpu", "float32") is None
