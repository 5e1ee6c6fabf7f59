"""The train step: (state, batch) -> (state, metrics), pure, for ``jax.jit``.

A batch of pairs is a dict of arrays, view 1 and view 2 padded to one bucket length T:
  poses1, poses2: (B, T, V, 3) float32;  mask1, mask2: (B, T) bool, True on real frames.
The loss follows the published direction: u = view 2, v = view 1.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from sesyn_jax.losses import batched_loss_fn, call_term
from sesyn_jax.model import inner_mask, inner_radius
from sesyn_jax.train.state import TrainState

BN_MODES = ("joint", "per_view")


def embed_views(model, params, batch_stats, batch: Mapping, train: bool, bn_mode: str = "joint"):
    """Embeddings (f1, f2), each (B, T, D), and the new batch_stats.

    bn_mode 'joint': both views in one forward, BatchNorm statistics over the real frames of the
    whole batch; 'per_view': view 1 then view 2, each normalized on its own and each updating the
    running statistics, as the published training (one view per forward call) does.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    kw = dict(train=train, mutable=["batch_stats"]) if train else dict(train=False)

    def run(bs, poses, mask):
        out = model.apply({"params": params, "batch_stats": bs}, poses, mask, **kw)
        return out if train else (out, {"batch_stats": bs})

    if bn_mode == "joint":
        b = batch["poses1"].shape[0]
        poses = jnp.concatenate([batch["poses1"], batch["poses2"]], axis=0)
        mask = jnp.concatenate([batch["mask1"], batch["mask2"]], axis=0)
        out, upd = run(batch_stats, poses, mask)
        return out[:b], out[b:], upd["batch_stats"]
    f1, upd = run(batch_stats, batch["poses1"], batch["mask1"])
    f2, upd = run(upd["batch_stats"], batch["poses2"], batch["mask2"])
    return f1, f2, upd["batch_stats"]


def make_train_step(
    model,
    pair_loss_fn: Callable,
    tx: optax.GradientTransformation,
    bn_mode: str = "joint",
    inner_frames: bool = False,
) -> Callable:
    """(state, batch) -> (state, metrics). ``pair_loss_fn(f_u, f_v, mask_u, mask_v) ->
    (loss, aux)`` for one pair (see ``losses.make_loss_fn``); the batch loss is its mean.
    ``inner_frames``: the loss sees only the frames whose temporal receptive field lies inside
    their sequence (``model.inner_mask``), so it cannot be lowered by encoding positions."""
    batch_loss = batched_loss_fn(pair_loss_fn)
    radius = inner_radius(model, inner_frames)

    terms = getattr(pair_loss_fn, "terms", [])

    needs_offset = getattr(pair_loss_fn, "needs_offset", False)

    def term_grad_norms(f_u, f_v, mask_u, mask_v, offset):
        """Norm of each weighted term's gradient with respect to the embeddings (cheap: the
        loss part only), so the interplay of terms can be seen. ``offset``: (B,) or None."""
        out = {}
        extra = () if offset is None else (offset,)
        for name, w, opts in terms:

            def one(a, b, name=name, w=w, opts=opts):
                per = lambda x, y, mx, my, *d: call_term(name, x, y, mx, my, opts, *d)
                return w * jnp.mean(jax.vmap(per)(a, b, mask_u, mask_v, *extra))

            out[f"grad_norm/{name}"] = optax.tree.norm(jax.grad(one, argnums=(0, 1))(f_u, f_v))
        return out

    def train_step(state: TrainState, batch: Mapping, log_terms=True):
        """``log_terms``: whether this step computes the per-term gradient norms (one backward
        of the loss per term); a traced bool under jit, so logged and unlogged steps share one
        compiled program. Unlogged steps report them as 0."""
        mask_u, mask_v = inner_mask(batch["mask2"], radius), inner_mask(batch["mask1"], radius)
        # u = view 2, v = view 1: frame m of view 2 shows frame m - offset of view 1
        offset = -batch["offset"].astype(jnp.float32) if needs_offset else None

        def loss_fn(params):
            f1, f2, new_bs = embed_views(model, params, state.batch_stats, batch, True, bn_mode)
            dt = jnp.promote_types(f1.dtype, jnp.float32)  # bf16 embeddings: loss in float32
            f_u, f_v = f2.astype(dt), f1.astype(dt)
            loss, aux = batch_loss(f_u, f_v, mask_u, mask_v, offset)
            return loss, (aux, new_bs, jax.lax.stop_gradient((f_u, f_v)))

        (loss, (aux, new_bs, (f_u, f_v))), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        norms = lambda: term_grad_norms(f_u, f_v, mask_u, mask_v, offset)
        zeros = lambda: jax.tree_util.tree_map(
            lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(norms)
        )
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            **aux,
            **jax.lax.cond(jnp.asarray(log_terms, bool), norms, zeros),
        }
        return TrainState(
            step=state.step + 1, params=params, batch_stats=new_bs, opt_state=opt_state
        ), metrics

    return train_step
