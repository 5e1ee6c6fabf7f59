import importlib.util
import os

import pytest

# Tests run on the CPU in float32 unless a test enables x64 itself.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

HAS_TORCH = importlib.util.find_spec("torch") is not None


def pytest_sessionstart(session):
    # CI installs the CPU build of PyTorch: there the conversion and parity tests must run.
    if os.environ.get("CI") and not HAS_TORCH:
        raise pytest.UsageError(
            "CI is set but torch is not installed: the PyTorch conversion "
            "and parity tests would be skipped (pip install torch==2.13.0)"
        )


def pytest_terminal_summary(terminalreporter):
    if not HAS_TORCH:
        skipped = [
            r for r in terminalreporter.stats.get("skipped", []) if "torch" in str(r.longrepr)
        ]
        terminalreporter.write_line(
            f"torch is not installed: {len(skipped)} PyTorch conversion and parity test(s) "
            f"skipped (pip install torch==2.13.0 to run them)",
            yellow=True,
        )


SMALL = dict(widths=(16, 16), kernel_size=5)


@pytest.fixture(scope="module")
def random_export(tmp_path_factory):
    """An untrained small network saved as an inference export folder."""
    import jax

    from sesyn_jax import checkpoint
    from sesyn_jax.model import STGCNEmbedding, init_variables

    path = tmp_path_factory.mktemp("ck") / "export"
    variables = init_variables(STGCNEmbedding(**SMALL), jax.random.PRNGKey(0))
    checkpoint.save_inference(str(path), variables, SMALL, source="test")
    return str(path)


@pytest.fixture(scope="module")
def motion():
    """Pixel poses (400, 17, 3) of one real clip seen by one camera: the tests crop shifted
    copies of it, so any network matches them frame for frame."""
    import numpy as np

    from sesyn_jax.data import cameras, mocap_syn

    clip = next(c for c in mocap_syn.load_embedded() if c.name == "cmu_01_01")
    rng = np.random.default_rng(0)
    joints = clip.joints[:400].astype(np.float64)
    cam, _, _ = cameras.sample_camera_pair(rng, joints)
    return cameras.detect(rng, cam, joints, cameras.Corruption(missing_prob=0.0))
