"""The model, optimizer, learning-rate schedule and train state a config asks for."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import optax

from sesyn_jax.model import STGCNEmbedding


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def model_kwargs(config) -> dict:
    """The ``STGCNEmbedding`` settings of a config's ``model`` group (what an export keeps)."""
    m = config.model
    return dict(
        layout=m.layout,
        strategy=m.strategy,
        widths=tuple(m.widths),
        kernel_size=m.kernel_size,
        padding=m.padding,
    )


def make_model(config) -> STGCNEmbedding:
    dtype = {"bfloat16": jnp.bfloat16, "float64": jnp.float64}.get(config.model.dtype, jnp.float32)
    precision = (
        None if config.model.matmul_precision == "default" else config.model.matmul_precision
    )
    return STGCNEmbedding(**model_kwargs(config), dtype=dtype, precision=precision)


def make_schedule(config, steps_per_epoch: int):
    t = config.train
    total = t.epochs * steps_per_epoch
    if t.schedule == "constant":
        return t.lr
    if t.schedule == "cosine":
        return optax.cosine_decay_schedule(t.lr, total)
    return optax.warmup_cosine_decay_schedule(0.0, t.lr, t.warmup_epochs * steps_per_epoch, total)


def make_optimizer(
    learning_rate: float | Callable = 0.005,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
) -> optax.GradientTransformation:
    """PyTorch's ``SGD(lr, momentum, nesterov=True, weight_decay)``: the decay is added to the
    gradient (coupled L2) before the momentum, as ``add_decayed_weights`` first does."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov and bool(momentum)),
    )


def create_state(variables: Mapping, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(variables["params"]),
    )
