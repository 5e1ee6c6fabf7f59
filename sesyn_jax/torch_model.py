"""A PyTorch implementation of the published SeSyn-Net network and loss (optional; needs torch).

Written from the published network's description for parity tests, the parity tool and
benchmarks. Its state_dict has the published key names and shapes (including the unused channel
gate and mlp tensors), so a published checkpoint loads into it with ``strict=True`` and our
exports load into the published code. Import cost: torch is imported when a builder is first
called, not at module import.

Layout is the published one: input (N, 3, T, V, M) (only person 0 is used), activations
(N, C, T, V), output (N, T, V * C_out).
"""

from __future__ import annotations

import functools

import numpy as np

from sesyn_jax import graph as graph_lib


def require_torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "this feature needs PyTorch: pip install torch==2.13.0 (or pip install -e '.[torch]')"
        ) from e
    return torch


@functools.lru_cache(maxsize=None)
def _classes():
    torch = require_torch()
    nn = torch.nn

    class GraphConv(nn.Module):
        def __init__(self, c_in, c_out, k):
            super().__init__()
            self.k = k
            self.conv = nn.Conv2d(c_in, c_out * k, kernel_size=1)

        def forward(self, x, a):
            y = self.conv(x)
            n, kc, t, v = y.shape
            y = y.view(n, self.k, kc // self.k, t, v)
            return torch.einsum("nkctv,kvw->nctw", y, a).contiguous()

    class Block(nn.Module):
        def __init__(self, c_in, c_out, k, kernel_size, residual):
            super().__init__()
            self.gcn = GraphConv(c_in, c_out, k)
            self.tcn = nn.Sequential(
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, (kernel_size, 1), padding=((kernel_size - 1) // 2, 0)),
                nn.BatchNorm2d(c_out),
                nn.Dropout(0.0),
            )
            self.residual_kind = residual
            if residual == "conv":
                self.residual = nn.Sequential(
                    nn.Conv2d(c_in, c_out, kernel_size=1), nn.BatchNorm2d(c_out)
                )

        def forward(self, x, a):
            if self.residual_kind == "none":
                res = 0.0
            elif self.residual_kind == "identity":
                res = x
            else:
                res = self.residual(x)
            return torch.relu(self.tcn(self.gcn(x, a)) + res)

    class ChannelGate(nn.Module):  # unused by forward(); present for the state_dict keys
        def __init__(self, channels=17, reduction=2):
            super().__init__()
            self.mlp = nn.Sequential(
                nn.Flatten(),
                nn.Linear(channels, channels // reduction),
                nn.ReLU(),
                nn.Linear(channels // reduction, channels),
            )

    class Channel(nn.Module):
        def __init__(self):
            super().__init__()
            self.ChannelGate = ChannelGate()

    class FrameMix(nn.Module):  # unused by forward(); present for the state_dict keys
        def __init__(self):
            super().__init__()
            self.multi_layer = nn.Sequential(nn.Conv2d(2, 1, kernel_size=1), nn.Sigmoid())

    class TorchSTGCN(nn.Module):
        def __init__(
            self,
            layout="coco",
            strategy="spatial",
            widths=(64, 64, 64, 64, 128, 128, 128, 128, 128),
            kernel_size=9,
            in_channels=3,
        ):
            super().__init__()
            self.joints = list(graph_lib.get_layout(layout).joints)
            a = torch.tensor(graph_lib.adjacency(layout, strategy), dtype=torch.float32)
            self.register_buffer("A", a)
            k, v = a.shape[0], a.shape[1]
            self.data_bn = nn.BatchNorm1d(in_channels * v)
            blocks, c_in = [], in_channels
            for i, w in enumerate(widths):
                residual = "none" if i == 0 else ("identity" if c_in == w else "conv")
                blocks.append(Block(c_in, w, k, kernel_size, residual))
                c_in = w
            self.st_gcn_networks = nn.ModuleList(blocks)
            self.channel = Channel()
            self.mlp = FrameMix()
            self.edge_importance = nn.ParameterList(
                [nn.Parameter(torch.ones_like(a)) for _ in blocks]
            )

        def forward(self, x):
            """x: (N, C, T, V, M) or (N, C, T, V) -> (N, T, V * C_out)."""
            if x.dim() == 5:
                x = x[..., 0]
            if x.shape[3] != len(self.joints):
                x = x[:, :, :, self.joints]
            n, c, t, v = x.shape
            x = x.permute(0, 3, 1, 2).reshape(n, v * c, t)
            x = self.data_bn(x)
            x = x.view(n, v, c, t).permute(0, 2, 3, 1).contiguous()
            for block, imp in zip(self.st_gcn_networks, self.edge_importance):
                x = block(x, self.A * imp)
            return x.permute(0, 2, 3, 1).reshape(n, t, -1)

    return TorchSTGCN


def build_torch_model(**model_kwargs):
    """A PyTorch network with the published state_dict layout; kwargs as ``STGCNEmbedding``'s
    (layout, strategy, widths, kernel_size, in_channels)."""
    return _classes()(**model_kwargs)


def torch_l2_similarity(a, b):
    torch = require_torch()
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return -torch.clamp(sq, min=0.0)


def torch_sesyn_loss(f_u, f_v, mu1: float, mu2: float, tau: int = 1):
    """The loss of Eq. 1-12 for one unpadded pair, f_u (M, C), f_v (N, C), in PyTorch; returns
    (loss, {'identity', 'deviation', 'interval'}). As published, training calls it with
    u = view 2 and v = view 1."""
    torch = require_torch()
    f = torch.nn.functional
    x = f.softmax(torch_l2_similarity(f_u, f_v), dim=1)
    s = torch_l2_similarity(x @ f_v, f_u)
    labels = torch.arange(f_u.shape[0])
    identity = f.cross_entropy(s, labels)
    p = f.softmax(s, dim=1) @ labels.to(s.dtype)
    deviation = (p - labels.to(s.dtype)).abs().mean()
    interval = (p[tau:] - p[:-tau] - tau).abs().mean()
    loss = identity + mu1 * deviation + mu2 * interval
    return loss, dict(identity=identity, deviation=deviation, interval=interval)


def poses_to_torch_layout(poses: np.ndarray) -> np.ndarray:
    """(B, T, V, C) -> the published (B, C, T, V, 1)."""
    return np.ascontiguousarray(np.asarray(poses).transpose(0, 3, 1, 2)[..., None])
