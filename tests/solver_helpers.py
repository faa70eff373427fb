"""Small real files for solver tests: a tiny conv net on the bundled MNIST digits, solver files, and
running `netdef` in this process or as a real subprocess."""
from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from netdef.cli import main

REPO = Path(__file__).resolve().parent.parent
MNIST5K = REPO / "data" / "mnist5k"

TINY_NET = """\
name: Tiny
layers:
  - {{name: mnist, type: Data, top: [data, label], include: {{phase: TRAIN}},
     transform_param: {train_transform}, data_param: {{source: {source}, split: train, batch_size: {batch}}}}}
  - {{name: mnist, type: Data, top: [data, label], include: {{phase: TEST}},
     transform_param: {test_transform}, data_param: {{source: {source}, split: t10k, batch_size: 50}}}}
  - {{name: conv1, type: Convolution, bottom: data, top: conv1, param: [{{lr_mult: 1}}, {{lr_mult: 2}}],
     convolution_param: {{num_output: 4, kernel_size: 5, stride: 2, weight_filler: {{type: xavier}}}}}}
  - {{name: pool1, type: Pooling, bottom: conv1, top: pool1, pooling_param: {{pool: MAX, kernel_size: 2, stride: 2}}}}
  - {{name: ip1, type: InnerProduct, bottom: pool1, top: ip1,
     inner_product_param: {{num_output: {hidden}, weight_filler: {{type: xavier}}}}}}
  - {{name: relu1, type: ReLU, bottom: ip1, top: ip1}}
  - {{name: drop1, type: Dropout, bottom: ip1, top: ip1, dropout_param: {{dropout_ratio: 0.2}}}}
  - {{name: ip2, type: InnerProduct, bottom: ip1, top: ip2,
     inner_product_param: {{num_output: 10, weight_filler: {{type: xavier}}}}}}
  - {{name: accuracy, type: Accuracy, bottom: [ip2, label], top: accuracy, include: {{phase: TEST}}}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}}
"""

SCALE = "{scale: 0.00390625}"
AUGMENTED = "{scale: 0.00390625, pad: 2, crop_size: 28, mirror: true}"


def write_tiny_net(folder: Path, name="tiny.yaml", *, batch=16, hidden=16, train_transform=SCALE,
                   test_transform=SCALE) -> Path:
    path = Path(folder) / name
    path.write_text(TINY_NET.format(source=MNIST5K, batch=batch, hidden=hidden, train_transform=train_transform,
                                    test_transform=test_transform), encoding="utf-8")
    return path


def write_solver(folder: Path, name="solver.yaml", **fields) -> Path:
    """A solver for tiny.yaml; `fields` override or add solver fields (None removes one)."""
    values = {"net": "tiny.yaml", "test_iter": 2, "test_interval": 10, "base_lr": 0.01, "momentum": 0.9,
              "weight_decay": 5e-4, "lr_policy": "inv", "gamma": 1e-4, "power": 0.75, "display": 5,
              "max_iter": 10, "snapshot_prefix": "snaps/tiny", "random_seed": 7, "log_dir": "runs", "device": "cpu"}
    values.update(fields)
    values = {k: v for k, v in values.items() if v is not None}
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def run_netdef(*args) -> tuple:
    """`netdef ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
    return code, out.getvalue(), err.getvalue()


def spawn_netdef(*args, cwd=None) -> subprocess.Popen:
    """`netdef ARGS` as a real child process, its output on a pipe, one torch thread (CI has 2 cores)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "netdef", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def snapshot_weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["weights"]


@pytest.fixture
def one_thread():
    """Tiny nets run fastest on one thread, and a busy 2-core CI machine spins badly with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Lines:
    """A child's output lines, read by a thread so that waiting for one can time out."""

    def __init__(self, process):
        self.process, self.seen, self._queue = process, [], queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.seen))

    def rest(self, timeout=120):
        self.process.wait(timeout)
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return "\n".join(self.seen)


def stopped_early_at(child, output: str, prefix) -> int:
    """The iteration a run stopped by a signal stopped at: it exited 0 after its closing snapshot, which
    holds that iteration."""
    assert child.returncode == 0, output
    stopped = int(re.findall(r"Snapshotting to .*_iter_(\d+)\.pt \(the run was interrupted\)", output)[-1])
    assert output.rstrip().endswith(f"_iter_{stopped}.pt (the run was interrupted)\nOptimization stopped early.")
    assert torch.load(f"{prefix}_iter_{stopped}.pt", weights_only=True)["iteration"] == stopped
    return stopped
