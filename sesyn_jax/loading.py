"""Load a model for inference from whatever the user names: an inference folder, a train.py
workdir (its export) or a PyTorch .pth (published or exported; needs torch)."""

from __future__ import annotations

import os

from sesyn_jax import checkpoint, convert
from sesyn_jax.checkpoint import CheckpointError, LoadedModel


def load_model(path: str) -> LoadedModel:
    """The model at ``path``; CheckpointError (or convert.ConversionError for a .pth) says
    why it cannot be loaded."""
    if os.path.isfile(path):
        return convert.load_torch_inference(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    return checkpoint.load_inference(path)
