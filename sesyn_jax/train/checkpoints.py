"""The run's orbax checkpoints: train state and data position under <workdir>/checkpoints, the
latest few and the best by validation frame error."""

from __future__ import annotations

import os

import numpy as np

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


class NonFiniteLoss(RuntimeError):
    pass


def checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """The run's orbax manager: the latest ``keep`` checkpoints and the best by validation
    frame error."""
    policy = ocp.checkpoint_managers.preservation_policy
    best = policy.BestN(
        get_metric_fn=lambda m: m["val_frame_error"],
        reverse=True,
        n=1,
        keep_checkpoints_without_metrics=False,
    )
    return ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy.AnyPreservationPolicy([policy.LatestN(keep), best]),
            enable_async_checkpointing=True,
            cleanup_tmp_directories=True,  # a checkpoint cut short by a full disk or a kill
        ),
    )


def save_state(manager: ocp.CheckpointManager, step: int, state, workdir: str, metrics=None):
    """Start saving the train state at ``step`` (every process calls it; orbax copies the
    arrays to the host, then writes in the background: ``manager.wait_until_finished()``
    before exit). The parameters are checked first: a diverged state never replaces good
    checkpoints."""
    if not all_finite(state.params):
        raise NonFiniteLoss(diverged(f"non-finite parameters at step {step}", workdir))
    # the global arrays themselves: orbax writes each shard once, from the process that
    # holds it, and restores into targets that carry the same shardings
    manager.save(
        step,
        args=ocp.args.StandardSave({"state": state, "data": {"step": np.array(step, np.int64)}}),
        metrics=metrics,
    )


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def all_finite(tree) -> bool:
    """Whether every entry of every array is finite: one reduction on the device, one
    transfer."""
    return bool(_all_finite(tree))


def diverged(what: str, workdir: str) -> str:
    """The message of a run stopped by a non-finite loss or parameters."""
    return (
        f"{what}: the loss diverged; lower the learning rate (train.lr) or change the loss "
        f"weights. Checkpoints already in {workdir}/checkpoints are kept"
    )


def restore_state(manager: ocp.CheckpointManager, step: int, like):
    """The train state saved at ``step``, restored straight into the shardings of ``like``."""
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
    )
    data = {"step": np.zeros((), np.int64)}
    restored = manager.restore(step, args=ocp.args.StandardRestore({"state": target, "data": data}))
    return restored["state"]
