"""JAX against our PyTorch implementation of the published network: the targets of the
converter issue, on weights perturbed away from their initial values."""

import pytest

torch = pytest.importorskip("torch")

from sesyn_jax import parity  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return parity.run_parity(seed=0, frames=32, steps=3)


def worst(rows, section, prefix=""):
    sel = [r for r in rows if r[0] == section and r[1].startswith(prefix)]
    assert sel, section
    return max(r[3] for r in sel)


def test_float32_targets(rows):
    assert worst(rows, "eval forward float32") <= 1e-5
    assert worst(rows, "train forward float32") <= 1e-4
    assert worst(rows, "running stats float32") <= 1e-5
    for name in ("loss", "identity", "deviation", "interval"):
        assert worst(rows, "loss float32", name) <= 1e-5
    assert worst(rows, "loss float32", "d loss") <= 1e-4
    # PyTorch's own float32 gradient of this network is ~2e-3 from float64 (BatchNorm backward
    # cancels), so per tensor the two frameworks can only agree to that noise. All parameters
    # together, relative to their size, measured against the same steps in float64 (PyTorch's
    # own float32 run is up to 1.7e-4 away from it, depending on the seed and thread count, so
    # JAX float32 against PyTorch float32 sits on that noise and is not asserted):
    f32 = "after 3 steps float32"
    assert worst(rows, f32, "all params: ||jax f32 - torch f64|| / ||params||") <= 1e-4
    # and JAX's float32 steps are as close to the float64 steps as PyTorch's float32 steps are
    jax_err = worst(rows, f32, "all params: ||jax f32 - torch f64|| / ||update||")
    torch_err = worst(rows, f32, "all params: ||torch f32 - torch f64|| / ||update||")
    assert jax_err <= 2 * torch_err + 1e-6


def test_float64_targets(rows):
    for section in ("eval forward", "train forward", "running stats", "loss", "after 3 steps"):
        assert worst(rows, f"{section} float64") <= 1e-10, section
