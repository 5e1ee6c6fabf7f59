"""The SeSyn-Net frame-embedding network: an ST-GCN without pooling, in Flax Linen.

Shapes: poses (B, T, V, 3) with time on axis 1 and (x, y, score) on the last axis; inside the
network activations are (B, T, V, C) (channels last); the output is (B, T, V * C_out) with index
v * C_out + c, the published flattening.

Padding: ``mask`` (B, T) is True on real frames. Every layer but the temporal convolution works
frame by frame, so padded frames can only reach real ones through that convolution. With
``padding='zero'`` (published) its input is zeroed on padded frames, which is exactly the zero
padding the published network sees past a sequence's end. Zero padding lets the frames near
either end see the end (their features differ from the same motion in mid-sequence), a cue a
network can use to match the ends of two sequences instead of their motion. ``'edge'`` repeats
each sequence's first and last real frame, ``'reflect'`` mirrors the sequence at its ends
(numpy's 'reflect' mode); both are applied per sequence at its own real length, so a padded
batch still embeds every sequence as it would be embedded alone. In training, BatchNorm
statistics are taken over real frames only.

Whatever the padding, a frame within ``receptive_radius`` frames of either end sees the end.
``inner_mask`` keeps only the frames whose whole temporal receptive field lies inside the real
sequence: their embeddings are those of a convolution without padding, and cannot tell where
the sequence starts or ends. Losses and offset searches restricted to them cannot be solved by
matching positions counted from an end.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax import graph as graph_lib
from sesyn_jax import hostmem

Array = jax.Array

PADDINGS = ("zero", "edge", "reflect")

# The published training initialisation (train.py's weights_init).
conv_kernel_init = nn.initializers.normal(stddev=0.02)


def bn_scale_init(key, shape, dtype=jnp.float32):
    """BatchNorm scales drawn from N(1, 0.02), as the published network initializes them."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class BatchNorm(nn.Module):
    """BatchNorm over the last axis with PyTorch semantics and a validity mask.

    Training normalizes with the biased variance of the real positions and keeps
    ``new = (1 - momentum) * old + momentum * batch`` with the *unbiased* variance, as
    ``torch.nn.BatchNorm*d`` does. Statistics are computed in at least float32.
    """

    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, train: bool = False) -> Array:
        """x: (..., C); mask: bool with the leading axes of x (e.g. (B, T) for x (B, T, V, C))."""
        c = x.shape[-1]
        scale = self.param("scale", bn_scale_init, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))

        # float32 statistics for float32/bfloat16 activations, float64 under x64 parity runs
        stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
        if train:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(stat_dtype)
            if mask is None:
                count = jnp.asarray(np.prod(x.shape[:-1]), stat_dtype)
                mean = xf.mean(axes)
                var = jnp.square(xf - mean).mean(axes)
            else:
                mask = mask.reshape(mask.shape + (1,) * (x.ndim - 1 - mask.ndim))
                w = jnp.broadcast_to(mask, x.shape[:-1]).astype(stat_dtype)[..., None]
                count = jnp.maximum(w.sum(), 1.0)
                mean = (xf * w).sum(axes) / count
                var = (jnp.square(xf - mean) * w).sum(axes) / count
            if not self.is_initializing():
                m = self.momentum
                unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
                ra_mean.value = (1.0 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
                ra_var.value = (1.0 - m) * ra_var.value + m * jax.lax.stop_gradient(unbiased)
        else:
            mean, var = ra_mean.value, ra_var.value

        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        y = (x.astype(stat_dtype) - mean) * inv + bias
        return y.astype(x.dtype)


def padding_index(lengths: Array, total: int, pad: int, mode: str) -> Array:
    """(B, total + 2 pad) int32: for each position -pad .. total + pad - 1 of a sequence padded
    by ``pad`` frames on each side, the real frame (0 .. length - 1) it copies under ``mode``
    ('edge': the nearest end frame; 'reflect': mirrored at the ends without repeating them).
    Positions at or past a sequence's own length copy like positions past its end."""
    j = jnp.arange(-pad, total + pad)[None, :]
    last = jnp.maximum(lengths[:, None].astype(jnp.int32) - 1, 0)
    if mode == "edge":
        return jnp.clip(j, 0, last)
    if mode != "reflect":
        raise ValueError(f"padding_index mode must be 'edge' or 'reflect', got {mode!r}")
    period = jnp.maximum(2 * last, 1)
    r = jnp.mod(j, period)
    return jnp.where(last == 0, 0, jnp.where(r > last, period - r, r))


def inner_mask(mask, radius: int):
    """(B, T) or (T,) bool mask of real frames (padding at the end) -> True only on frames m with
    radius <= m < length - radius. A sequence with no such frame keeps its real frames (it is
    too short to hide its ends), so that no sequence is left without frames."""
    mask = jnp.asarray(mask, bool)
    if radius <= 0:
        return mask
    length = mask.sum(axis=-1, keepdims=True)
    t = jnp.arange(mask.shape[-1])
    inner = mask & (t >= radius) & (t < length - radius)
    return jnp.where(inner.any(axis=-1, keepdims=True), inner, mask)


def inner_radius(model, inner_frames: bool) -> int:
    """Frames hidden at each end in losses and offset searches: the model's receptive radius
    for a model trained on inner frames only (``inner_frames``), else 0."""
    return model.receptive_radius if inner_frames else 0


class TemporalConv(nn.Module):
    """Convolution over time (kernel k, stride 1, (k - 1) / 2 frames of padding), per joint.

    Parameters: ``kernel`` (k, C_in, C_out), ``bias`` (C_out,). Run as a 1D convolution with the
    joints folded into the batch: on the CPU XLA's backward pass of a (k, 1) 2D convolution is
    about twice as slow. ``padding``: 'zero' (the input is expected zeroed past each sequence's
    end), 'edge' or 'reflect' (then ``lengths`` (B,) gives each sequence's real length).
    """

    features: int
    kernel_size: int = 9
    dtype: Any = jnp.float32
    padding: str = "zero"
    precision: Any = None

    @nn.compact
    def __call__(self, x: Array, lengths: Array | None = None) -> Array:
        """x: (B, T, V, C_in) -> (B, T, V, C_out)."""
        k = self.kernel_size
        b, t, v, c_in = x.shape
        kernel = self.param("kernel", conv_kernel_init, (k, c_in, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        pad = (k - 1) // 2
        x = x.astype(self.dtype)
        if self.padding == "zero":
            pads = [(pad, pad)]
        else:
            if lengths is None:
                lengths = jnp.full((b,), t, jnp.int32)
            idx = padding_index(lengths, t, pad, self.padding)
            x = jnp.take_along_axis(x, idx[:, :, None, None], axis=1)
            pads = [(0, 0)]
        xr = x.transpose(0, 2, 1, 3).reshape(b * v, -1, c_in)
        y = jax.lax.conv_general_dilated(
            xr,
            kernel.astype(self.dtype),
            (1,),
            pads,
            dimension_numbers=("NWC", "WIO", "NWC"),
            precision=self.precision,
        )
        y = y.reshape(b, v, t, self.features).transpose(0, 2, 1, 3)
        return y + bias.astype(self.dtype)


def neighbourhood_sum(x: Array, a: Array, precision=None, form: str | None = None) -> Array:
    """(B, T, V, C) poses' channels summed over each joint's K neighbourhoods: (B, T, W, K, C)
    with ``[b, t, w, k, c] = sum_v a[k, v, w] * x[b, t, v, c]``.

    ``form`` 'batched': one (W * K, V) product per frame, whose result comes out in the layout
    the channel product reads; an einsum over V leaves V's partner axis last, and XLA's CPU
    code then transposes the K-times-larger result forward and backward (the batched form makes
    the 2-core CPU train step about 8 % faster, one core about 15 %). 'einsum': the one product
    over V, whose large (frames x channels) side suits the matrix units of GPUs and TPUs better
    than thousands of 51 x 17 products. None: 'batched' where JAX computes on the CPU
    (``hostmem.cpu_backend``, decided without starting a backend, which a multi-process run
    must start only after ``jax.distributed.initialize``), else 'einsum'. The two are the same
    sums; they agree to float32 rounding."""

    def einsum(x, a):
        return jnp.einsum("btvi,kvw->btwki", x, a, precision=precision)

    def batched(x, a):
        b, t, v, c = x.shape
        k = a.shape[0]
        rows = a.transpose(2, 0, 1).reshape(v * k, v)  # rows[w * K + k, u] = a[k, u, w]
        out = jax.lax.dot_general(
            jnp.broadcast_to(rows, (b * t, v * k, v)),
            x.reshape(b * t, v, c),
            (((2,), (1,)), ((0,), (0,))),
            precision=precision,
        )
        return out.reshape(b, t, v, k, c)

    form = form or ("batched" if hostmem.cpu_backend() else "einsum")
    if form not in ("batched", "einsum"):
        raise ValueError(f"form must be 'batched' or 'einsum', got {form!r}")
    return (batched if form == "batched" else einsum)(x, a)


class GraphConv(nn.Module):
    """The ST-GCN spatial graph convolution: a 1x1 conv to K * C_out channels (channel index
    k * C_out + c), then ``einsum('btvkc,kvw->btwc')`` with the adjacency.

    Parameters ``kernel`` (C_in, K * C_out) and ``bias`` (K * C_out,) are those of the published
    1x1 conv. The product is computed graph first (aggregate the K neighbourhoods of the input,
    then one matrix product over K * C_in), which is the same sum in another order and, on the
    CPU, faster forward and backward than the published order (see ``neighbourhood_sum``).
    """

    features: int
    dtype: Any = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: Array, a: Array) -> Array:
        """x: (B, T, V, C_in), a: (K, V, V) -> (B, T, V, C_out)."""
        k = a.shape[0]
        b, t, v, c_in = x.shape
        c = self.features
        kernel = self.param("kernel", conv_kernel_init, (c_in, k * c), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (k * c,), jnp.float32)
        a = a.astype(self.dtype)
        xa = neighbourhood_sum(x.astype(self.dtype), a, self.precision)
        xa = xa.reshape(b, t, v, k * c_in)
        w = kernel.reshape(c_in, k, c).transpose(1, 0, 2).reshape(k * c_in, c)
        # The bias goes through the graph sum too: sum_v A[k, v, w] * bias[k, c].
        b_graph = jnp.einsum(
            "kvw,kc->wc", a, bias.reshape(k, c).astype(self.dtype), precision=self.precision
        )
        return jnp.dot(xa, w.astype(self.dtype), precision=self.precision) + b_graph


class Pointwise(nn.Module):
    """A 1x1 convolution as a matrix product over channels: kernel (C_in, C_out), bias (C_out,)."""

    features: int
    dtype: Any = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", conv_kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype), precision=self.precision)
        return y + bias.astype(self.dtype)


class STGCNBlock(nn.Module):
    """One ST-GCN block: graph conv, then BN-ReLU-temporal conv-BN, plus a residual, ReLU.

    ``residual``: 'none', 'identity' or 'conv' (1x1 conv + BN, used when widths change).
    """

    features: int
    kernel_size: int = 9
    residual: str = "identity"
    dtype: Any = jnp.float32
    padding: str = "zero"
    precision: Any = None

    @nn.compact
    def __call__(self, x: Array, a: Array, mask: Array | None, train: bool) -> Array:
        """x: (B, T, V, C_in); a: (K, V, V) adjacency already weighted by edge importance."""
        if self.residual == "none":
            res = 0.0
        elif self.residual == "identity":
            res = x
        elif self.residual == "conv":
            res = Pointwise(self.features, self.dtype, self.precision, name="residual_conv")(x)
            res = BatchNorm(name="residual_bn")(res, mask, train)
        else:
            raise ValueError(
                f"residual must be 'none', 'identity' or 'conv', got {self.residual!r}"
            )

        y = GraphConv(self.features, self.dtype, self.precision, name="gcn")(x, a)
        y = nn.relu(BatchNorm(name="tcn_bn1")(y, mask, train))
        lengths = None
        if mask is not None:
            y = y * mask[:, :, None, None].astype(y.dtype)
            lengths = mask.sum(axis=1)
        y = TemporalConv(
            self.features,
            self.kernel_size,
            self.dtype,
            self.padding,
            self.precision,
            name="tcn_conv",
        )(y, lengths)
        y = BatchNorm(name="tcn_bn2")(y, mask, train)
        return nn.relu(y + res)


class STGCNEmbedding(nn.Module):
    """Per-frame pose embedding. Defaults reproduce the published SeSyn-Net network.

    Attributes:
      layout: skeleton layout (``coco`` or a reduced one, see ``graph.LAYOUTS``). Inputs may carry
        all 17 COCO joints; a reduced layout selects its joints itself, as the published code does.
      strategy: graph partition strategy (``uniform``, ``distance`` or ``spatial``).
      widths: output channels of each block (published: 64 x 4 then 128 x 5).
      kernel_size: temporal kernel size (odd).
      padding: temporal padding, 'zero' (published), 'edge' or 'reflect' (see the module doc).
      edge_importance: learnable per-block multipliers of the adjacency.
      data_bn: BatchNorm over the V * 3 input channels first.
      dtype: compute dtype of the convolutions (float32, or bfloat16 on accelerators);
        parameters and BatchNorm statistics stay float32.
      precision: matmul precision of the convolutions (a ``jax.lax.Precision`` or its name:
        'default', 'high', 'highest'); None: the backend's default (one bfloat16 pass on TPU,
        TF32 on recent NVIDIA GPUs, full float32 on the CPU).
    """

    layout: str = "coco"
    strategy: str = "spatial"
    widths: Sequence[int] = (64, 64, 64, 64, 128, 128, 128, 128, 128)
    kernel_size: int = 9
    padding: str = "zero"
    edge_importance: bool = True
    data_bn: bool = True
    in_channels: int = 3
    dtype: Any = jnp.float32
    precision: Any = None

    @property
    def receptive_radius(self) -> int:
        """Frames on each side that reach one output frame through the temporal convolutions."""
        return len(self.widths) * ((self.kernel_size - 1) // 2)

    @nn.compact
    def __call__(self, poses: Array, mask: Array | None = None, train: bool = False) -> Array:
        """poses: (B, T, V, 3) float; mask: (B, T) bool or None -> (B, T, V * widths[-1])."""
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        lay = graph_lib.get_layout(self.layout)
        a = jnp.asarray(graph_lib.adjacency(lay, self.strategy), jnp.float32)
        if poses.ndim != 4 or poses.shape[-1] != self.in_channels:
            raise ValueError(f"poses must be (B, T, V, {self.in_channels}), got {poses.shape}")
        if poses.shape[2] != lay.num_joints:
            if poses.shape[2] != len(graph_lib.COCO_JOINTS):
                raise ValueError(
                    f"poses have {poses.shape[2]} joints; layout {lay.name!r} expects "
                    f"{lay.num_joints} (or all 17 COCO joints)"
                )
            poses = poses[:, :, np.asarray(lay.joints)]
        if mask is not None:
            mask = mask.astype(bool)
            if mask.shape != poses.shape[:2]:
                raise ValueError(f"mask must be (B, T) = {poses.shape[:2]}, got {mask.shape}")

        b, t, v, c = poses.shape
        x = poses.astype(jnp.promote_types(self.dtype, jnp.float32))
        if self.data_bn:
            x = BatchNorm(name="data_bn")(x.reshape(b, t, v * c), mask, train).reshape(b, t, v, c)

        c_in = c
        for i, width in enumerate(self.widths):
            if self.edge_importance:
                imp = self.param(f"edge_importance_{i}", nn.initializers.ones, a.shape, jnp.float32)
                a_i = a * imp
            else:
                a_i = a
            residual = "none" if i == 0 else ("identity" if c_in == width else "conv")
            x = STGCNBlock(
                width,
                self.kernel_size,
                residual,
                self.dtype,
                self.padding,
                self.precision,
                name=f"block_{i}",
            )(x, a_i, mask, train)
            c_in = width

        out = x.astype(jnp.promote_types(self.dtype, jnp.float32)).reshape(b, t, v * c_in)
        if mask is not None:
            out = out * mask[:, :, None]
        return out


def count_params(params) -> int:
    """The number of scalars in a parameter tree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def init_variables(model: STGCNEmbedding, rng: Array, num_frames: int = 16) -> dict:
    """{'params': ..., 'batch_stats': ...} of a model, from a dummy (1, num_frames, 17, 3) input."""
    dummy = jnp.zeros((1, num_frames, len(graph_lib.COCO_JOINTS), model.in_channels), jnp.float32)
    return dict(model.init(rng, dummy, train=False))
