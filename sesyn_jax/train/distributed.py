"""Several processes (hosts): starting jax.distributed, and placing each process's slice of a
global batch on the data axis of the mesh."""

from __future__ import annotations

import jax


def init_distributed(mesh_config) -> None:
    """jax.distributed for mesh.num_processes > 1 (one process per host, the same command on
    each; coordinator address and process id from the config or the cluster's environment).
    CPU devices of different processes talk through gloo."""
    if mesh_config.num_processes <= 1:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        mesh_config.coordinator_address or None,
        mesh_config.num_processes,
        mesh_config.process_id if mesh_config.process_id >= 0 else None,
    )


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
