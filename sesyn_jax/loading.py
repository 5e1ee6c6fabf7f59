"""Load a model for inference from whatever the user names: ``default`` (the synchronization
model shipped in the package), an inference folder, a train.py workdir (its export) or a
PyTorch .pth (published or exported; needs torch).

The bare word ``default`` always names the shipped model, whatever the working directory holds;
a folder that happens to be called ``default`` is named as a path: ``./default``."""

from __future__ import annotations

import os

from sesyn_jax import checkpoint, convert
from sesyn_jax.checkpoint import CheckpointError, LoadedModel

# trained by configs/sync_default.py on the embedded clips; see docs/results.md
DEFAULT_MODEL = os.path.join(os.path.dirname(__file__), "models", "sync_default")
SHIPPED = "default"  # the name of the shipped model on every command line


def is_shipped(name: str) -> bool:
    """Whether ``name`` names the shipped model (the bare word, never a path)."""
    return name == SHIPPED


def load_model(path: str) -> LoadedModel:
    """The model at ``path`` ('default': the shipped one, never a folder of that name);
    CheckpointError (or convert.ConversionError for a .pth) says why it cannot be loaded.

    Args:
        path: 'default', an inference export folder, a train.py workdir (its ``export``), or a
            PyTorch ``.pth`` of the published network (needs torch).

    Returns:
        A LoadedModel: ``variables`` (params and batch_stats), ``model()`` the Flax module, and
        ``fps``, ``normalization`` and ``inner_radius`` as the model was trained.
    """
    if is_shipped(path):
        if not os.path.exists(os.path.join(DEFAULT_MODEL, "model.json")):
            raise CheckpointError(
                f"{DEFAULT_MODEL}: the shipped model is missing from this install; train it "
                f"with python train.py --config configs/sync_default.py --workdir W and pass "
                f"--checkpoint W"
            )
        path = DEFAULT_MODEL
    if os.path.isfile(path):
        try:
            convert.check_torch_file(path)
        except convert.ConversionError as e:
            raise CheckpointError(str(e)) from None
        try:
            return convert.load_torch_inference(path)
        except ImportError as e:
            raise CheckpointError(f"{path}: a PyTorch checkpoint; reading it {e}") from None
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    return checkpoint.load_inference(path)
