"""The host allocator settings: page faults of a large block freed and allocated again, counted
by the kernel (getrusage), in a fresh process with and without tune_host_allocator()."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from sesyn_jax import hostmem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCK_BYTES = 160 << 20
PAGES = BLOCK_BYTES / 4096

# malloc 160 MB (more than glibc's largest mmap threshold and a thread arena's 64 MB heap), write
# every page, free; three times, from a worker thread and from the main thread, as XLA's step
# buffer is; report minor page faults per round after a first round.
SCRIPT = (
    textwrap.dedent("""
    import ctypes, json, resource, sys, threading
    from sesyn_jax import hostmem
    how = hostmem.tune_host_allocator() if sys.argv[1] == "tune" else "untouched"
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    N = %d
    def once():
        p = libc.malloc(N); ctypes.memset(p, 1, N); libc.free(p)
    def rounds(out):
        once()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            once()
        out.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 3)
    faults = []
    t = threading.Thread(target=rounds, args=(faults,)); t.start(); t.join()
    rounds(faults)
    print(json.dumps({"how": how, "faults": faults}))
""")
    % BLOCK_BYTES
)

glibc_linux = pytest.mark.skipif(
    not hostmem.glibc_linux(), reason="the settings apply to glibc on Linux only"
)


def run_script(mode: str, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SESYN_JAX_HOST_ALLOCATOR"}
    env.update(PYTHONPATH=ROOT, **(env_extra or {}))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def thp_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


@glibc_linux
def test_tuned_allocator_reuses_large_blocks_without_page_faults():
    tuned = run_script("tune")
    assert tuned["how"] == "tuned"
    # worker thread and main thread: the block comes back from the heap, pages already mapped
    assert all(f < 0.01 * PAGES for f in tuned["faults"]), tuned
    if not thp_always():  # with always-on huge pages the default faults 2 MB at a time
        default = run_script("none")
        # glibc's default maps and unmaps the block every round: one fault per 4 KiB page
        assert all(f > 0.9 * PAGES for f in default["faults"]), default


@glibc_linux
def test_environment_variable_keeps_glibc_defaults():
    res = run_script("tune", {"SESYN_JAX_HOST_ALLOCATOR": "default"})
    assert res["how"].startswith("default (SESYN_JAX_HOST_ALLOCATOR=default)")
    if not thp_always():
        assert all(f > 0.9 * PAGES for f in res["faults"]), res


def test_second_call_is_a_no_op():
    saved = dict(hostmem._state)
    try:
        hostmem._state["applied"] = True
        env = os.environ.pop(hostmem.ENV_VAR, None)
        assert hostmem.tune_host_allocator() == "already tuned"
    finally:
        hostmem._state.update(saved)
        if env is not None:
            os.environ[hostmem.ENV_VAR] = env


@glibc_linux
def test_not_tuned_where_jax_runs_on_an_accelerator():
    assert run_script("tune", {"JAX_PLATFORMS": "cuda"})["how"] == "default (accelerator backend)"
    assert run_script("tune", {"JAX_PLATFORMS": "cpu"})["how"] == "tuned"
