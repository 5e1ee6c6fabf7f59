"""The training run behind train.py, in stages: config checks, devices and mesh, data, model and
state, the jit-compiled train step, the loop (evaluation, checkpoints), the inference export.

Workdir layout:
  config.json          the full config of the run (a run is reproducible from its folder)
  metrics.jsonl        one JSON object per logged step / evaluation
  checkpoints/<step>/  orbax CheckpointManager: train state + data position (latest few and
                       the best by validation frame error)
  export/              inference checkpoint (params and batch_stats) of the final model
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sesyn_jax import checkpoint as ckpt_lib
from sesyn_jax import evaluation, losses, training
from sesyn_jax.config_checks import ConfigError, check_config
from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.splits import load_pairs
from sesyn_jax.model import STGCNEmbedding, init_variables
from sesyn_jax.io import atomic_write


class NonFiniteLoss(RuntimeError):
    pass


def model_kwargs(config) -> dict:
    m = config.model
    return dict(
        layout=m.layout,
        strategy=m.strategy,
        widths=tuple(m.widths),
        kernel_size=m.kernel_size,
        padding=m.padding,
    )


def inner_radius(model, config) -> int:
    """Frames hidden at each end in losses and searches: the model's receptive radius when
    model.inner_frames is set, else 0."""
    return model.receptive_radius if config.model.inner_frames else 0


def make_model(config):
    dtype = {"bfloat16": jnp.bfloat16, "float64": jnp.float64}.get(config.model.dtype, jnp.float32)
    return STGCNEmbedding(**model_kwargs(config), dtype=dtype)


def make_schedule(config, steps_per_epoch: int):
    t = config.train
    total = t.epochs * steps_per_epoch
    if t.schedule == "constant":
        return t.lr
    if t.schedule == "cosine":
        return optax.cosine_decay_schedule(t.lr, total)
    return optax.warmup_cosine_decay_schedule(0.0, t.lr, t.warmup_epochs * steps_per_epoch, total)


# ----------------------------------------------------------------------------- the run


def train_and_evaluate(
    config, workdir: str, stop_after_steps: int = 0, progress: bool = True
) -> dict[str, Any]:
    check_config(config)
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file; give a folder (new, or a run to resume)")

    # -- devices and mesh: one data axis over every device; parameters replicated.
    init_distributed(config.mesh)
    main_process = jax.process_index() == 0
    n_dev = jax.device_count()
    if config.train.batch_size % n_dev:
        raise ConfigError(
            f"train.batch_size {config.train.batch_size} is not divisible by the {n_dev} devices"
        )
    mesh = jax.make_mesh((n_dev,), ("data",))
    data_sharding = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())

    # -- data
    model = make_model(config)
    # rendered views keep enough frames that some lie out of reach of both ends
    min_length = 2 * inner_radius(model, config) + 16
    train_pairs = load_pairs(config, "train", fresh_crops=True, min_length=min_length)
    test_pairs = load_pairs(config, "test")
    if not train_pairs:
        raise ConfigError("the training split has no pairs")
    try:
        batcher = PairBatcher(
            train_pairs,
            config.train.batch_size,
            config.data.buckets,
            seed=config.seed,
            train=True,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            normalization=config.model.normalization,
        )
    except ValueError as e:
        raise ConfigError(f"data: {e}") from None
    steps_per_epoch = batcher.steps_per_epoch()
    total_steps = steps_per_epoch * config.train.epochs

    # -- model and state

    variables = init_variables(model, jax.random.PRNGKey(config.seed))
    tx = training.make_optimizer(
        make_schedule(config, steps_per_epoch),
        config.train.momentum,
        config.train.nesterov,
        config.train.weight_decay,
    )
    state = jax.device_put(training.create_state(variables, tx), replicated)

    # -- the jit-compiled train step: batch sharded over the data axis, state donated.
    pair_loss = losses.make_loss_fn(dict(config.loss.weights), config.loss.options.to_dict())
    step_fn = training.make_train_step(
        model, pair_loss, tx, config.train.bn_mode, inner_frames=config.model.inner_frames
    )
    train_step = jax.jit(
        step_fn,
        in_shardings=(replicated, data_sharding),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    embed_fn = evaluation.make_embed_fn(model)

    # -- checkpoints: resume if the workdir has one
    if main_process:
        os.makedirs(workdir, exist_ok=True)
        _write_config(workdir, config)
    manager = checkpoint_manager(workdir, config.train.keep)
    start_step = 0
    if manager.latest_step() is not None:
        start_step = manager.latest_step()
        state = restore_state(manager, start_step, state)
        export_dir = os.path.join(workdir, "export")
        if start_step >= total_steps and os.path.exists(os.path.join(export_dir, "model.json")):
            manager.close()
            say(
                f"{workdir}: this run already finished ({start_step} steps); its export is "
                f"in {export_dir}. Nothing to do."
            )
            return {"status": "finished", "step": start_step, "already_finished": True}
        say(
            f"resumed from {workdir}/checkpoints/{start_step} (epoch "
            f"{start_step // steps_per_epoch}, step {start_step})"
        )

    def save(step: int, metrics: dict | None = None):
        finite = jax.tree_util.tree_reduce(
            lambda ok, x: ok and bool(jnp.isfinite(x).all()), state.params, True
        )
        if not finite:  # never overwrite good checkpoints with a diverged state
            raise NonFiniteLoss(
                f"non-finite parameters at step {step}; the last good checkpoint "
                f"in {workdir}/checkpoints is kept"
            )
        # the global arrays themselves: orbax writes each shard once, from the process that
        # holds it, and restores into targets that carry the same shardings
        manager.save(
            step,
            args=ocp.args.StandardSave(
                {"state": state, "data": {"step": np.array(step, np.int64)}}
            ),
            metrics=metrics,
        )
        manager.wait_until_finished()

    def evaluate(params, batch_stats) -> dict:
        # host copies of the replicated parameters: every process evaluates on its own devices
        variables = jax.device_get({"params": params, "batch_stats": batch_stats})
        radius = inner_radius(model, config)
        return evaluation.evaluate_model(
            embed_fn,
            variables,
            test_pairs,
            config.eval,
            config.data.buckets,
            config.data.fps,
            radius,
            normalization=config.model.normalization,
        )[1]

    # -- the loop
    log = MetricsWriter(os.path.join(workdir, "metrics.jsonl"), start_step, main_process)
    bar = None
    if progress and main_process:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
    step = start_step
    val = None  # a run resumed at its last step (killed before its export) has no new one
    compiles_after_first_epoch = None
    status = "finished"
    t_window, pairs_window = time.perf_counter(), 0
    try:
        for epoch in range(start_step // steps_per_epoch, config.train.epochs):
            skip = step - epoch * steps_per_epoch
            for batch in batcher.epoch(epoch, skip=skip, prefetch=config.data.prefetch):
                state, metrics = train_step(state, device_batch(batch, data_sharding))
                step += 1
                pairs_window += config.train.batch_size
                if due(step, config.train.log_every, step == total_steps):
                    metrics = jax.device_get(metrics)
                    if not all(math.isfinite(float(v)) for v in metrics.values()):
                        raise NonFiniteLoss(
                            f"non-finite loss at step {step} ({metrics}); the last "
                            f"good checkpoint in {workdir}/checkpoints is kept"
                        )
                    rate = pairs_window / (time.perf_counter() - t_window)
                    t_window, pairs_window = time.perf_counter(), 0
                    row = {
                        "step": step,
                        "epoch": epoch,
                        "pairs_per_s": round(rate, 2),
                        **{k: float(v) for k, v in metrics.items()},
                    }
                    log.write(row)
                    if bar:
                        bar.set_postfix(loss=f"{row['loss']:.3f}", pairs_s=f"{rate:.1f}")
                if bar:
                    bar.update(1)
                if stop_after_steps and step - start_step >= stop_after_steps:
                    save(step)
                    status = "interrupted"
                    return {"status": status, "step": step}
            # end of epoch
            if epoch == 0 or compiles_after_first_epoch is None:
                compiles_after_first_epoch = _cache_size(train_step)
            val = None
            last = epoch == config.train.epochs - 1
            if due(epoch + 1, config.train.eval_every, last):
                val = evaluate(state.params, state.batch_stats)
                log.write({"step": step, "epoch": epoch, "val": val})
                if bar:
                    bar.write(
                        f"epoch {epoch + 1}: val frame error {val['frame_error']:.2f}, "
                        f"acc@1 {100 * val['acc@1']:.1f}%"
                    )
            if due(epoch + 1, config.train.checkpoint_every, last):
                save(step, {"val_frame_error": val["frame_error"]} if val else None)
    except NonFiniteLoss as e:
        say(f"error: {e}")
        status = "non-finite"
    finally:
        if bar:
            bar.close()
        log.close()
        manager.close()
    if status != "finished":
        return {"status": status, "step": step}

    # -- the inference export: the final model
    compiles = _cache_size(train_step)
    exported = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    if main_process:
        ckpt_lib.save_inference(
            os.path.join(workdir, "export"),
            exported,
            model_kwargs(config),
            source=f"train.py {workdir} step {step}",
            meta={
                "step": step,
                "val": val,
                "inner_frames": bool(config.model.inner_frames),
                "normalization": config.model.normalization,
                "fps": float(config.data.fps),
                "config": json.loads(config.to_json_best_effort(sort_keys=True)),
            },
        )
    recompiled = (compiles - compiles_after_first_epoch) if compiles_after_first_epoch else 0
    say(
        f"done: {step} steps; train-step compilations: {compiles} "
        f"({recompiled} after the first epoch); export in {workdir}/export"
    )
    return {
        "status": status,
        "step": step,
        "val": val,
        "compiles": compiles,
        "recompiles_after_first_epoch": recompiled,
    }


def due(count: int, every: int, last: bool = False) -> bool:
    """Whether a periodic action (log, evaluate, checkpoint) runs at the ``count``-th step or
    epoch: every ``every`` of them (never for 0) and at the last one."""
    return last or (every > 0 and count % every == 0)


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


def say(message: str) -> None:
    """Print once per run (from process 0 of a multi-process run)."""
    if jax.process_index() == 0:
        print(message)


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
            enable_async_checkpointing=False,
        ),
    )


def restore_state(manager: ocp.CheckpointManager, step: int, like):
    """The train state saved at ``step``, restored straight into the shardings of ``like``."""
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
    )
    data = {"step": np.zeros((), np.int64)}
    restored = manager.restore(step, args=ocp.args.StandardRestore({"state": target, "data": data}))
    return restored["state"]


class MetricsWriter:
    """metrics.jsonl, one JSON row per log or evaluation, written by process 0 only. Opened at
    ``start_step`` of a resumed run, it first drops the rows logged after that checkpoint (a kill
    between a log and the next save), so that no step appears twice."""

    def __init__(self, path: str, start_step: int, enabled: bool = True):
        self.file = None
        if enabled:
            _truncate_metrics(path, start_step)
            self.file = open(path, "a")

    def write(self, row: dict) -> None:
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drop the rows of metrics.jsonl logged after ``last_step`` (atomic rewrite)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if row.get("step", 0) <= last_step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines):
        atomic_write(path, lambda f: f.writelines(keep))


def _cache_size(jitted) -> int:
    try:
        return int(jitted._cache_size())
    except AttributeError:  # private API; absent in some JAX versions
        return -1


def _write_config(workdir: str, config) -> None:
    """Save the run's config, or check that a resumed run has the same one. The ``mesh`` group
    (how many processes, the coordinator) may differ: a run saved by several processes resumes
    in one and the other way round."""
    path = os.path.join(workdir, "config.json")
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        new = json.loads(text)
        old.pop("mesh", None)
        new.pop("mesh", None)
        if old != new:
            raise ConfigError(
                f"{workdir} holds a run with another config (config.json differs); "
                f"use a new --workdir or the same config to resume"
            )
        return
    atomic_write(path, lambda f: f.write(text))
