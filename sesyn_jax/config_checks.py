"""Config checks: everything about a config that can be checked before anything is compiled or
written. train.py, evaluate.py and the ablation runner call these; a failed check raises
``ConfigError`` whose message says which field to fix."""

from __future__ import annotations

import math
import os

import jax

from sesyn_jax import graph, losses
from sesyn_jax.data.normalization import NORMALIZATIONS
from sesyn_jax.data.splits import augment, data_dirs
from sesyn_jax.offset_search import RULES
from sesyn_jax.model import PADDINGS
from sesyn_jax.train.step import BN_MODES


MATMUL_PRECISIONS = ("default", "high", "highest")


class ConfigError(ValueError):
    """A config that cannot run; the message says what to fix."""


def check_config(config) -> None:
    """Everything that can be checked before anything is compiled or written (training)."""
    check_evaluation_config(config)
    d, t = config.data, config.train
    if d.source == "syn":
        _check_syn_dirs(config, ("train",))
    if d.render and (d.source != "embedded" or d.protocol != "independent"):
        raise ConfigError(
            "data.render renders pairs from the embedded clips under the 'independent' "
            "protocol: set data.source='embedded' and data.protocol='independent'"
        )
    if d.render:
        try:
            augment(config)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.augment: {e}") from None
        if d.pairs_per_epoch < t.batch_size:
            raise ConfigError(
                f"data.pairs_per_epoch ({d.pairs_per_epoch}) must be >= train.batch_size "
                f"({t.batch_size})"
            )
    unknown = [
        k
        for k in list(config.loss.weights) + list(config.loss.options)
        if k not in losses.LOSS_TERMS
    ]
    if unknown:
        raise ConfigError(
            f"loss terms {unknown} are not registered; known: {sorted(losses.LOSS_TERMS)}"
        )
    check_train_config(t)


def check_evaluation_config(config) -> None:
    """What evaluation needs of a config: the data, the model settings and the search (the
    training settings are left alone, so that a training config names test data too)."""
    d, m = config.data, config.model
    if d.source not in ("syn", "embedded"):
        raise ConfigError(f"data.source must be 'syn' or 'embedded', got {d.source!r}")
    if d.source == "syn":
        _check_syn_dirs(config, ("test",))
    if d.protocol not in ("paper", "independent"):
        raise ConfigError(f"data.protocol must be 'paper' or 'independent', got {d.protocol!r}")
    if not 0 <= d.max_offset < d.frames:
        raise ConfigError(f"data.max_offset must be in [0, data.frames), got {d.max_offset}")
    if m.normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"model.normalization must be one of {NORMALIZATIONS}, got {m.normalization!r}"
        )
    if d.pairing not in ("auto", "ntu", "cmu"):
        raise ConfigError(f"data.pairing must be 'auto', 'ntu' or 'cmu', got {d.pairing!r}")
    try:
        graph.get_layout(m.layout)
    except ValueError as e:
        raise ConfigError(f"model.layout: {e}") from None
    if m.strategy not in graph.STRATEGIES:
        raise ConfigError(f"model.strategy must be one of {graph.STRATEGIES}, got {m.strategy!r}")
    if m.padding not in PADDINGS:
        raise ConfigError(f"model.padding must be one of {PADDINGS}, got {m.padding!r}")
    if m.dtype not in ("float32", "bfloat16", "float64"):
        raise ConfigError(
            f"model.dtype must be 'float32', 'bfloat16' or 'float64', got {m.dtype!r}"
        )
    if m.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError("model.dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1")
    if m.matmul_precision not in MATMUL_PRECISIONS:
        raise ConfigError(
            f"model.matmul_precision must be one of {MATMUL_PRECISIONS}, got {m.matmul_precision!r}"
        )
    buckets = tuple(d.buckets)
    if not buckets or not all(isinstance(b, int) and b > 0 for b in buckets):
        raise ConfigError(
            f"data.buckets must be a non-empty tuple of positive frame counts, "
            f"e.g. (128, 256), got {buckets}"
        )
    if d.source == "embedded" and max(buckets) < d.frames:
        raise ConfigError(
            f"data.buckets: the largest bucket ({max(buckets)}) is shorter than "
            f"the {d.frames}-frame sequences of data.frames; add a bucket >= "
            f"{d.frames}"
        )
    check_eval_config(config.eval)


def _check_syn_dirs(config, splits) -> None:
    dirs = dict(zip(("train", "test"), data_dirs(config)))
    for name in splits:
        path = dirs[name]
        if not path:
            raise ConfigError(
                "data.source='syn' needs --config.data.root=DIR (with train/ "
                "and test/) or data.train_dir and data.test_dir"
            )
        if not os.path.isdir(path):
            raise ConfigError(
                f"data root: the {name} folder {path} does not exist "
                f"(set --config.data.root or data.{name}_dir)"
            )


def check_train_config(t) -> None:
    if t.bn_mode not in BN_MODES:
        raise ConfigError(f"train.bn_mode must be one of {BN_MODES}, got {t.bn_mode!r}")
    if t.schedule not in ("constant", "cosine", "warmup_cosine"):
        raise ConfigError(
            f"train.schedule must be 'constant', 'cosine' or 'warmup_cosine', got {t.schedule!r}"
        )
    if t.batch_size < 1 or t.epochs < 1:
        raise ConfigError("train.batch_size and train.epochs must be >= 1")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr must be a positive number, got {t.lr}")
    if not 0 <= t.momentum < 1 or t.weight_decay < 0:
        raise ConfigError(
            f"train.momentum must be in [0, 1) and train.weight_decay >= 0, got "
            f"{t.momentum} and {t.weight_decay}"
        )
    for name in ("log_every", "checkpoint_every", "keep"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if t.eval_every < 0 or t.warmup_epochs < 0:
        raise ConfigError(
            "train.eval_every and train.warmup_epochs must be >= 0 (eval_every 0: "
            "evaluate at the end only)"
        )


def check_eval_config(e) -> None:
    if e.batch_size < 1:
        raise ConfigError(f"eval.batch_size must be >= 1, got {e.batch_size}")
    if e.rule not in RULES:
        raise ConfigError(f"eval.rule must be one of {RULES}, got {e.rule!r}")
    if e.max_offset < 0:
        raise ConfigError(f"eval.max_offset must be >= 0 frames (0: no limit), got {e.max_offset}")
    if not (0 < e.min_overlap < 1 or (e.min_overlap >= 1 and float(e.min_overlap).is_integer())):
        raise ConfigError(
            f"eval.min_overlap must be a whole number of frames >= 1 or a "
            f"fraction in (0, 1), got {e.min_overlap}"
        )
