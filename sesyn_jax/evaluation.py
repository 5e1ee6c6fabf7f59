"""Embedding a set of pairs and scoring the estimated offsets: the one evaluation path that
train.py, evaluate.py and the ablation runner share (``evaluate_model``)."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax.data.pairs import PairBatcher
from sesyn_jax.data.syn_json import Pair
from sesyn_jax.offset_search import estimate_offsets, search_offset
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


def evaluate_model(
    embed_fn,
    variables,
    pairs: Sequence[Pair],
    eval_config,
    buckets: Sequence[int],
    fps: float,
    inner_radius: int = 0,
    progress: bool = False,
    normalization: str = "published",
) -> tuple[np.ndarray, dict]:
    """Predicted offsets of every pair (view 1 as u) with the config's search settings, and
    their metrics. ``inner_radius`` and ``normalization``: the model's (see
    ``predict_offsets``)."""
    preds = predict_offsets(
        embed_fn,
        variables,
        pairs,
        eval_config.batch_size,
        buckets,
        progress=progress,
        search=search_settings(eval_config),
        inner_radius=inner_radius,
        normalization=normalization,
    )
    return preds, score(preds, pairs, fps)


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
    normalization: str = "published",
) -> np.ndarray:
    """Estimated offsets (len(pairs),): view 1 as u, view 2 as v. ``search``: keyword arguments
    of ``offset_search.search_offset`` (rule, max_offset, min_overlap); default the published
    rule. ``inner_radius`` > 0: only frames that far from both ends take part (the
    receptive radius of a model trained on inner frames, ``model.inner_mask``).
    ``normalization``: the model's input normalization (``model.normalization``); the pairs
    hold the 'published' one."""
    batcher = PairBatcher(
        pairs, batch_size, buckets_for(pairs, buckets), train=False, normalization=normalization
    )
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
