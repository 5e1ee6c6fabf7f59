"""Embedding a set of pairs and scoring the estimated offsets: the one evaluation path that
train.py, evaluate.py and the ablation runner share (``Evaluator``)."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.syn_json import Pair
from sesyn_jax.offset_search import (
    device_offset,
    lag_range,
    resolve_min_overlap,
    search_offset,
)
from sesyn_jax.model import inner_mask
from sesyn_jax.metrics import sync_metrics


def make_embed_fn(model) -> Callable:
    """jit-compiled (variables, poses (B, T, V, 3), mask (B, T)) -> (B, T, D) in eval mode."""
    return jax.jit(lambda variables, poses, mask: model.apply(variables, poses, mask, train=False))


def search_settings(eval_config) -> dict:
    """The offset-search settings of a config's ``eval`` group, as ``search_offset`` takes
    them (eval.max_offset 0: no limit; eval.min_overlap >= 1: frames, else a fraction)."""
    e = eval_config
    return dict(
        rule=e.rule,
        max_offset=int(e.max_offset) or None,
        min_overlap=e.min_overlap if e.min_overlap < 1 else int(e.min_overlap),
    )


def buckets_for(pairs: Sequence[Pair], buckets: Sequence[int]) -> tuple:
    """The bucket lengths, plus a power of two that holds the longest sequence when the
    largest bucket does not (evaluation must not refuse a test set for its lengths)."""
    longest = max(max(len(p.view1), len(p.view2)) for p in pairs)
    b = tuple(sorted(buckets))
    return b if longest <= b[-1] else b + (int(2 ** np.ceil(np.log2(longest))),)


class Evaluator:
    """Offsets of a model on sets of pairs, on the device: one jitted function per bucket
    length embeds a batch of pairs (both views in one forward) and runs the config's offset
    search on it (``offset_search.device_offset``), the batch sharded over this process's
    devices and the parameters kept where they are. Fixed shapes (padded batches, masks),
    so it compiles once per bucket. With several processes each evaluates its share of the
    batches and the offsets are gathered.

    ``inner_radius`` > 0: only frames that far from both ends take part (the receptive radius
    of a model trained on inner frames, ``model.inner_mask``). ``normalization``: the model's
    input normalization; the pairs hold the 'published' one."""

    def __init__(
        self,
        model,
        eval_config,
        buckets: Sequence[int],
        fps: float,
        inner_radius: int = 0,
        normalization: str = "published",
    ):
        self.search = search_settings(eval_config)
        self.buckets, self.fps = tuple(buckets), fps
        self.radius, self.normalization = inner_radius, normalization
        devices = jax.local_devices()
        self.batch_size = -(-eval_config.batch_size // len(devices)) * len(devices)
        mesh = jax.sharding.Mesh(np.array(devices), ("data",))
        self.replicated = NamedSharding(mesh, P())
        self.sharded = NamedSharding(mesh, P("data"))
        self._offsets = jax.jit(
            functools.partial(_batch_offsets, model, self.search, inner_radius),
            in_shardings=(self.replicated,) + (self.sharded,) * 5,
            out_shardings=self.sharded,
        )

    def __call__(self, variables, pairs: Sequence[Pair], progress: bool = False):
        """(offsets (len(pairs),), metrics) with view 1 as u."""
        preds = self.predict(variables, pairs, progress)
        return preds, score(preds, pairs, self.fps)

    def predict(self, variables, pairs: Sequence[Pair], progress: bool = False) -> np.ndarray:
        """Estimated offsets (len(pairs),) int64: view 1 as u, view 2 as v."""
        variables = self.place(variables)
        batcher = PairBatcher(
            pairs,
            self.batch_size,
            buckets_for(pairs, self.buckets),
            train=False,
            normalization=self.normalization,
        )
        me, count = jax.process_index(), jax.process_count()
        batches = [b for i, b in enumerate(batcher.batch_indices(0)) if i % count == me]
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="evaluating", leave=False)
        preds = np.zeros(len(pairs), np.int64)
        mine = np.zeros(len(pairs), bool)
        for idx in batches:
            batch = batcher.make_batch(idx)
            valid = batch["valid"]
            off = self._offsets(variables, *self._inputs(batch))
            preds[batch["index"][valid]] = np.asarray(off)[valid]
            mine[batch["index"][valid]] = True
        if count > 1:
            preds = _gather_from_processes(preds, mine)
        return preds

    def compilations(self) -> int:
        """How many shapes the jitted search has been compiled for (one per bucket)."""
        return _cache_size(self._offsets)

    def place(self, variables):
        """The variables replicated on this process's devices (no copy when they are there:
        a training state stays on the device between evaluations)."""

        def put(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                x = x.addressable_data(0)  # a global array of several processes
            return jax.device_put(x, self.replicated)

        return jax.tree_util.tree_map(put, variables)

    def _inputs(self, batch: dict) -> tuple:
        """poses1, mask1, poses2, mask2 and the minimum overlap of each pair (frames)."""
        m1 = np.asarray(inner_mask(batch["mask1"], self.radius))
        m2 = np.asarray(inner_mask(batch["mask2"], self.radius))
        need = np.array(
            [
                resolve_min_overlap(self.search["min_overlap"], int(a.sum()), int(b.sum()))
                for a, b in zip(m1, m2)
            ],
            np.int32,
        )
        return batch["poses1"], batch["mask1"], batch["poses2"], batch["mask2"], need


def _batch_offsets(model, search: dict, radius: int, variables, p1, mask1, p2, mask2, need):
    """(B,) offsets of a batch of padded pairs (view 1 as u): both views embedded in one
    forward, then the search on inner frames, pair by pair (vmap)."""
    b, t = mask1.shape
    f = model.apply(
        variables, jnp.concatenate([p1, p2]), jnp.concatenate([mask1, mask2]), train=False
    )
    f = f.astype(jnp.promote_types(f.dtype, jnp.float32))
    m1, m2 = inner_mask(mask1, radius), inner_mask(mask2, radius)
    lags = None
    if search["rule"] == "diagonal" or search["max_offset"] is not None:
        lags = np.arange(*np.add(lag_range(t, t, search["max_offset"]), (0, 1)))
    one = functools.partial(device_offset, rule=search["rule"], lags=lags)
    return jax.vmap(one)(f[:b], f[b:], m1, m2, need)


def _cache_size(jitted) -> int:
    try:
        return int(jitted._cache_size())
    except AttributeError:  # private API; absent in some JAX versions
        return -1


def _gather_from_processes(preds: np.ndarray, mine: np.ndarray) -> np.ndarray:
    """Every process's offsets of the pairs it evaluated, combined on every process."""
    from jax.experimental import multihost_utils

    all_preds = multihost_utils.process_allgather(np.where(mine, preds, 0))
    return np.asarray(all_preds).sum(axis=0).astype(np.int64)


def evaluator_for(loaded, config) -> Evaluator:
    """The evaluator of a loaded model (``loading.load_model``) on a config's test data."""
    return Evaluator(
        loaded.model(),
        config.eval,
        config.data.buckets,
        config.data.fps,
        loaded.inner_radius,
        loaded.normalization,
    )


def feature_offsets(
    feature_fn: Callable, pairs: Sequence[Pair], search: dict | None = None
) -> np.ndarray:
    """Offsets with hand-made per-frame features (the baselines), same search as the model."""
    return np.array(
        [
            search_offset(feature_fn(p.view1), feature_fn(p.view2), **(search or {})).offset
            for p in pairs
        ],
        np.int64,
    )


def score(preds: np.ndarray, pairs: Sequence[Pair], fps: float) -> dict:
    return sync_metrics(preds, np.array([p.offset for p in pairs]), fps)
