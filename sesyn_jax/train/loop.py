"""The training run behind train.py, in stages: config checks, devices and mesh, data, model and
state, the jit-compiled train step, the loop (evaluation, checkpoints), the inference export.

Workdir layout:
  config.json          the full config of the run (a run is reproducible from its folder)
  metrics.jsonl        one JSON object per logged step / evaluation (with the step time and
                       the time spent waiting for the batch)
  tensorboard/         the same scalars as TensorBoard event files (train.tensorboard)
  profile/             a jax.profiler trace of the steps train.profile_steps names
  checkpoints/<step>/  orbax CheckpointManager: train state + data position (latest few and
                       the best by validation frame error)
  export/              inference checkpoint (params and batch_stats) of the final model
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from typing import Any, Callable

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sesyn_jax import checkpoint as ckpt_lib
from sesyn_jax import evaluation, losses
from sesyn_jax.config_checks import ConfigError, check_config
from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.render_jax import make_device_renderer
from sesyn_jax.data.splits import load_pairs
from sesyn_jax.io import atomic_write
from sesyn_jax.model import init_variables, inner_radius
from sesyn_jax.train.checkpoints import (
    NonFiniteLoss,
    all_finite,
    checkpoint_manager,
    diverged,
    restore_state,
    save_state,
)
from sesyn_jax.train.distributed import init_distributed, on_main_thread, say
from sesyn_jax.train.input import Batches, device_batches, host_batches
from sesyn_jax.train.metrics_writer import MetricsWriter, StepTimer
from sesyn_jax.train.state import (
    create_state,
    make_model,
    make_optimizer,
    make_schedule,
    model_kwargs,
)
from sesyn_jax.train.step import make_train_step


@dataclasses.dataclass
class Setup:
    """What the stages before the loop build: the mesh's shardings, the model, the data, the
    jitted step and the state (restored when the workdir holds a checkpoint). ``batches``:
    ``batches(start_step)`` yields the batches of steps start_step + 1, ... already on the
    devices (``sesyn_jax.train.input``; any function of the step fits)."""

    config: Any
    workdir: str
    data_sharding: NamedSharding
    model: Any
    batches: Batches
    test_pairs: list
    steps_per_epoch: int
    total_steps: int
    state: Any
    train_step: Callable
    evaluator: evaluation.Evaluator
    manager: Any
    start_step: int = 0


def train_and_evaluate(
    config, workdir: str, stop_after_steps: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Train the config's model in ``workdir`` (resuming what it holds), evaluate it on the
    test split and write the inference export; the same call on every process of a
    multi-process run. Stages: config checks, distributed start and mesh, data, model and
    state, the jitted step, checkpoints (resume), the loop (log, evaluate, checkpoint), the
    export. ``stop_after_steps`` > 0: stop after that many steps of this call, as if killed.

    Returns {"status": "finished" | "interrupted" | "non-finite", "step", ...}; a finished run
    started again returns "already_finished" without training.
    """
    check_config(config)
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file; give a folder (new, or a run to resume)")
    init_distributed(config.mesh)
    run = setup(config, workdir)
    export_dir = os.path.join(workdir, "export")
    if run.start_step >= run.total_steps and os.path.exists(os.path.join(export_dir, "model.json")):
        run.manager.close()
        say(
            f"{workdir}: this run already finished ({run.start_step} steps); its export is "
            f"in {export_dir}. Nothing to do."
        )
        return {"status": "finished", "step": run.start_step, "already_finished": True}
    if run.start_step:
        say(
            f"resumed from {workdir}/checkpoints/{run.start_step} (epoch "
            f"{run.start_step // run.steps_per_epoch}, step {run.start_step})"
        )
    result = train_loop(run, stop_after_steps, progress)
    if result["status"] != "finished":
        return result
    if result["val"] is None:  # resumed after its last checkpoint: the final evaluation
        result["val"] = run.evaluator(variables_of(run.state), run.test_pairs)[1]
    export(run, result)
    r = result
    later = r["evaluator_recompiles_after_first_epoch"]
    later = "first run after it" if later is None else f"{later} after it"
    say(
        f"done: {r['step']} steps; compilations of the train step: {r['compiles']} "
        f"({r['recompiles_after_first_epoch']} after the first epoch), of the evaluator: "
        f"{r['evaluator_compiles']} ({later}); export in {export_dir}"
    )
    return result


