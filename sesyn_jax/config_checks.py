"""Config checks: everything about a config that can be checked before anything is compiled or
written. train.py, evaluate.py and the ablation runner call these; a failed check raises
``ConfigError`` whose message says which field to fix."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import shutil
import tempfile

import jax

from sesyn_jax import checkpoint, graph, losses
from sesyn_jax.data.mocap import TARGET_FPS
from sesyn_jax.data.normalization import NORMALIZATIONS
from sesyn_jax.data.splits import augment, data_dirs
from sesyn_jax.model import STGCNEmbedding, init_variables
from sesyn_jax.offset_search import RULES
from sesyn_jax.train.step import BN_MODES

MATMUL_PRECISIONS = ("default", "high", "highest")
EMBEDDED_FPS = TARGET_FPS  # the embedded clips' rate


class ConfigError(ValueError):
    """A config that cannot run; the message says what to fix."""


def _missing_fields_named(check):
    """``check`` with a field the config lacks (a config file that deleted one) reported as
    a ConfigError naming it. (A config file whose get_config() returns no ConfigDict is
    refused where it is loaded, ``cli.parse_flags_or_exit``.)"""

    @functools.wraps(check)
    def checked(config, *args, **kwargs):
        try:
            return check(config, *args, **kwargs)
        except AttributeError as e:
            field = str(e).strip("\"'")
            if not field.isidentifier():  # not a missing field: a bug, shown as one
                raise
            raise ConfigError(
                f"the config has no field {field!r}; a config file starts from "
                f"configs/default.py's get_config() and changes its fields, deleting none"
            ) from None

    return checked


@_missing_fields_named
def check_config(config) -> None:
    """Everything that can be checked before anything is compiled or written (training).

    Args:
        config: a ``configs/*.py`` ConfigDict with its command-line overrides applied.

    Raises:
        ConfigError: one line naming the field (or the data folder) and what was expected.
    """
    check_evaluation_config(config, memory=False)
    d, t = config.data, config.train
    for name, value in (("seed", config.seed), ("data.seed", d.seed)):
        if not (isinstance(value, int) and 0 <= value < 2**32):
            raise ConfigError(
                f"{name} must be a whole number in [0, 2**32) (random seeds), got {value!r}"
            )
    if d.source == "syn":
        _check_syn_dirs(config, ("train",))
    if d.render and (d.source != "embedded" or d.protocol != "independent"):
        raise ConfigError(
            "data.render renders pairs from the embedded clips under the 'independent' "
            "protocol: set data.source='embedded' and data.protocol='independent'"
        )
    if d.render_on not in ("host", "device"):
        raise ConfigError(f"data.render_on must be 'host' or 'device', got {d.render_on!r}")
    if d.render_on == "device" and not d.render:
        raise ConfigError(
            "data.render_on='device' renders pairs on the devices: it needs data.render=True "
            "(the embedded clips, 'independent' protocol)"
        )
    if not (isinstance(d.prefetch, int) and d.prefetch >= 0):
        raise ConfigError(f"data.prefetch must be a whole number >= 0, got {d.prefetch!r}")
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
    check_loss_config(config.loss)
    if not (isinstance(config.mesh.num_processes, int) and config.mesh.num_processes >= 1):
        raise ConfigError(
            f"mesh.num_processes must be a whole number >= 1 (1: one process, or what a "
            f"cluster environment says), got {config.mesh.num_processes!r}"
        )
    check_train_config(t)
    check_memory(config, training=True)
    check_memory(config, training=False)


def check_loss_config(loss) -> None:
    """ConfigError naming the ``loss.*`` field that cannot run: an unregistered term, a
    weight that is negative or not a number, no positive weight, or options that the term's
    function does not take or refuses (tried on a small pair of embeddings, traced only)."""
    unknown = [k for k in list(loss.weights) + list(loss.options) if k not in losses.LOSS_TERMS]
    if unknown:
        raise ConfigError(
            f"loss terms {unknown} are not registered; known: {sorted(losses.LOSS_TERMS)}"
        )
    weights = dict(loss.weights)
    for name, w in weights.items():
        if not (_is_number(w) and w >= 0):
            raise ConfigError(f"loss.weights.{name} must be a number >= 0, got {w!r}")
    if not any(w > 0 for w in weights.values()):
        raise ConfigError(
            f"loss.weights must give at least one term a positive weight, got {weights}"
        )
    options = loss.options.to_dict()
    for name, opts in options.items():
        try:
            fn = losses.make_loss_fn({name: 1.0}, {name: opts})
            f = jax.ShapeDtypeStruct((40, 8), jax.numpy.float32)
            m = jax.ShapeDtypeStruct((40,), bool)
            jax.eval_shape(lambda a, b, ma, mb: fn(a, b, ma, mb, offset=0)[0], f, f, m, m)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"loss.options.{name} {opts}: {e}") from None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _non_finite(tree, prefix: str = "") -> tuple[str, float] | None:
    """The first (field, value) of a config dict holding NaN or an infinity, or None."""
    for k, v in tree.items():
        if isinstance(v, dict):
            found = _non_finite(v, f"{prefix}{k}.")
            if found:
                return found
        elif isinstance(v, float) and not math.isfinite(v):
            return f"{prefix}{k}", v
        elif isinstance(v, (tuple, list)) and any(
            isinstance(x, float) and not math.isfinite(x) for x in v
        ):
            return f"{prefix}{k}", v
    return None


@_missing_fields_named
def check_evaluation_config(config, memory: bool = True) -> None:
    """What evaluation needs of a config: the data, the model settings, the search and (with
    ``memory``) the memory of an evaluation batch (the training settings are left alone, so
    that a training config names test data too)."""
    found = _non_finite(config.to_dict())
    if found:
        raise ConfigError(f"{found[0]} is {found[1]}; every number of a config must be finite")
    d, m = config.data, config.model
    if not (_is_number(d.fps) and d.fps > 0):
        raise ConfigError(f"data.fps must be the data's frame rate (> 0), got {d.fps!r}")
    if d.source == "embedded" and d.fps != EMBEDDED_FPS:
        raise ConfigError(
            f"data.fps is {d.fps:g}, but the embedded clips are {EMBEDDED_FPS:g} fps; data.fps "
            f"declares the data's rate (it does not resample it): leave it at {EMBEDDED_FPS:g}"
        )
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
    problem = checkpoint.model_config_problem(
        {k: m[k] for k in ("layout", "strategy", "widths", "kernel_size", "padding")}
    )
    if problem:
        raise ConfigError(f"model.{problem[0]} {problem[1]}")
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
    e = config.eval
    if d.source == "embedded" and e.min_overlap >= 1 and e.min_overlap > d.frames - d.max_offset:
        raise ConfigError(
            f"eval.min_overlap is {e.min_overlap:g} frames, but two data.frames={d.frames} views "
            f"up to data.max_offset={d.max_offset} frames apart share only "
            f"{d.frames - d.max_offset}: lower eval.min_overlap"
        )
    if memory:
        check_memory(config, training=False)


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
    """ConfigError naming the ``train.*`` field that cannot run (BatchNorm mode, schedule,
    batch size, epochs, learning rate)."""
    if t.bn_mode not in BN_MODES:
        raise ConfigError(f"train.bn_mode must be one of {BN_MODES}, got {t.bn_mode!r}")
    if t.schedule not in ("constant", "cosine", "warmup_cosine"):
        raise ConfigError(
            f"train.schedule must be 'constant', 'cosine' or 'warmup_cosine', got {t.schedule!r}"
        )
    for name in ("batch_size", "epochs"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
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
    steps = tuple(t.profile_steps)
    if not (
        len(steps) == 2
        and all(isinstance(s, int) for s in steps)
        and (steps == (0, 0) or 1 <= steps[0] <= steps[1])
    ):
        raise ConfigError(
            f"train.profile_steps must be (first, last) with 1 <= first <= last (steps counted "
            f"from 1), or (0, 0) for no trace; got {t.profile_steps!r}"
        )
    if t.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        raise ConfigError(
            "train.tensorboard needs tensorboardX: pip install 'sesyn-jax[tensorboard]' "
            "(or pip install tensorboardX)"
        )


def check_eval_config(e) -> None:
    """ConfigError naming the ``eval.*`` field that cannot run (batch size, search rule,
    ``max_offset`` in frames, ``min_overlap`` in frames or as a fraction)."""
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


# Memory of one step, in copies of the network's activations (2 views x B x T x joints x
# sum(widths) float32 values) and of the loss's T x T frame similarities per pair. Training:
# XLA's own figure (``compiled.memory_analysis()`` on the CPU, arguments and temporaries) came
# to 11-17 activation copies (more for narrow networks and widening blocks) and 9-14
# similarity copies over ten networks, lengths, batches and losses; these bound it, at most
# about 1.7x above it (tests/test_config_checks.py compares them). Evaluation runs the forward
# alone (about 2 copies measured) and searches each batch's similarities.
TRAIN_COPIES = (18, 16)
EVAL_COPIES = (3, 4)


def step_memory(config, training: bool) -> dict:
    """Bytes one train step (or one evaluation batch) of ``config`` needs on one device, with
    the sequence length it assumes: the bucket that holds data.frames for the embedded
    source, else the largest bucket (longer SYN sequences are refused by the batcher)."""
    d, m = config.data, config.model
    buckets = sorted(d.buckets)
    frames = d.frames if d.source == "embedded" else buckets[-1]
    t = next((b for b in buckets if b >= frames), frames)
    if training:
        devices = jax.device_count() if config.mesh.num_processes <= 1 else 1
        batch, (act_copies, sim_copies) = -(-config.train.batch_size // devices), TRAIN_COPIES
    else:
        batch, (act_copies, sim_copies) = config.eval.batch_size, EVAL_COPIES
    joints = len(graph.get_layout(m.layout).joints)
    activations = act_copies * 2 * batch * t * joints * sum(m.widths) * 4
    similarities = sim_copies * batch * t * t * 4
    return dict(
        bytes=activations + similarities,
        activations=activations,
        similarities=similarities,
        frames=t,
        batch=batch,
    )


def memory_limit(config) -> tuple[int, str]:
    """The memory of one device (bytes, what it is): an accelerator's own, else the host's.
    With several processes the devices are not looked at (that would start JAX before
    jax.distributed.initialize): the host's memory is the limit then."""
    if config.mesh.num_processes <= 1:
        dev = jax.local_devices()[0]
        stats = dev.memory_stats() if dev.platform != "cpu" else None
        if stats and stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"one {dev.platform} device ({dev.device_kind})"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"


def check_memory(config, training: bool) -> None:
    """Refuse a config whose step cannot fit in memory, with the estimate and the limit, before
    XLA tries to allocate it."""
    need = step_memory(config, training)
    limit, where = memory_limit(config)
    if need["bytes"] <= limit:
        return
    d = config.data
    length = (
        f"data.frames={d.frames} (bucket {need['frames']})"
        if d.source == "embedded"
        else f"sequences up to the largest of data.buckets ({need['frames']} frames)"
    )
    batch = "train.batch_size" if training else "eval.batch_size"
    raise ConfigError(
        f"{length} with {batch}={need['batch']} per device and model.widths="
        f"{tuple(config.model.widths)} needs about {_size(need['bytes'])} for one "
        f"{'train step' if training else 'evaluation batch'} ({_size(need['activations'])} of "
        f"activations, {_size(need['similarities'])} of {need['frames']} x {need['frames']} "
        f"frame similarities); {where} holds {_size(limit)}. Lower data.frames (or "
        f"data.buckets), {batch} or model.widths"
    )


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def check_output_folder(path: str, flag: str, need_bytes: int = 0) -> None:
    """Refuse a folder that cannot be written (under a file, on a read-only file system,
    without permission) or whose disk has less than ``need_bytes`` free, before any work. A
    file is created and removed in the nearest existing folder to find out; nothing stays."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path} is a file; give a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write in {existing} ({e.strerror})") from None
    free = shutil.disk_usage(existing).free
    if free < need_bytes:
        raise ConfigError(
            f"{flag} {path}: {_size(free)} free on its disk, about {_size(need_bytes)} "
            f"needed; free some space or choose another folder"
        )


def workdir_bytes(config, workdir: str | None = None) -> int:
    """Disk a train.py workdir needs at most: train.keep + 2 checkpoints (the latest, the best
    and the one being written) of parameters, momentum and BatchNorm statistics, the export,
    and 1 MB of metrics and config. For a ``workdir`` that already holds checkpoints and an
    export (a resumed run), what they take is subtracted, down to one checkpoint's size (the
    next one is written before the oldest goes)."""
    total, one = _workdir_sizes(config)
    if not workdir:
        return total
    held = sum(_folder_bytes(os.path.join(workdir, name)) for name in ("checkpoints", "export"))
    return max(total - held, one)


def _folder_bytes(folder: str) -> int:
    size = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                size += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return size


def _workdir_sizes(config) -> tuple[int, int]:
    """(the whole workdir's bytes, one checkpoint's bytes)."""
    m = config.model
    shapes = jax.eval_shape(
        lambda: init_variables(
            STGCNEmbedding(
                layout=m.layout,
                strategy=m.strategy,
                widths=tuple(m.widths),
                kernel_size=m.kernel_size,
            ),
            jax.random.PRNGKey(0),
        )
    )
    params = sum(x.size * 4 for x in jax.tree_util.tree_leaves(shapes["params"]))
    stats = sum(x.size * 4 for x in jax.tree_util.tree_leaves(shapes.get("batch_stats", {})))
    one = 2 * params + stats
    return (config.train.keep + 2) * one + params + stats + 10**6, one
