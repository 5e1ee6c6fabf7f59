"""Command-line plumbing shared by train.py, evaluate.py and the ablation runner: absl flag
parsing that answers a bad --config override with a message and exit status 2 instead of a
traceback."""

from __future__ import annotations

import sys

from absl import flags


def parse_flags_or_exit(argv: list[str], flag_values=None) -> list[str]:
    """absl's flag parsing (into ``flag_values``, default the global FLAGS); an unknown or
    ill-typed ``--config.a.b=value`` (ml_collections raises from inside the parser) or any other
    flag error exits with status 2."""
    try:
        return (flag_values or flags.FLAGS)(argv)
    except flags.Error as e:
        _exit(f"{e}")
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        _exit(
            f"a --config override cannot be applied ({type(e).__name__}: {e}); check the "
            f"field names and types in the config file ({' '.join(bad) or 'no override'}). "
            f"A config is locked: to add a field, such as a new loss term in "
            f"loss.weights, write it in a config file"
        )


def _exit(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
