"""The training input of a run, as a step-indexed source of batches already on the devices:
``source(start_step)`` yields the batches of steps start_step + 1, start_step + 2, ... placed
with the train step's input sharding.

Two sources:
  host_batches     batches built in numpy (``PairBatcher``: file datasets, the embedded
                   pairs, pairs rendered in numpy), built and put on the devices in a
                   background thread a few batches ahead (as flax's ``prefetch_to_device``);
  device_batches   pairs rendered on the devices (``render_jax.make_device_renderer``): the
                   host hands over the key of each step, ``step_key(seed, step)``, and nothing
                   else; JAX dispatch is asynchronous, so the rendering of the next batch is
                   queued behind the current step.
Both are functions of the step alone, so a resumed run feeds the batches of an uninterrupted one.
"""

from __future__ import annotations

from typing import Callable, Iterator

import jax

from sesyn_jax.data.pairs import PairBatcher, prefetch_in_thread
from sesyn_jax.data.render_jax import step_key
from sesyn_jax.train.distributed import device_batch

Batches = Callable[[int], Iterator[dict]]


def epochs_from(batcher: PairBatcher, steps_per_epoch: int, prefetch: int = 0) -> Batches:
    """The batcher's epochs as one stream of host (numpy) batches from any step on (a resumed
    run skips the batches of its epoch that it already trained on)."""

    def from_step(start: int) -> Iterator[dict]:
        epoch = start // steps_per_epoch
        skip = start - epoch * steps_per_epoch
        while True:
            yield from batcher.epoch(epoch, skip=skip, prefetch=prefetch)
            epoch, skip = epoch + 1, 0

    return from_step


def host_batches(batcher: PairBatcher, steps_per_epoch: int, sharding, prefetch: int) -> Batches:
    """The batcher's batches on the devices (``device_batch``: the train step's data sharding,
    each process its own slice), built and placed ``prefetch`` batches ahead in one background
    thread (0: on the calling thread, when asked for)."""
    numpy_batches = epochs_from(batcher, steps_per_epoch)

    def from_step(start: int) -> Iterator[dict]:
        placed = (device_batch(b, sharding) for b in numpy_batches(start))
        if prefetch <= 0:
            return placed
        return prefetch_in_thread(placed, prefetch)

    return from_step


def device_batches(render: Callable, seed: int) -> Batches:
    """Batches rendered on the devices: step s is ``render(step_key(seed, s))``."""
    key_of = jax.jit(lambda step: step_key(seed, step))  # one dispatch instead of three eager ops

    def from_step(start: int) -> Iterator[dict]:
        step = start
        while True:
            step += 1
            yield render(key_of(step))

    return from_step
