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
glibc's defaults alone. Elsewhere (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV_VAR = "SESYN_JAX_HOST_ALLOCATOR"

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# (parameter, value): one arena, no mmap'd blocks, keep up to 2 GiB of freed memory untrimmed
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))

_state = {"applied": False}


def tune_host_allocator() -> str:
    """Apply the settings above once per process. Returns what happened, for logs:
    'tuned', 'already tuned', 'default (SESYN_JAX_HOST_ALLOCATOR=default)' or
    'default (not glibc)'. Raises RuntimeError if glibc rejects a setting."""
    if os.environ.get(ENV_VAR, "tuned").strip().lower() == "default":
        return f"default ({ENV_VAR}=default)"
    if _state["applied"]:
        return "already tuned"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    libc = ctypes.CDLL(None)
    for param, value in _SETTINGS:
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            raise RuntimeError(f"glibc mallopt({param}, {value}) failed; "
                               f"set {ENV_VAR}=default to run with glibc's defaults")
    _state["applied"] = True
    return "tuned"
