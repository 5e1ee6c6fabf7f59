"""Train SeSyn-Net: python train.py --config configs/quickstart.py --workdir runs/quickstart

Any config field can be overridden on the command line, e.g. --config.train.lr=0.01. Running
again with the same --workdir resumes an interrupted run from its last checkpoint (parameters,
BatchNorm statistics, optimizer state, step, epoch and data position), so that it ends with the
same parameters as an uninterrupted run.

Stages, top to bottom: devices and mesh, data, model and state, the jit-compiled train step,
the loop (with evaluation and checkpoints), the inference export.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)
flags.DEFINE_string("workdir", None, "run folder: checkpoints, metrics, config, export")
flags.DEFINE_integer(
    "stop_after_steps",
    0,
    "stop (as if interrupted) after this many steps in "
    "this invocation; 0: run to the end. For resume tests.",
)
flags.DEFINE_bool("progress", True, "show a progress bar")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before JAX starts its CPU threads; see sesyn_jax/hostmem.py
    config = FLAGS.config
    from sesyn_jax import config_checks
    from sesyn_jax.cli import workdir_write_failure
    from sesyn_jax.train.loop import train_and_evaluate

    from sesyn_jax.data.syn_json import PoseFormatError

    try:
        if not FLAGS.workdir.strip():
            raise config_checks.ConfigError("--workdir is empty; give the run's folder")
        config_checks.check_config(config)
        config_checks.check_output_folder(
            FLAGS.workdir, "--workdir", config_checks.workdir_bytes(config, FLAGS.workdir)
        )
        result = train_and_evaluate(
            config, FLAGS.workdir, stop_after_steps=FLAGS.stop_after_steps, progress=FLAGS.progress
        )
    except (config_checks.ConfigError, PoseFormatError) as e:  # PoseFormatError: the data
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the loop (which stops on its own, keeping checkpoints)
        print("error: interrupted (Ctrl-C) before training began", file=sys.stderr)
        return 130
    except Exception as e:  # a disk that fills or turns read-only during the run
        message = workdir_write_failure(FLAGS.workdir, e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    status = result.get("status")
    if status == "terminated":  # by a signal: the shell's convention, 128 + its number
        return 128 + result["signal"]
    return 0 if status in ("finished", "interrupted") else 1


if __name__ == "__main__":
    from sesyn_jax.cli import parse_flags_or_exit

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags_or_exit)
