"""A real training run for the tests of netdef/runs (plot, report, parse-log): the tiny net of
solver_helpers trained by `netdef train` in a child process, its terminal output kept as a netdef log,
and the log lines read back by plain regular expressions (the oracle the curves are checked against)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from solver_helpers import write_solver, write_tiny_net

DISPLAY = re.compile(r"Iteration (\d+) \(.*\), loss = (\S+)")
TESTING = re.compile(r"Iteration (\d+), Testing net")
TEST_OUTPUT = re.compile(r"Test net output #\d+: (\w+) = (\S+)")


def train_tiny(folder: Path, **solver_fields) -> tuple:
    """Trains the tiny net for 20 iterations in `folder` (its first run there); returns (run folder, the
    terminal log's path)."""
    write_tiny_net(folder)
    solver = write_solver(folder, **dict(dict(max_iter=20, snapshot=10, display=5, test_interval=10), **solver_fields))
    result = subprocess.run([sys.executable, "-m", "netdef", "train", str(solver)], cwd=folder, capture_output=True,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert result.returncode == 0, result.stderr
    log = folder / "terminal.log"
    log.write_text(result.stdout)
    return folder / "runs" / "1", log  # log_dir: runs; the solver's first run


def displayed_losses(text: str) -> list:
    """(iteration, loss) of every display line."""
    return [(int(m.group(1)), float(m.group(2))) for m in DISPLAY.finditer(text)]


def logged_test_outputs(text: str, blob: str) -> list:
    """(iteration, value) of every `Test net output #k: BLOB = value` line, with its Testing line's iteration."""
    points, iteration = [], None
    for line in text.splitlines():
        if m := TESTING.search(line):
            iteration = int(m.group(1))
        elif (m := TEST_OUTPUT.search(line)) and m.group(1) == blob:
            points.append((iteration, float(m.group(2))))
    return points


def close_points(got, want):
    """(iteration, value) points: the same iterations, values within float32's printed digits."""
    assert [x for x, _ in got] == [x for x, _ in want]
    assert [y for _, y in got] == pytest.approx([y for _, y in want], rel=1e-5)
