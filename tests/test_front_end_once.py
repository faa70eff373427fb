"""The front end runs once per file: `netdef train`, `netdef test` and `netdef check` read each YAML file
once (netdef.front.load.load_yaml) and expand each net file once (netdef.front.expand.expand), however
many phases and test instances they derive from it."""
from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import yaml

import netdef.front.expand
import netdef.front.load
from solver_helpers import REPO, one_thread, run_netdef  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

LENET = (REPO / "nets" / "lenet.yaml").resolve()


@pytest.fixture
def counts(monkeypatch):
    """(reads, expansions): calls per file path, counted wherever a module holds the functions."""
    import netdef.cli.check, netdef.cli.test, netdef.cli.train, netdef.train.solver  # noqa: E401, F401
    reads, expansions = collections.Counter(), collections.Counter()
    load_yaml, expand = netdef.front.load.load_yaml, netdef.front.expand.expand

    def counted_load_yaml(path):
        reads[Path(path).resolve()] += 1
        return load_yaml(path)

    def counted_expand(data, source):
        expansions[Path(source.file).resolve()] += 1
        return expand(data, source)

    for module in [m for name, m in sys.modules.items() if name.startswith("netdef")]:
        if getattr(module, "load_yaml", None) is load_yaml:
            monkeypatch.setattr(module, "load_yaml", counted_load_yaml)
        if getattr(module, "expand", None) is expand:
            monkeypatch.setattr(module, "expand", counted_expand)
    return reads, expansions


def lenet_solver(folder: Path) -> Path:
    """solvers/lenet_solver.yaml cut to 2 iterations, testing after each on two instances of the net,
    with absolute paths and everything it writes in `folder`."""
    values = yaml.safe_load((REPO / "solvers" / "lenet_solver.yaml").read_text())
    values.update(net=str(LENET), max_iter=2, test_interval=1, test_iter=[1, 1], display=1,
                  snapshot_prefix=str(folder / "snaps" / "lenet"), log_dir=str(folder / "runs"), device="cpu")
    path = folder / "lenet_solver.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def test_train_reads_the_solver_and_the_net_once(tmp_path, counts):
    reads, expansions = counts
    solver = lenet_solver(tmp_path)
    code, out, err = run_netdef("train", solver)
    assert code == 0, err
    assert out.count("Testing net (#1)") == 3  # TRAIN and two TEST instances of one net file
    assert reads == {solver.resolve(): 1, LENET: 1}
    assert expansions == {LENET: 1}


def test_test_reads_and_expands_the_net_once(tmp_path, counts):
    reads, expansions = counts
    code, _, err = run_netdef("train", lenet_solver(tmp_path))
    assert code == 0, err
    reads.clear()
    expansions.clear()
    code, out, err = run_netdef("test", "--model", LENET, "--weights", tmp_path / "snaps" / "lenet_iter_2.pt",
                                "--iterations", 1, "--device", "cpu")
    assert code == 0, err
    assert "Batch 0, accuracy = " in out
    assert reads == {LENET: 1} and expansions == {LENET: 1}


def test_check_reads_each_file_once(tmp_path, counts):
    reads, expansions = counts
    solver = lenet_solver(tmp_path)
    code, out, err = run_netdef("check", solver, LENET)
    assert code == 0, err
    # each argument is checked on its own: the net once as the solver's, once as itself
    assert reads == {solver.resolve(): 1, LENET: 2}
    assert expansions == {LENET: 2}
