"""Frame embeddings of a whole recording, computed in overlapping chunks."""

from __future__ import annotations

import functools
import sys

import numpy as np

CHUNK = 2048  # frames embedded per call


def embed(model, variables, poses: np.ndarray, chunk: int = CHUNK, progress: bool = False):
    """(T, 17, 3) normalized poses -> (T, D) embeddings, ``chunk`` frames per call with the
    model's receptive radius of context on each side, so that every frame's embedding equals
    the whole sequence's (memory linear in T; one compiled shape for long inputs).

    Args:
        model: an ``STGCNEmbedding`` (``LoadedModel.model()``).
        variables: its {'params', 'batch_stats'}.
        poses: (T, 17, 3) poses normalized as the model was trained
            (``data.normalization.normalize``); time is axis 0.
        chunk: frames per call of the network.
        progress: show a progress bar over the chunks.

    Returns:
        float32 (T, D) numpy embeddings, D = joints x the last block's width (17 x 64 for
        the shipped model).
    """
    import jax

    apply = _jitted_apply(model)
    t = len(poses)
    radius = model.receptive_radius
    if t <= chunk + 2 * radius:
        size = int(-(-t // 128) * 128)
        x, mask = _padded(poses, 0, t, size)
        return np.asarray(apply(variables, x, mask))[0, :t]
    size = chunk + 2 * radius
    out = None
    starts = range(0, t, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="embedding", unit="chunk", leave=False, file=sys.stderr)
    for s in starts:
        lo, hi = max(0, s - radius), min(t, s + chunk + radius)
        x, mask = _padded(poses, lo, hi, size)
        f = np.asarray(jax.block_until_ready(apply(variables, x, mask)))[0]
        keep = min(chunk, t - s)
        if out is None:
            out = np.zeros((t, f.shape[-1]), np.float32)
        out[s : s + keep] = f[s - lo : s - lo + keep]
    return out


def _padded(poses, lo, hi, size):
    import jax.numpy as jnp

    x = np.zeros((1, size) + poses.shape[1:], np.float32)
    x[0, : hi - lo] = poses[lo:hi]
    mask = np.zeros((1, size), bool)
    mask[0, : hi - lo] = True
    return jnp.asarray(x), jnp.asarray(mask)


@functools.lru_cache(maxsize=8)
def _jitted_apply(model):
    """The evaluation path's jit-compiled forward, one per model (equal models share it)."""
    from sesyn_jax.evaluation import make_embed_fn

    return make_embed_fn(model)
