"""Every command and Python snippet that README.md and docs/*.md show is tested.

The fenced blocks are collected from the pages: ```bash blocks hold commands, plain ``` blocks
hold sessions (``$ command`` lines followed by the output the page shows), ```python blocks are
run, ```json blocks are compared with the command's own output. Each command is then

- run, when it is fast (the example recordings, ``sesyn-sync`` on them, the Pose2Sim session,
  the converter on an untrained export), and its shown output compared with what it prints;
- parsed, when it is long (train.py, evaluate.py and ablation runs: absl flags and every
  ``--config.a.b=`` override against the config file; argparse tools: every ``--option`` against
  the tool's ``--help``), so that a renamed flag or config field fails here;
- or named below as a command of the shell or of pip that this project does not define.

A command the test cannot place fails it: a new kind of command on a page needs a rule here.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))
)

# Commands of the shell, of Python's venv and of pip: not this project's to test.
FOREIGN = {"cd", "cp", "ls", "mkdir", ".", "source", "pip", "python3", "bash"}
# Scripts and modules with absl flags (and a --config file whose fields can be overridden).
ABSL_SCRIPTS = {"train.py", "evaluate.py", "-m sesyn_jax.ablate"}
# Project modules and scripts with argparse options; the key is how the page calls them.
ARGPARSE = {
    "sesyn-sync": [sys.executable, "-m", "sesyn_jax.sync"],
    "-m sesyn_jax.sync": [sys.executable, "-m", "sesyn_jax.sync"],
    "-m sesyn_jax.convert_cli": [sys.executable, "-m", "sesyn_jax.convert_cli"],
    "-m sesyn_jax.parity": [sys.executable, "-m", "sesyn_jax.parity"],
    "-m sesyn_jax.data.build_mocap_syn": [sys.executable, "-m", "sesyn_jax.data.build_mocap_syn"],
    "-m sesyn_jax.data.plot_pair": [sys.executable, "-m", "sesyn_jax.data.plot_pair"],
    "-m sesyn_jax.data.example_recordings": [
        sys.executable,
        "-m",
        "sesyn_jax.data.example_recordings",
    ],
}
BENCH = sorted(glob.glob(os.path.join(ROOT, "bench", "*.py")))
ARGPARSE.update({f"bench/{os.path.basename(p)}": [sys.executable, p] for p in BENCH})
# Every entry point whose --help must work (absl's --help exits with status 1 by design).
ENTRY_POINTS = [
    ["train.py"],
    ["evaluate.py"],
    ["-m", "sesyn_jax.ablate"],
    ["-m", "sesyn_jax.sync"],
    ["-m", "sesyn_jax.convert_cli"],
    ["-m", "sesyn_jax.parity"],
    ["-m", "sesyn_jax.data.build_mocap_syn"],
    ["-m", "sesyn_jax.data.plot_pair"],
    ["-m", "sesyn_jax.data.example_recordings"],
] + [[os.path.relpath(p, ROOT)] for p in BENCH]


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str


@dataclass
class Command:
    page: str
    line: int
    argv: list[str]
    output: list[str] = field(default_factory=list)  # the lines a session shows after it

    def where(self) -> str:
        return f"{self.page}:{self.line}: {' '.join(self.argv)}"


def fenced_blocks(page: str) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the line of their opening fence."""
    blocks, lang, start, body = [], None, 0, []
    with open(os.path.join(ROOT, page)) as f:
        for i, line in enumerate(f, 1):
            stripped = line.strip()
            if lang is None and stripped.startswith("```"):
                lang, start, body = stripped[3:].strip(), i, []
            elif lang is not None and stripped == "```":
                blocks.append(Block(page, start, lang, "".join(body)))
                lang = None
            elif lang is not None:
                body.append(line)
    return blocks


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined across trailing backslashes, with their offset in the block."""
    out, current, first = [], "", 0
    for i, line in enumerate(text.splitlines(), 1):
        if not current:
            first = i
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append((first, current + line))
        current = ""
    return out


def _split(line: str, loop_vars: dict | None = None) -> list[list[str]]:
    """One shell line as commands: ``a && b; c`` is three; a ``for V in x y; do`` loop's body
    (on this line or the next ones, which share ``loop_vars``) is kept with $V set to the
    loop's first value; comments are dropped."""
    words = shlex.split(line, comments=True)
    commands, current = [], []
    loop_vars = {} if loop_vars is None else loop_vars
    i = 0
    while i < len(words):
        w = words[i]
        if w == "for" and not current:
            end = words.index("do", i) if "do" in words[i:] else words.index("do;", i)
            values = [v.rstrip(";") for v in words[i + 3 : end] if v.rstrip(";")]
            loop_vars[words[i + 1]] = values[0]
            i = end + 1
            continue
        if w in ("&&", "done", "done;") or w.endswith(";"):
            if w.endswith(";") and w not in ("done;",):
                current.append(w[:-1])
            if current:
                commands.append(current)
            current = []
        else:
            current.append(w)
        i += 1
    if current:
        commands.append(current)
    for name, value in loop_vars.items():
        commands = [[re.sub(r"\$\{?" + name + r"\}?", value, w) for w in c] for c in commands]
    return [c for c in commands if c]


