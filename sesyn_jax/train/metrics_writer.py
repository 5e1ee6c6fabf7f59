"""What a run logs: metrics.jsonl (one JSON row per logged step or evaluation), the same
scalars as TensorBoard event files when asked for, and the time of the steps and of the wait
for their batches."""

from __future__ import annotations

import json
import math
import os
import time

from sesyn_jax.io import atomic_write


class MetricsWriter:
    """metrics.jsonl, one JSON row per log or evaluation, written by process 0 only. Opened at
    ``start_step`` of a resumed run, it first drops the rows logged after that checkpoint (a kill
    between a log and the next save), so that no step appears twice. With ``tensorboard_dir``
    every number of a row is also a TensorBoard scalar at its step (tensorboardX's
    SummaryWriter; nested rows such as ``val`` become ``val/frame_error``)."""

    def __init__(self, path: str, start_step: int, enabled: bool = True, tensorboard_dir: str = ""):
        self.file = self.board = None
        if enabled:
            _truncate_metrics(path, start_step)
            self.file = open(path, "a")
            if tensorboard_dir:
                from tensorboardX import SummaryWriter  # optional extra: sesyn-jax[tensorboard]

                self.board = SummaryWriter(tensorboard_dir, purge_step=start_step + 1)

    def write(self, row: dict) -> None:
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.board:
            for name, value in scalars(row):
                self.board.add_scalar(name, value, row["step"])
            self.board.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.board:
            self.board.close()


def scalars(row: dict, prefix: str = "") -> list[tuple[str, float]]:
    """The finite numbers of a row (nested dicts as ``outer/inner``), without step and epoch."""
    out = []
    for key, value in row.items():
        if key in ("step", "epoch") and not prefix:
            continue
        if isinstance(value, dict):
            out += scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                out.append((prefix + key, float(value)))
    return out


class StepTimer:
    """Wall time of the training steps and of the waits for their batches, per log window.

    JAX dispatches steps asynchronously, so a step's time is only known where the host waits
    for the device: at a logged step (its metrics are fetched) and before an evaluation. A
    window runs from one such point to the next; its step time is its length over its steps,
    and its data wait the time the loop was blocked on the input iterator. The first window
    holds the compilation and is left out of the run's totals."""

    def __init__(self):
        self.windows = 0
        self.total = [0.0, 0.0, 0]  # seconds, seconds waiting, steps (windows after the first)
        self.restart()

    def restart(self) -> None:
        self.start, self.wait, self.steps = time.perf_counter(), 0.0, 0

    def waited(self, seconds: float) -> None:
        self.wait += seconds
        self.steps += 1

    def close_window(self) -> dict:
        """{"step_ms", "data_wait_ms"} per step of the window now ending; starts the next."""
        elapsed = time.perf_counter() - self.start
        steps = max(self.steps, 1)
        if self.windows and self.steps:
            self.total[0] += elapsed
            self.total[1] += self.wait
            self.total[2] += self.steps
        self.windows += 1
        out = {"step_ms": 1000 * elapsed / steps, "data_wait_ms": 1000 * self.wait / steps}
        self.restart()
        return out

    def summary(self) -> dict | None:
        """Mean step time and data wait per step after the first window, and the wait's share
        of the step time (None before a second window)."""
        seconds, wait, steps = self.total
        if not steps:
            return None
        return {
            "step_ms": 1000 * seconds / steps,
            "data_wait_ms": 1000 * wait / steps,
            "data_wait_share": wait / seconds if seconds else 0.0,
            "steps": steps,
        }


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drop the rows of metrics.jsonl logged after ``last_step`` (atomic rewrite)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if row.get("step", 0) <= last_step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines):
        atomic_write(path, lambda f: f.writelines(keep))
