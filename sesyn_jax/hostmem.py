"""Host memory allocator settings for CPU training (Linux with glibc).

XLA on the CPU gives each execution of a compiled step one temporary buffer for all its
intermediates (about 150 MB for a 120-frame pair's train step). glibc serves an allocation that
large with a fresh ``mmap`` and returns it with ``munmap`` when the step ends, so every step
touches every page of it anew: about 38,000 page faults and 0.1 s of kernel time per step on
2 cores, measured (bench/RESULTS.md). ``tune_host_allocator`` makes glibc keep such blocks in
its heap and reuse them: one arena for all threads (a worker thread's arena cannot grow past
64 MB and would fall back to ``mmap``), no ``mmap`` for large blocks, and freed memory kept
instead of trimmed. The process then holds its peak memory until it exits, which is what a
training process does anyway.

It must run before JAX starts its CPU backend (the first ``jax.devices()`` or computation):
threads that already have an arena keep it. The entry points (train.py, evaluate.py, the sync
tool, bench/) call it first; ``SESYN_JAX_HOST_ALLOCATOR=default`` in the environment leaves
glibc's defaults alone. Elsewhere (macOS, musl, Windows) it does nothing, and it does nothing
where JAX will run on an accelerator (a GPU or TPU plugin is installed and JAX_PLATFORMS does
not ask for the CPU): the step's buffers then live on the device, and the setting was measured
on the CPU only.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform

ENV_VAR = "SESYN_JAX_HOST_ALLOCATOR"

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

# (parameter, value): no mmap'd blocks, keep up to 2 GiB of freed memory untrimmed; these two
# can change at any time (bench/host_allocator.py switches them step by step)
HEAP_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
# one arena for all threads: only takes effect for threads that have no arena yet
ARENA_SETTINGS = ((M_ARENA_MAX, 1),)

_state = {"applied": False}


def glibc_linux() -> bool:
    """Whether this process runs on Linux with glibc, where the settings apply."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def mallopt(settings) -> None:
    """glibc ``mallopt(param, value)`` for each pair; RuntimeError if glibc rejects one."""
    libc = ctypes.CDLL(None)
    for param, value in settings:
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            raise RuntimeError(
                f"glibc mallopt({param}, {value}) failed; "
                f"set {ENV_VAR}=default to run with glibc's defaults"
            )


def cpu_backend() -> bool:
    """Whether JAX will compute on the CPU, decided without starting it: JAX_PLATFORMS
    names the CPU first, or nothing through which JAX finds a GPU or TPU is installed (the
    ``jax_plugins`` of the CUDA and ROCm wheels, ``libtpu``)."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    plugins = importlib.metadata.entry_points(group="jax_plugins")
    return not plugins and not any(
        importlib.util.find_spec(name) for name in ("jax_plugins", "libtpu")
    )


def tune_host_allocator() -> str:
    """Apply the settings above once per process. Returns what happened, for logs:
    'tuned', 'already tuned', 'default (SESYN_JAX_HOST_ALLOCATOR=default)',
    'default (not glibc)' or 'default (accelerator backend)'. Raises RuntimeError if glibc
    rejects a setting."""
    if os.environ.get(ENV_VAR, "tuned").strip().lower() == "default":
        return f"default ({ENV_VAR}=default)"
    if _state["applied"]:
        return "already tuned"
    if not glibc_linux():
        return "default (not glibc)"
    if not cpu_backend():
        return "default (accelerator backend)"
    mallopt(ARENA_SETTINGS + HEAP_SETTINGS)
    _state["applied"] = True
    return "tuned"
