"""Embedding a set of pairs and scoring the estimated offsets (used by train.py and evaluate.py)."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.syn_json import Pair
from sesyn_jax.inference import estimate_offsets, search_offset
from sesyn_jax.model import inner_mask
from sesyn_jax.metrics import sync_metrics


def make_embed_fn(model) -> Callable:
    """jit-compiled (variables, poses (B, T, V, 3), mask (B, T)) -> (B, T, D) in eval mode."""
    return jax.jit(lambda variables, poses, mask: model.apply(variables, poses, mask, train=False))


def _batched_rule(search: dict | None) -> bool:
    """The published rule over whole sequences runs batched on the device."""
    return not search or (
        search.get("rule", "median") == "median" and search.get("max_offset") is None
    )


def predict_offsets(
    embed_fn,
    variables,
    pairs: Sequence[Pair],
    batch_size: int,
    buckets: Sequence[int],
    progress: bool = False,
    search: dict | None = None,
    inner_radius: int = 0,
) -> np.ndarray:
    """Estimated offsets (len(pairs),): view 1 as u, view 2 as v. ``search``: keyword arguments
    of ``inference.search_offset`` (rule, max_offset, min_overlap); default the published
    rule. ``inner_radius`` > 0: only frames that far from both ends take part (the
    receptive radius of a model trained on inner frames, ``model.inner_mask``)."""
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
        f1, f2 = f[:b][valid], f[b:][valid]
        m1 = np.asarray(inner_mask(batch["mask1"][valid], inner_radius))
        m2 = np.asarray(inner_mask(batch["mask2"][valid], inner_radius))
        if _batched_rule(search):
            off = estimate_offsets(f1, f2, m1, m2)
        else:
            off = [
                search_offset(f1[i], f2[i], m1[i], m2[i], **search).offset for i in range(len(f1))
            ]
        preds[batch["index"][valid]] = off
    return preds


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
