import os

# Tests run on the CPU in float32 unless a test enables x64 itself.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
