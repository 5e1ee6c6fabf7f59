"""metrics.jsonl of a run: one JSON row per logged step or evaluation."""

from __future__ import annotations

import json
import os

from sesyn_jax.io import atomic_write


class MetricsWriter:
    """metrics.jsonl, one JSON row per log or evaluation, written by process 0 only. Opened at
    ``start_step`` of a resumed run, it first drops the rows logged after that checkpoint (a kill
    between a log and the next save), so that no step appears twice."""

    def __init__(self, path: str, start_step: int, enabled: bool = True):
        self.file = None
        if enabled:
            _truncate_metrics(path, start_step)
            self.file = open(path, "a")

    def write(self, row: dict) -> None:
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


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
