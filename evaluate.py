"""Evaluate a checkpoint on a test split: the paper's Table 1 with the Simple and SSM baselines,
robustness sweeps (Tables 5 and 6) and frame error against the true offset (Figure 3).

  python evaluate.py --config configs/quickstart.py --checkpoint runs/quickstart
  python evaluate.py --config configs/mocap_syn.py --config.data.root DATA --checkpoint X.pth

--checkpoint: a train.py workdir, an inference export folder, a PyTorch .pth (published or
exported) or the bare word default, the model shipped in the package (a folder called default
is given as ./default). The test data comes from --config, the model from the checkpoint, so
evaluating across datasets is naming a checkpoint trained on one and a config of the other.
Results go to --out (default: <checkpoint>/eval, eval/ beside a .pth, ./eval_default for the
shipped model): results.json, results.md, error_vs_offset.png, written together at the end;
an evaluation that fails writes nothing.
"""

from __future__ import annotations

import math
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "config naming the test data", lock_config=True)
flags.DEFINE_string(
    "checkpoint",
    None,
    "train.py workdir, export folder or .pth; the bare word default: the shipped model "
    "(a folder called default: ./default)",
)
flags.DEFINE_string(
    "out", None, "output folder (default: CHECKPOINT/eval; ./eval_default for the shipped model)"
)
flags.DEFINE_bool("sweeps", True, "frame-drop and pixel-noise tables")
flags.DEFINE_list("drop_rates", ["0", "1", "3", "5", "10"], "dropped frames, percent")
flags.DEFINE_list("noise_px", ["0", "3", "6", "9"], "Gaussian noise on every joint, pixels")
flags.DEFINE_bool("progress", True, "show progress bars")
flags.mark_flags_as_required(["config", "checkpoint"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before JAX starts its CPU threads; see sesyn_jax/hostmem.py
    try:
        return _evaluate()
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); nothing was written", file=sys.stderr)
        return 130


def _evaluate() -> int:
    from sesyn_jax import config_checks, loading, report

    try:
        if not FLAGS.checkpoint.strip():
            raise ValueError("--checkpoint is empty; give a folder, a .pth or 'default'")
        drop_rates = parse_numbers(
            "--drop_rates", FLAGS.drop_rates, 0.0, 100.0, "percent of frames dropped, in [0, 100)"
        )
        noise_px = parse_numbers(
            "--noise_px", FLAGS.noise_px, 0.0, math.inf, "pixels of Gaussian noise, >= 0"
        )
        out = FLAGS.out or report.default_out(FLAGS.checkpoint)
        config_checks.check_output_folder(out, "--out", 10**6)
        config_checks.check_evaluation_config(FLAGS.config)
        loaded = loading.load_model(FLAGS.checkpoint)
    except ValueError as e:  # ConfigError, CheckpointError, ConversionError: one line each
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        results = report.evaluate_checkpoint(
            FLAGS.config,
            loaded,
            FLAGS.checkpoint,
            out=out,
            sweeps=FLAGS.sweeps,
            drop_rates=drop_rates,
            noise_px=noise_px,
            progress=FLAGS.progress,
        )
    except report.OutputError as e:
        print(f"error: --out {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # the test data: no pairs, a malformed file; the search
        message = str(e).replace("lower min_overlap", "lower eval.min_overlap")
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(results["markdown"])
    print(f"\nwritten to {results['out']}")
    return 0


def parse_numbers(flag: str, values, lo: float, hi: float, what: str) -> list[float]:
    """Numbers of a list flag in [lo, hi), or a ValueError naming the flag and the value."""
    out = []
    for v in values:
        try:
            x = float(v)
        except ValueError:
            raise ValueError(f"{flag}: {v!r} is not a number; expected {what}") from None
        if not math.isfinite(x) or not lo <= x < hi:
            raise ValueError(f"{flag}: {v} is out of range; expected {what}")
        out.append(x)
    return out


if __name__ == "__main__":
    from sesyn_jax.cli import parse_flags_or_exit

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags_or_exit)
