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
