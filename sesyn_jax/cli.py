"""Command-line plumbing shared by train.py, evaluate.py and the ablation runner: absl flag
parsing that answers a missing or broken --config file and a bad --config override with one
line and exit status 2 instead of a traceback, and the one line for an OS error met while
writing results."""

from __future__ import annotations

import os
import re
import sys
import traceback

import ml_collections
from absl import flags


def parse_flags_or_exit(argv: list[str], flag_values=None) -> list[str]:
    """absl's flag parsing (into ``flag_values``, default the global FLAGS); a --config file
    that is missing or cannot be run, an unknown or ill-typed ``--config.a.b=value``
    (ml_collections raises from inside the parser) or any other flag error exits with status
    2."""
    flag_values = flag_values or flags.FLAGS
    config_file = _config_file(argv)
    if config_file is not None:
        problem = _config_file_problem(config_file)
        if problem:
            _exit(f"--config {config_file}: {problem}")
    try:
        rest = flag_values(argv)
    except flags.Error as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        if config_file is not None and "Traceback (most recent call last)" in str(e):
            # a config file that raised while it ran: its traceback's last line says why
            _exit(f"--config {config_file}: cannot be loaded ({lines[-1].strip()})")
        _exit(lines[0])
    except Exception as e:  # the config file runs inside the parser
        if isinstance(e, AttributeError) and "get_config" in str(e):
            _exit(f"--config {config_file}: has no function get_config() returning the config")
        if config_file is not None and _raised_in(e, config_file):
            _exit(f"--config {config_file}: cannot be loaded ({_one_line(e)})")
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        _exit(
            f"a --config override cannot be applied ({_one_line(e)}); check the field names "
            f"and types in the config file ({' '.join(bad) or 'no override'}). A config is "
            f"locked: to add a field, such as a new loss term in loss.weights, write it in a "
            f"config file"
        )
    if config_file is not None and "config" in flag_values:
        try:
            config = getattr(flag_values, "config")  # ml_collections defers a load error
        except OSError as e:
            cause = e.__cause__ or e
            _exit(f"--config {config_file}: cannot be loaded ({_one_line(cause)})")
        if not isinstance(config, ml_collections.ConfigDict):
            _exit(
                f"--config {config_file}: get_config() must return an ml_collections."
                f"ConfigDict, got {type(config).__name__}"
            )
    return rest


def _config_file(argv: list[str]) -> str | None:
    """The file of ``--config FILE[:ARG]`` (or ``--config=FILE``) in argv, if given."""
    for i, a in enumerate(argv[1:], 1):
        if a in ("--config", "-config") and i + 1 < len(argv):
            return argv[i + 1].split(":", 1)[0]
        if a.startswith(("--config=", "-config=")):
            return a.split("=", 1)[1].split(":", 1)[0]
    return None


def _config_file_problem(path: str) -> str | None:
    if not path:
        return "empty path; expected a config file such as configs/quickstart.py"
    if os.path.isdir(path):
        return "is a folder; expected a config file such as configs/quickstart.py"
    if not os.path.exists(path):
        return "no such file; expected a config file such as configs/quickstart.py"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def _raised_in(e: BaseException, path: str) -> bool:
    """Whether ``e`` was raised by the code of file ``path`` (or is a syntax error in it)."""
    target = os.path.realpath(path)
    if isinstance(e, SyntaxError) and e.filename:
        return os.path.realpath(e.filename) == target
    tb = traceback.extract_tb(e.__traceback__)
    return any(os.path.realpath(f.filename) == target for f in tb)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    if "Error whilst parsing config file" in text:  # ml_collections appends a traceback
        text = text.splitlines()[-1]
    text = text.splitlines()[0] if text else ""
    if isinstance(e, SyntaxError):
        text = f"{e.msg}, line {e.lineno}"
    return f"{type(e).__name__}: {text}"


def os_error_reason(e: BaseException) -> str | None:
    """The reason of an OS error met while writing (no space, no permission, read-only file
    system), also when a library wraps it (orbax reports tensorstore's write errors as a
    ValueError carrying ``os_error_code``); None when ``e`` is not one."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return os.strerror(e.errno)
        m = re.search(r"os_error_code='?(\d+)", str(e))
        if m:
            return os.strerror(int(m.group(1)))
        e = e.__cause__ or e.__context__
    return None


def workdir_write_failure(workdir: str, e: BaseException) -> str | None:
    """One line for a train.py run stopped by an OS error while writing its workdir (which
    checkpoint survives and what to do), or None when ``e`` is not such an error."""
    reason = os_error_reason(e)
    if reason is None:
        return None
    steps_dir = os.path.join(workdir, "checkpoints")
    steps = (
        [int(n) for n in os.listdir(steps_dir) if n.isdigit()] if os.path.isdir(steps_dir) else []
    )
    kept = (
        f"the checkpoint of step {max(steps)} is kept: make room and run the same command to resume"
        if steps
        else "no checkpoint was complete yet: make room and run the same command again"
    )
    return f"--workdir {workdir}: writing failed ({reason}); {kept}"


def _exit(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