def setup(config, workdir: str) -> Setup:
    """Mesh (one data axis over every device of every process; parameters replicated), data,
    model and state, the jitted step, and the checkpoints (restored when present)."""
    n_dev = jax.device_count()
    if config.train.batch_size % n_dev:
        raise ConfigError(
            f"train.batch_size {config.train.batch_size} is not divisible by the {n_dev} devices"
        )
    mesh = jax.make_mesh((n_dev,), ("data",))
    data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    model = make_model(config)
    train_pairs, batcher, test_pairs = load_data(config, model)
    steps_per_epoch = batcher.steps_per_epoch()
    tx = make_optimizer(
        make_schedule(config, steps_per_epoch),
        config.train.momentum,
        config.train.nesterov,
        config.train.weight_decay,
    )
    variables = init_variables(model, jax.random.PRNGKey(config.seed))
    state = jax.device_put(create_state(variables, tx), replicated)
    pair_loss = losses.make_loss_fn(dict(config.loss.weights), config.loss.options.to_dict())
    step_fn = make_train_step(
        model, pair_loss, tx, config.train.bn_mode, inner_frames=config.model.inner_frames
    )
    train_step = jax.jit(  # batch sharded over the data axis, the state donated
        step_fn,
        in_shardings=(replicated, data_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    _check_saved_config(workdir, config)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
    manager = checkpoint_manager(workdir, config.train.keep)
    start_step = manager.latest_step() or 0
    if start_step:
        ckpt_lib.drop_closed_loop_reports()
        try:
            state = restore_state(manager, start_step, state)
        except (ValueError, KeyError, TypeError) as e:  # orbax: shapes or tree that differ
            detail = ckpt_lib.restore_failure(e)
            manager.close()
            raise ConfigError(
                f"{workdir}/checkpoints/{start_step} cannot be restored into this config's "
                f"model and optimizer ({detail}); use a new --workdir or the config the "
                f"checkpoints were written with"
            ) from None
    if jax.process_index() == 0:
        _write_config(workdir, config)  # after a restore that worked: it names the run
    return Setup(
        config,
        workdir,
        data_sharding,
        model,
        training_input(config, train_pairs, batcher, steps_per_epoch, data_sharding),
        test_pairs,
        steps_per_epoch,
        steps_per_epoch * config.train.epochs,
        state,
        train_step,
        evaluation.Evaluator(
            model,
            config.eval,
            config.data.buckets,
            config.data.fps,
            inner_radius(model, config.model.inner_frames),
            config.model.normalization,
        ),
        manager,
        start_step,
    )


def load_data(config, model) -> tuple[Any, PairBatcher, list]:
    """The training pairs, their batcher (this process's slice of every global batch) and the
    test pairs."""
    # rendered views keep enough frames that some lie out of reach of both ends
    min_length = 2 * inner_radius(model, config.model.inner_frames) + 16
    train_pairs = load_pairs(config, "train", fresh_crops=True, min_length=min_length)
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
    return train_pairs, batcher, load_pairs(config, "test")


def training_input(config, train_pairs, batcher, steps_per_epoch: int, data_sharding) -> Batches:
    """data.render_on='host': the batcher's batches, built and put on the devices
    data.prefetch batches ahead in a background thread; 'device': pairs rendered on the
    devices from the key of each step (the same number of steps per epoch)."""
    d = config.data
    if d.render_on == "device":
        render = make_device_renderer(
            train_pairs,
            config.train.batch_size,
            d.buckets,
            config.model.normalization,
            data_sharding,
        )
        return device_batches(render, config.seed)
    return host_batches(batcher, steps_per_epoch, data_sharding, d.prefetch)


def train_loop(run: Setup, stop_after_steps: int, progress: bool) -> dict:
    """The steps from run.start_step to the end: log every train.log_every steps (with the
    per-term gradient norms), evaluate and checkpoint at the ends of epochs as the config
    says. Checkpoints are written in the background; every exit waits for them (SIGTERM
    included)."""
    t = run.config.train
    log = MetricsWriter(
        os.path.join(run.workdir, "metrics.jsonl"),
        run.start_step,
        jax.process_index() == 0,
        os.path.join(run.workdir, "tensorboard") if t.tensorboard else "",
    )
    bar = _progress_bar(run) if progress and jax.process_index() == 0 else None
    step, val, first_epoch_compiles, signum = run.start_step, None, None, 0
    timer = StepTimer()
    profile = Profile(t.profile_steps, os.path.join(run.workdir, "profile"))
    status = "finished"
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if on_main_thread() else None
    batches = run.batches(step)
    try:
        while step < run.total_steps:
            logged = due(step + 1, t.log_every, step + 1 == run.total_steps)
            profile.before(step + 1)
            waiting = time.perf_counter()
            feed = next(batches)
            timer.waited(time.perf_counter() - waiting)
            run.state, metrics = run.train_step(run.state, feed, logged)
            step += 1
            profile.after(step, run.state)
            if logged:
                _log_step(run, log, bar, step, metrics, timer)
            if bar:
                bar.update(1)
            if stop_after_steps and step - run.start_step >= stop_after_steps:
                save_state(run.manager, step, run.state, run.workdir)
                return {"status": "interrupted", "step": step}
            if step % run.steps_per_epoch == 0:
                epoch = step // run.steps_per_epoch - 1
                val = _end_of_epoch(run, log, bar, step, epoch, timer)
                if first_epoch_compiles is None:
                    first_epoch_compiles = _compilations(run)
    except NonFiniteLoss as e:
        say(f"error: {e}")
        log.write({"step": step, "stopped": "non-finite"})  # evaluate.py reads it
        status = "non-finite"
    except (Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        why = e if isinstance(e, Interrupted) else "Ctrl-C"
        say(
            f"stopped by {why} at step {step}; the checkpoints written so far are kept (run "
            f"the same command to resume)"
        )
        status = "terminated"
    finally:
        profile.stop()
        batches.close()
        if bar:
            bar.close()
        log.close()
        run.manager.wait_until_finished()
        run.manager.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if status == "terminated":
        return {"status": status, "step": step, "signal": int(signum)}
    if status != "finished":
        return {"status": status, "step": step}
    return _finished(run, step, val, first_epoch_compiles, timer)


def _finished(run: Setup, step: int, val, first_epoch_compiles, timer: StepTimer) -> dict:
    """The result of a run that trained to its end: compilation counts and the data wait."""
    compiles = _compilations(run)
    first = first_epoch_compiles or compiles
    timing = timer.summary()
    if timing:
        say(
            f"data wait {100 * timing['data_wait_share']:.1f} % of step time "
            f"({timing['data_wait_ms']:.2f} ms of {timing['step_ms']:.2f} ms per step, "
            f"{timing['steps']} steps after the first log)"
        )
    return {
        "status": "finished",
        "step": step,
        "val": val,
        "timing": timing,
        "compiles": compiles[0],
        "recompiles_after_first_epoch": compiles[0] - first[0],
        "evaluator_compiles": compiles[1],
        # None: the evaluator first ran after the first epoch, so nothing to compare with
        "evaluator_recompiles_after_first_epoch": compiles[1] - first[1] if first[1] else None,
    }


def _compilations(run: Setup) -> tuple[int, int]:
    """Shapes the train step and the evaluator have been compiled for so far."""
    return _cache_size(run.train_step), run.evaluator.compilations()


def _log_step(run: Setup, log: MetricsWriter, bar, step: int, metrics, timer: StepTimer) -> None:
    """One metrics.jsonl row (the step time and the data wait of the window since the last
    one); a non-finite loss stops the run (NonFiniteLoss)."""
    metrics = jax.device_get(metrics)  # waits for this step: the window's time is known
    window = timer.close_window()
    if not all(math.isfinite(float(v)) for v in metrics.values()):
        raise NonFiniteLoss(diverged(f"non-finite loss at step {step}", run.workdir))
    rate = 1000 * run.config.train.batch_size / window["step_ms"]
    row = {
        "step": step,
        "epoch": (step - 1) // run.steps_per_epoch,
        "pairs_per_s": round(rate, 2),
        "step_ms": round(window["step_ms"], 3),
        "data_wait_ms": round(window["data_wait_ms"], 3),
        **{k: float(v) for k, v in metrics.items()},
    }
    log.write(row)
    if bar:
        bar.set_postfix(loss=f"{row['loss']:.3f}", pairs_s=f"{rate:.1f}")


def _end_of_epoch(
    run: Setup, log: MetricsWriter, bar, step: int, epoch: int, timer: StepTimer
) -> dict | None:
    """Evaluate and checkpoint when due; returns the validation metrics (None when not due).
    The steps before an evaluation or a checkpoint are timed up to it (their window closes
    unlogged) and the next window starts after it."""
    t = run.config.train
    last = epoch == t.epochs - 1
    val = None
    pause = due(epoch + 1, t.eval_every, last) or due(epoch + 1, t.checkpoint_every, last)
    if pause:
        jax.block_until_ready(run.state)
        timer.close_window()
    if due(epoch + 1, t.eval_every, last):
        if not all_finite(run.state.params):
            raise NonFiniteLoss(diverged(f"non-finite parameters at step {step}", run.workdir))
        val = run.evaluator(variables_of(run.state), run.test_pairs)[1]
        log.write({"step": step, "epoch": epoch, "val": val})
        if bar:
            bar.write(
                f"epoch {epoch + 1}: val frame error {val['frame_error']:.2f}, "
                f"acc@1 {100 * val['acc@1']:.1f}%"
            )
    if due(epoch + 1, t.checkpoint_every, last):
        metrics = {"val_frame_error": val["frame_error"]} if val else None
        save_state(run.manager, step, run.state, run.workdir, metrics)
    if pause:
        timer.restart()
    return val


class Profile:
    """A jax.profiler trace of the steps ``first`` to ``last`` (counted from 1, both included)
    written under ``folder``: it starts before step ``first`` is dispatched and stops once step
    ``last`` has run on the device. (0, 0): no trace."""

    def __init__(self, steps, folder: str):
        self.first, self.last = (int(s) for s in steps)
        self.folder, self.active = folder, False

    def before(self, step: int) -> None:
        if self.first and step == self.first and not self.active:
            jax.profiler.start_trace(self.folder)
            self.active = True

    def after(self, step: int, state) -> None:
        if self.active and step >= self.last:
            jax.block_until_ready(state)
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False


def export(run: Setup, result: dict) -> None:
    """The inference export of the final model, written by process 0 alone."""
    if jax.process_index() != 0:
        return
    c = run.config
    variables = jax.device_get(variables_of(run.state))
    ckpt_lib.save_inference(
        os.path.join(run.workdir, "export"),
        variables,
        model_kwargs(c),
        source=f"train.py {run.workdir} step {result['step']}",
        meta={
            "step": result["step"],
            "val": result["val"],
            "inner_frames": bool(c.model.inner_frames),
            "normalization": c.model.normalization,
            "fps": float(c.data.fps),
            "config": json.loads(c.to_json_best_effort(sort_keys=True)),
        },
    )


def variables_of(state) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def _progress_bar(run: Setup):
    from tqdm import tqdm

    return tqdm(total=run.total_steps, initial=run.start_step, unit="step", dynamic_ncols=True)


class Interrupted(Exception):
    """SIGTERM: the loop stops, waits for the checkpoint being written and exits."""


def _raise_interrupt(signum, frame):
    e = Interrupted(f"signal {signum}")
    e.signum = signum
    raise e


def due(count: int, every: int, last: bool = False) -> bool:
    """Whether a periodic action (log, evaluate, checkpoint) runs at the ``count``-th step or
    epoch: every ``every`` of them (never for 0) and at the last one."""
    return last or (every > 0 and count % every == 0)


def _cache_size(jitted) -> int:
    try:
        return int(jitted._cache_size())
    except AttributeError:  # private API; absent in some JAX versions
        return -1


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config_differences(old: dict, new: dict, at_most: int = 5) -> str:
    """'key: saved -> given' for the first ``at_most`` differing keys (absent: 'missing')."""
    a, b = _flatten(old), _flatten(new)

    def shown(d, k):
        return repr(d[k]) if k in d else "missing"

    keys = sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or a[k] != b[k])
    lines = [f"{k}: {shown(a, k)} -> {shown(b, k)}" for k in keys[:at_most]]
    more = f" and {len(keys) - at_most} more" if len(keys) > at_most else ""
    return "; ".join(lines) + more


def _check_saved_config(workdir: str, config) -> None:
    """A resumed run must have the config it was started with (config.json). The ``mesh``
    group (how many processes, the coordinator) may differ: a run saved by several processes
    resumes in one and the other way round."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{path}: cannot be read as the run's saved config ({e}); restore it or use a new "
            f"--workdir"
        ) from None
    new = json.loads(config.to_json_best_effort())
    if not isinstance(old, dict):
        raise ConfigError(f"{path}: not a saved config (a JSON object); use a new --workdir")
    old.pop("mesh", None)
    new.pop("mesh", None)
    if old != new:
        raise ConfigError(
            f"{workdir} holds a run with another config (config.json differs in "
            f"{_config_differences(old, new)}); use a new --workdir or the same config "
            f"to resume"
        )


def _write_config(workdir: str, config) -> None:
    """Save the run's config (once; a resumed run's was checked by _check_saved_config)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        text = config.to_json_best_effort(indent=2, sort_keys=True)
        atomic_write(path, lambda f: f.write(text))
