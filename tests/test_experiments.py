"""docs/experiments/: the weight-sharing arithmetic from `netdef summary --json`, and every experiment's net
and solver files pass `netdef check` (real subprocess runs of the CLI)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "docs" / "experiments"
# An experiment without files of its own reads shipped nets.
SHIPPED_FILES = {"few_params_many_macs": [ROOT / "nets" / f"{name}.yaml" for name in ("googlenet", "alexnet", "vgg16")]}


def _netdef(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdef", *args], capture_output=True, text=True, timeout=120)


def test_weight_sharing_rows_show_the_arithmetic():
    done = _netdef("summary", "--json", str(EXPERIMENTS / "weight_sharing" / "net.yaml"))
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["layers"]}
    local_positions = (1000 - 10 + 1) ** 2
    assert rows["fully_connected"]["params"] == 10 ** 6 * 10 ** 6
    assert rows["local"]["params"] == local_positions * 10 * 10
    assert rows["shared_1_kernel"]["params"] == 10 * 10
    assert rows["shared_100_kernels"]["params"] == 100 * 10 * 10
    # sharing changes the weights, not the work: one local field or one shared kernel, the same MACs
    assert rows["local"]["macs"] == rows["shared_1_kernel"]["macs"] == local_positions * 100


@pytest.mark.parametrize("experiment", sorted(p.name for p in EXPERIMENTS.iterdir() if p.is_dir()))
def test_experiment_files_pass_check(experiment):
    files = [str(p) for p in sorted((EXPERIMENTS / experiment).glob("*.yaml")) or SHIPPED_FILES[experiment]]
    assert files, f"{experiment} has no net or solver files"
    done = _netdef("check", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok") == len(files)