def commands_of(block: Block) -> list[Command]:
    """The commands of a ```bash block, or the ``$`` commands of a session with their output."""
    found = []
    if block.lang in ("bash", "sh", "shell"):
        loop_vars = {}
        for offset, line in _logical_lines(block.text):
            for argv in _split(line, loop_vars):
                found.append(Command(block.page, block.line + offset, argv))
    elif block.lang in ("", "console"):
        lines = _logical_lines(block.text)
        if not any(line.startswith("$ ") for _, line in lines):
            return []
        for offset, line in lines:
            if line.startswith("$ "):
                for argv in _split(line[2:]):
                    found.append(Command(block.page, block.line + offset, argv))
            elif found:
                found[-1].output.append(line)
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in fenced_blocks(page)]


def all_commands() -> list[Command]:
    return [c for b in all_blocks() for c in commands_of(b)]


def kind(argv: list[str]) -> tuple[str, str | None]:
    """('foreign' | 'absl' | 'argparse', the key of the tool) for one command."""
    head = argv[0]
    if head in ("python", "python3") and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2:
            key = f"-m {argv[2]}"
            if argv[2] in ("venv", "pytest", "pip"):
                return "foreign", None
        else:
            key = argv[1]
        if key in ABSL_SCRIPTS:
            return "absl", key
        if key in ARGPARSE:
            return "argparse", key
        raise AssertionError(f"no rule for {key!r}")
    if head == "sesyn-sync":
        return "argparse", head
    if head in FOREIGN:
        return "foreign", None
    raise AssertionError(f"no rule for the command {head!r}")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _project_args(argv: list[str]) -> list[str]:
    """The arguments after the tool (``python train.py`` / ``python -m m`` / ``sesyn-sync``)."""
    if argv[0] == "sesyn-sync":
        return argv[1:]
    return argv[3:] if argv[1] == "-m" else argv[2:]


# One subprocess per command: ml_collections defines the --config.a.b overrides from sys.argv
# at import time, so each command needs a fresh interpreter (about half a second).
_ABSL_PARSE = """
import importlib.util, sys
script, argv = sys.argv[1], sys.argv[2:]
if script == "-m sesyn_jax.ablate":
    from sesyn_jax import ablate
    fv = ablate.parse_flags(argv)
else:
    sys.argv = [script] + argv
    spec = importlib.util.spec_from_file_location("docs_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from sesyn_jax.cli import parse_flags_or_exit
    parse_flags_or_exit(sys.argv)
    fv = module.FLAGS
fv["config"].value.to_dict()
print("parsed")
"""


