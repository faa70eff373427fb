"""The shipped LeNet solver, run as a user runs it: from another folder, on the bundled digits."""
import re
import shutil

import pytest

from solver_helpers import MNIST5K, REPO, one_thread, run_netdef  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_lenet_solver_learns_the_bundled_digits_from_any_folder(tmp_path, monkeypatch):
    """solvers/lenet_solver.yaml and nets/lenet.yaml copied into a tree shaped like the repository's, run
    from elsewhere, cut to 500 iterations (the full 2,000 take about a minute; see the README)."""
    for folder in ("solvers", "nets", "data"):
        (tmp_path / "clone" / folder).mkdir(parents=True)
    shutil.copy(REPO / "nets" / "lenet.yaml", tmp_path / "clone" / "nets")
    (tmp_path / "clone" / "data" / "mnist5k").symlink_to(MNIST5K)
    solver = (REPO / "solvers" / "lenet_solver.yaml").read_text()
    assert "max_iter: 2000" in solver
    (tmp_path / "clone" / "solvers" / "lenet_solver.yaml").write_text(solver.replace("max_iter: 2000", "max_iter: 500"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_netdef("train", "../clone/solvers/lenet_solver.yaml")
    assert code == 0, err
    accuracy = [float(x) for x in re.findall(r"Test net output #0: accuracy = (\S+)", out)]
    assert len(accuracy) == 2 and accuracy[0] < 0.3  # before the first iteration and after the last
    assert accuracy[-1] >= 0.95
    assert (tmp_path / "clone" / "snapshots" / "lenet_iter_500.pt").is_file()
    assert (elsewhere / "runs" / "lenet_solver" / "1" / "lenet.yaml").is_file()
