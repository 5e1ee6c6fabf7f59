"""Embedding a set of pairs and scoring the estimated offsets (used by train.py and evaluate.py)."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.syn_json import Pair
from sesyn_jax.inference import estimate_offset, estimate_offsets
from sesyn_jax.metrics import sync_metrics


def make_embed_fn(model) -> Callable:
    """jit-compiled (variables, poses (B, T, V, 3), mask (B, T)) -> (B, T, D) in eval mode."""
    return jax.jit(lambda variables, poses, mask: model.apply(variables, poses, mask,
                                                              train=False))


def predict_offsets(embed_fn, variables, pairs: Sequence[Pair], batch_size: int,
                    buckets: Sequence[int], progress: bool = False) -> np.ndarray:
    """Estimated offsets (len(pairs),): view 1 as u, view 2 as v (the published matching)."""
    batcher = PairBatcher(pairs, batch_size, buckets, train=False)
    preds = np.zeros(len(pairs), np.int64)
    it = batcher.epoch(0)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=batcher.steps_per_epoch(), desc="embedding", leave=False)
    for batch in it:
        both = jnp.concatenate([batch["poses1"], batch["poses2"]])
        mask = jnp.concatenate([batch["mask1"], batch["mask2"]])
        f = np.asarray(embed_fn(variables, both, mask))
        b = len(batch["index"])
        valid = batch["valid"]
        off = estimate_offsets(f[:b][valid], f[b:][valid], batch["mask1"][valid],
                               batch["mask2"][valid])
        preds[batch["index"][valid]] = off
    return preds


def feature_offsets(feature_fn: Callable, pairs: Sequence[Pair]) -> np.ndarray:
    """Offsets with hand-made per-frame features (the baselines), same inference rule."""
    return np.array([estimate_offset(feature_fn(p.view1), feature_fn(p.view2)) for p in pairs],
                    np.int64)


def score(preds: np.ndarray, pairs: Sequence[Pair], fps: float) -> dict:
    return sync_metrics(preds, np.array([p.offset for p in pairs]), fps)
