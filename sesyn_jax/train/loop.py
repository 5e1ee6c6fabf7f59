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

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sesyn_jax import checkpoint as ckpt_lib
from sesyn_jax import evaluation, losses
from sesyn_jax.config_checks import ConfigError, check_config
from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.splits import load_pairs
from sesyn_jax.io import atomic_write
from sesyn_jax.model import init_variables, inner_radius
from sesyn_jax.train.checkpoints import NonFiniteLoss, checkpoint_manager, restore_state, save_state
from sesyn_jax.train.distributed import device_batch, init_distributed, say
from sesyn_jax.train.metrics_writer import MetricsWriter
from sesyn_jax.train.state import (
    create_state,
    make_model,
    make_optimizer,
    make_schedule,
    model_kwargs,
)
from sesyn_jax.train.step import make_train_step


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
    min_length = 2 * inner_radius(model, config.model.inner_frames) + 16
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
    tx = make_optimizer(
        make_schedule(config, steps_per_epoch),
        config.train.momentum,
        config.train.nesterov,
        config.train.weight_decay,
    )
    state = jax.device_put(create_state(variables, tx), replicated)

    # -- the jit-compiled train step: batch sharded over the data axis, state donated.
    pair_loss = losses.make_loss_fn(dict(config.loss.weights), config.loss.options.to_dict())
    step_fn = make_train_step(
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
        save_state(manager, step, state, workdir, metrics)

    def evaluate(params, batch_stats) -> dict:
        # host copies of the replicated parameters: every process evaluates on its own devices
        variables = jax.device_get({"params": params, "batch_stats": batch_stats})
        radius = inner_radius(model, config.model.inner_frames)
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
