"""Several processes (hosts): starting jax.distributed, and placing each process's slice of a
global batch on the data axis of the mesh."""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
from jax._src.clusters import ClusterEnv  # what jax.distributed.initialize detects

from sesyn_jax.config_checks import ConfigError


def cluster_detected() -> bool:
    """Whether this process was started as one of several by a cluster that JAX itself
    recognizes (SLURM, a Cloud TPU pod slice, Open MPI, ...) or through the variables
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID."""
    if any(os.environ.get(v) for v in ENV_VARS):
        return True
    return any(
        not env.opt_in_only_method and env.is_env_present() for env in ClusterEnv._cluster_types
    )


ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
JOIN_TIMEOUT_S = 300  # jax.distributed's default


def init_distributed(mesh_config) -> None:
    """Start jax.distributed when the run spans several processes (one per host, the same
    command on each): when ``mesh.num_processes > 1`` or when a cluster environment is
    detected (``cluster_detected``). The ``mesh`` fields override what the environment says
    (coordinator address, process count, this process's id). CPU devices of different
    processes talk through gloo. A ConfigError when the settings cannot start it."""
    if jax.distributed.is_initialized():
        return
    explicit = mesh_config.num_processes > 1
    if not explicit and not cluster_detected():
        return
    address = mesh_config.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num = mesh_config.num_processes if explicit else _env_int("JAX_NUM_PROCESSES")
    pid = mesh_config.process_id if mesh_config.process_id >= 0 else _env_int("JAX_PROCESS_ID")
    if explicit and not cluster_detected() and (not address or pid is None):
        raise ConfigError(
            f"mesh.num_processes={num} needs mesh.coordinator_address (host:port of process 0, "
            f"e.g. 10.0.0.1:12355) and mesh.process_id (0 .. {num - 1}) for this process, or a "
            f"cluster that sets them (SLURM, Open MPI, JAX_COORDINATOR_ADDRESS and "
            f"JAX_PROCESS_ID)"
        )
    if pid is not None and num is not None and not 0 <= pid < num:
        raise ConfigError(f"mesh.process_id {pid} is not in 0 .. {num - 1} (mesh.num_processes)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    who = f"process {pid} of {num}" if pid is not None and num else "this process"
    print(  # jax.distributed is silent while it waits, and then aborts the process
        f"{who}: waiting for every process to join at {address or 'the cluster coordinator'} "
        f"(up to {JOIN_TIMEOUT_S} s; Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    # Python's Ctrl-C handler cannot run while the wait blocks in C++: the default action
    # (end the process) makes Ctrl-C work there
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL) if on_main_thread() else None
    try:
        jax.distributed.initialize(address or None, num, pid, initialization_timeout=JOIN_TIMEOUT_S)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"mesh: jax.distributed could not start: {e}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def on_main_thread() -> bool:
    """Whether this code runs on the main thread (the only one that may set signal handlers)."""
    return threading.current_thread() is threading.main_thread()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not a whole number") from None


TRAIN_KEYS = ("poses1", "mask1", "poses2", "mask2", "offset")


def device_batch(batch: dict, sharding) -> dict:
    """The arrays the train step takes, placed on the data axis of the mesh; with several
    processes each holds its own slice of the global batch."""
    feed = {k: batch[k] for k in TRAIN_KEYS}
    if jax.process_count() > 1:
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_process_local_data(sharding, x), feed
        )
    return jax.device_put(feed, sharding)


def say(message: str) -> None:
    """Print once per run (from process 0 of a multi-process run)."""
    if jax.process_index() == 0:
        print(message)