def test_every_command_has_a_rule():
    commands = all_commands()
    assert len(commands) > 20, "the pages' commands were not collected"
    problems = []
    for c in commands:
        try:
            kind(c.argv)
        except AssertionError as e:
            problems.append(f"{c.where()}: {e}")
    assert not problems, "\n".join(problems)


def test_splitting_follows_the_shell():
    line = "for r in a b; do for p in x y; do python evaluate.py --out runs/$r/e_${p}; done; done"
    assert _split(line) == [["python", "evaluate.py", "--out", "runs/a/e_x"]]
    assert _split("mkdir -p T && cp -r a T/b  # two") == [
        ["mkdir", "-p", "T"],
        ["cp", "-r", "a", "T/b"],
    ]


@pytest.mark.parametrize("argv", ENTRY_POINTS, ids=lambda a: " ".join(a))
def test_entry_point_help(argv):
    run = subprocess.run(
        [sys.executable, *argv, "--help"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # absl answers --help with exit status 1; argparse with 0
    assert run.returncode in (0, 1), run.stderr
    assert "--" in run.stdout and "Traceback" not in run.stderr, run.stdout + run.stderr


_ABSL = [c for c in all_commands() if kind(c.argv)[0] == "absl"]


@pytest.mark.parametrize("command", _ABSL, ids=lambda c: f"{c.page}:{c.line}")
def test_long_commands_parse(command):
    """train.py, evaluate.py and the ablation runner: every flag is defined, every
    ``--config.a.b=`` names a field of the config file with a value of its type."""
    script = kind(command.argv)[1]
    run = subprocess.run(
        [sys.executable, "-c", _ABSL_PARSE, script, *_project_args(command.argv)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "parsed" in run.stdout, f"{command.where()}\n{run.stderr}"


def _options(key: str) -> set[str]:
    """The options a tool's argparse usage line lists (the description is not searched: it
    may name options of other tools)."""
    usage = _help_text(key).split("\n\n", 1)[0]
    return set(re.findall(r"(--[\w-]+)", usage))


def _help_text(key: str, cache: dict = {}) -> str:  # noqa: B006 - a per-process cache
    if key not in cache:
        run = subprocess.run(
            [*ARGPARSE[key], "--help"],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        cache[key] = run.stdout
    return cache[key]


def test_tool_options_exist():
    """Every ``--option`` a page gives a tool (sesyn-sync, the converter, the data tools, the
    benchmarks) is one that tool's --help lists; a subcommand is one it names."""
    problems = []
    for c in all_commands():
        what, key = kind(c.argv)
        if what != "argparse":
            continue
        text, options = _help_text(key), _options(key)
        args = _project_args(c.argv)
        for a in args:
            option = a.split("=", 1)[0].strip("[]|")
            if option.startswith("--") and option not in options:
                problems.append(f"{c.where()}: {option} is not an option of {key}")
        if key.endswith("convert_cli") and args and args[0] not in text:
            problems.append(f"{c.where()}: {args[0]} is not a subcommand of {key}")
    assert not problems, "\n".join(problems)


def _run(argv: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _shown_matches(shown: list[str], printed: str) -> bool:
    """The shown output is what was printed, line for line; ``...`` stands for lines left out."""
    lines = printed.rstrip("\n").splitlines()
    if "..." not in shown:
        return shown == lines
    it = iter(lines)
    return all(s == "..." or any(s == line for line in it) for s in shown)


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory):
    """A folder where the pages' example commands run, as a user's working directory."""
    path = str(tmp_path_factory.mktemp("docs_session"))
    run = _run(
        [sys.executable, "-m", "sesyn_jax.data.example_recordings", "--out", "examples"], path
    )
    assert run.returncode == 0, run.stderr
    return path


def _is_example_session(c: Command) -> bool:
    return (
        c.argv[:3] == ["python", "-m", "sesyn_jax.data.example_recordings"]
        or (
            c.argv[0] == "sesyn-sync" and any(a.startswith(("examples/", "Trial/")) for a in c.argv)
        )
        or (c.argv[0] in ("mkdir", "cp", "ls") and any("Trial" in a for a in c.argv))
    )


def test_example_sessions_run(session_dir):
    """The example recordings are written, and every session on them (sesyn-sync on the two
    cameras, the Pose2Sim layout) runs and prints what the page shows."""
    commands = [c for c in all_commands() if _is_example_session(c)]
    assert any(c.argv[0] == "sesyn-sync" and c.output for c in commands)
    printed = {}  # a command shown on two pages runs once
    for c in commands:
        key = " ".join(c.argv)
        if key not in printed:
            run = _run(c.argv, session_dir)
            assert run.returncode == 0, f"{c.where()}\n{run.stderr}"
            printed[key] = run.stdout
        out = printed[key]
        if c.argv[0] == "ls":  # one name a line when not printing to a terminal
            out = "  ".join(out.split()) + "\n"
        if c.output:
            assert _shown_matches(c.output, out), (
                f"{c.where()}: the page shows\n" + "\n".join(c.output) + f"\nit printed\n{out}"
            )


def test_json_output_shown(session_dir):
    """The ```json block of sesyn-sync's example is what ``--json`` prints for it."""
    shown = [json.loads(b.text) for b in all_blocks() if b.lang == "json"]
    assert shown, "no ```json block"
    for obj in shown:
        assert obj.get("status") == "ok" and len(obj["recordings"]) == 2
        paths = [r["path"] for r in obj["recordings"]]
        fps = ",".join(f"{r['fps']:g}" for r in obj["recordings"])
        run = _run(["sesyn-sync", *paths, "--fps", fps, "--json"], session_dir)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == obj


def test_python_snippets_run(session_dir):
    """Each ```python block runs where the example recordings are, and every ``print(...)  #
    shown`` prints what its comment shows (up to a parenthesis)."""
    blocks = list({b.text: b for b in all_blocks() if b.lang == "python"}.values())
    assert blocks  # a snippet shown on two pages runs once
    for b in blocks:
        run = _run([sys.executable, "-c", b.text], session_dir)
        assert run.returncode == 0, f"{b.page}:{b.line}\n{run.stderr}"
        shown = [
            line.split("#", 1)[1].split("(", 1)[0].strip()
            for line in b.text.splitlines()
            if line.startswith("print(") and "#" in line
        ]
        assert run.stdout.splitlines() == shown, f"{b.page}:{b.line}: printed {run.stdout!r}"


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch (pip install torch==2.13.0)")
def test_converter_commands_run(random_export, tmp_path):
    """The pages' converter commands, run on an untrained export standing in for their inputs:
    flax2torch writes a .pth, torch2flax reads it back into a folder sesyn-sync loads."""
    commands = [
        c for c in all_commands() if c.argv[:3] == ["python", "-m", "sesyn_jax.convert_cli"]
    ]
    assert {c.argv[3] for c in commands} == {"torch2flax", "flax2torch"}
    by_kind = {c.argv[3]: c for c in commands}
    f2t = by_kind["flax2torch"].argv
    shutil.copytree(random_export, tmp_path / f2t[4])
    run = _run([sys.executable, *f2t[1:]], str(tmp_path))
    assert run.returncode == 0, run.stderr
    t2f = by_kind["torch2flax"].argv
    shutil.copy(tmp_path / f2t[5], tmp_path / t2f[4])
    run = _run([sys.executable, *t2f[1:]], str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert os.path.exists(tmp_path / t2f[5] / "model.json")


def test_readme_links_exist():
    """Every relative link and image of README.md names a file of the repository (mkdocs checks
    the links of docs/ itself)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not os.path.exists(os.path.join(ROOT, t))]
    assert not missing, missing
