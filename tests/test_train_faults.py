"""No fault loses work: a loss that is not finite (nan_policy), snapshots already under the prefix,
weights that fit no layer in `netdef test`, orphaned temporary snapshot files, two runs on one prefix."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from netdef.cli import main

from conftest import ROOT
from solver_helpers import (Lines, one_thread, run_netdef, spawn_netdef, stopped_early_at,  # noqa: F401
                            write_solver, write_tiny_net)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    write_tiny_net(tmp_path)
    return tmp_path


def exploding(folder, **fields):
    """A solver whose rate blows the weights up within a few iterations (a snapshot every 2)."""
    values = dict(base_lr=1e6, lr_policy="fixed", max_iter=10, test_interval=0, snapshot=2, display=1)
    return write_solver(folder, **{**values, **fields})


def test_a_nan_loss_stops_the_run_naming_the_layer_and_keeps_the_last_good_snapshot(tiny):
    code, out, err = run_netdef("train", exploding(tiny))
    assert code == 2, err
    assert "training stopped: the loss of iteration 2 is nan" in err
    assert "the first layer whose output is not finite is 'ip2' (InnerProduct)" in err
    assert "base_lr" in err and "lr_policy" in err and "clip_gradients" in err
    assert "the last good snapshot is" in err and "tiny_iter_2.pt" in err
    assert sorted(p.name for p in (tiny / "snaps").iterdir()) == ["tiny_iter_2.pt"]  # no NaN weights, no temp
    assert "Traceback" not in err and "Optimization Done." not in out


def test_nan_policy_skip_skips_the_update_and_finishes(tiny):
    code, out, err = run_netdef("train", exploding(tiny, nan_policy="skip", max_iter=4, snapshot=0))
    assert code == 0, err
    assert "Iteration 2, loss = nan: not finite, update skipped (nan_policy: skip)" in out
    assert "Optimization Done." in out


def test_nan_policy_ignore_trains_on(tiny):
    code, out, err = run_netdef("train", exploding(tiny, nan_policy="ignore", max_iter=4, snapshot=0))
    assert code == 0, err
    assert "loss = nan" in out and "update skipped" not in out


def test_a_fresh_run_refuses_to_overwrite_snapshots_and_offers_a_resume(tiny):
    solver = write_solver(tiny, max_iter=2, test_interval=0)
    assert run_netdef("train", solver)[0] == 0
    before = (tiny / "snaps" / "tiny_iter_2.pt").stat().st_mtime_ns
    code, out, err = run_netdef("train", solver)
    assert code == 2 and "Iteration 0" not in out
    assert "snapshots of an earlier run are already there" in err
    assert f"--snapshot {tiny / 'snaps' / 'tiny_iter_2.pt'}" in err and "--overwrite" in err
    assert "snapshot_prefix" in err and (tiny / "snaps" / "tiny_iter_2.pt").stat().st_mtime_ns == before
    code, out, err = run_netdef("train", solver, "--overwrite")
    assert code == 0, err
    assert "--overwrite: 1 snapshot(s) of" in out
    code, out, err = run_netdef("train", solver, "--snapshot", tiny / "snaps" / "tiny_iter_2.pt")  # a resume
    assert code == 0, err


def test_net_on_the_command_line_names_the_snapshots_and_the_run_folder(tiny, monkeypatch):
    monkeypatch.chdir(tiny)
    write_tiny_net(tiny, "wide.yaml", hidden=32)
    solver = write_solver(tiny, max_iter=1, test_interval=0, log_dir=None)
    code, out, err = run_netdef("train", solver, "--net", "wide.yaml")
    assert code == 0, err
    assert f"--net: snapshots are {tiny / 'snaps' / 'wide'}_iter_<N>.pt" in out
    assert f"--net: run folder {tiny / 'runs' / 'wide'}" in out
    assert [p.name for p in (tiny / "snaps").iterdir()] == ["wide_iter_1.pt"]
    assert (tiny / "runs" / "wide" / "1" / "wide.yaml").is_file()
    assert run_netdef("train", solver)[0] == 0  # the solver's own net does not collide with it
    assert sorted(p.name for p in (tiny / "snaps").iterdir()) == ["tiny_iter_1.pt", "wide_iter_1.pt"]


def test_net_on_the_command_line_keeps_the_prefix_folder_of_a_solver_in_another_folder(tmp_path, monkeypatch):
    """`netdef train solvers/S.yaml --net nets/N.yaml` with `snapshot_prefix: ../snaps/x` (the shipped solvers'
    form): the snapshots go to snaps/N_iter_<N>.pt, as the log says, not to solvers/snaps/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "solvers").mkdir()
    write_tiny_net(tmp_path / "solvers", "tiny.yaml")
    write_tiny_net(tmp_path, "wide.yaml", hidden=32)
    write_solver(tmp_path / "solvers", max_iter=1, test_interval=0, log_dir=None, snapshot_prefix="../snaps/tiny")
    code, out, err = run_netdef("train", "solvers/solver.yaml", "--net", "wide.yaml")
    assert code == 0, err
    assert "--net: snapshots are snaps/wide_iter_<N>.pt" in out
    assert "Snapshotting to snaps/wide_iter_1.pt" in out
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == ["wide_iter_1.pt"]
    assert not (tmp_path / "solvers" / "snaps").exists()


def test_netdef_test_refuses_weights_that_leave_layers_at_their_fillers(tiny):
    import torch
    assert run_netdef("train", write_solver(tiny, max_iter=1, test_interval=0))[0] == 0
    write_tiny_net(tiny, "wide.yaml", hidden=32)
    test = ("test", "--iterations", 1, "--device", "cpu", "--weights")
    code, out, err = run_netdef(*test, tiny / "snaps" / "tiny_iter_1.pt", "--model", tiny / "wide.yaml")
    assert code == 2 and "Batch 0" not in out
    assert "2 layer(s) would be scored with their fillers: ip1, ip2" in err
    assert "3 blobs copied, 3 shape mismatches" in err and "--allow-partial" in err
    torch.save({"other.weight": torch.zeros(3)}, tiny / "other.pt")
    code, out, err = run_netdef(*test, tiny / "other.pt", "--model", tiny / "tiny.yaml")
    assert code == 2 and "none of its blobs fit the net" in err and "0 blobs copied" in err
    code, out, err = run_netdef(*test, tiny / "snaps" / "tiny_iter_1.pt", "--model", tiny / "wide.yaml",
                                "--allow-partial")
    assert code == 0, err
    assert "Not every blob of the net was in" in out and "Batch 0" in out


def test_training_removes_the_temporary_files_of_killed_snapshots(tiny):
    import os
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    snaps = tiny / "snaps"
    snaps.mkdir()
    orphan, live, other = (snaps / f".tiny_iter_4.pt.{dead}.tmp", snaps / f".tiny_iter_6.pt.{os.getppid()}.tmp",
                           snaps / f".other_iter_4.pt.{dead}.tmp")
    for path in (orphan, live, other):
        path.write_bytes(b"half a snapshot")
    code, out, err = run_netdef("train", write_solver(tiny, max_iter=1, test_interval=0))
    assert code == 0, err
    assert f"Removed {orphan}: the temporary file of a snapshot whose process was killed while writing it" in out
    assert not orphan.exists() and live.exists() and other.exists()  # a live process's, another prefix's


@pytest.mark.slow
def test_sigterm_snapshots_and_stops_as_sigint_does(tiny):
    child = spawn_netdef("train", write_solver(tiny, max_iter=100000, display=2, test_interval=0), cwd=tiny)
    lines = Lines(child)
    try:
        lines.wait_for(r"^Iteration 2 \(")
        child.send_signal(signal.SIGTERM)
        output = lines.rest()
    finally:
        child.kill()
    assert 2 < stopped_early_at(child, output, tiny / "snaps" / "tiny") < 100000


def _lenet_solver(tmp_path):
    net = (ROOT / "nets" / "lenet.yaml").read_text().replace("../data/mnist5k", str(ROOT / "data" / "mnist5k"))
    (tmp_path / "lenet.yaml").write_text(net)
    solver = tmp_path / "solver.yaml"
    solver.write_text("net: lenet.yaml\nbase_lr: 0.01\nmax_iter: 2\nlog_dir: runs\nsnapshot_prefix: snapshots/lenet\n")
    (tmp_path / "snapshots").mkdir()
    return solver


def test_a_second_run_on_the_same_prefix_refuses_to_start(tmp_path, capsys):
    solver = _lenet_solver(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "snapshots" / ".lenet.lock").write_text(str(holder.pid))
        assert main(["train", str(solver), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert f"another netdef train (process {holder.pid}) is writing snapshots to" in err
        assert not list((tmp_path / "snapshots").glob("*.pt"))
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over_and_released(tmp_path):
    solver = _lenet_solver(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "snapshots" / ".lenet.lock").write_text(str(dead.pid))
    assert main(["train", str(solver), "--device", "cpu"]) == 0
    assert (tmp_path / "snapshots" / "lenet_iter_2.pt").is_file()
    assert not (tmp_path / "snapshots" / ".lenet.lock").exists()


def train_with_a_full_disk_at(solver, snapshot_name: str) -> subprocess.CompletedProcess:
    """`netdef train SOLVER` in a child process whose snapshot named *snapshot_name* meets a file-size limit
    (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk); the other snapshots have room. The
    limit is set in a child so that it cannot touch anything else."""
    script = ("import resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "import netdef.cli, netdef.train.solver as s\n"
              "original = s.save_snapshot\n"
              "def limited(*args, **kwargs):\n"
              f"    size = 100_000 if {snapshot_name!r} in str(args[0]) else resource.RLIM_INFINITY\n"
              "    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))\n"
              "    return original(*args, **kwargs)\n"
              "s.save_snapshot = limited\n"
              f"sys.exit(netdef.cli.main(['train', {str(solver)!r}, '--device', 'cpu']))\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=solver.parent)


def test_a_full_disk_while_snapshotting_is_a_clean_error_that_keeps_the_last_snapshot(tmp_path, capsys):
    solver = _lenet_solver(tmp_path)
    solver.write_text(solver.read_text().replace("max_iter: 2", "max_iter: 4\nsnapshot: 2"))
    done = train_with_a_full_disk_at(solver, "_iter_4")
    assert done.returncode == 2, done.stderr
    assert "cannot write" in done.stderr and "lenet_iter_4.pt" in done.stderr and "Traceback" not in done.stderr
    assert "the last good snapshot" in done.stderr and "lenet_iter_2.pt, is kept" in done.stderr
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["lenet_iter_2.pt"]


def test_a_snapshot_taken_because_the_run_was_interrupted_says_so_and_the_run_lists_its_snapshots(tiny, capsys):
    """A stop requested during iteration 3 (as SIGINT's handler records it) of a run snapshotting every 2: the
    closing snapshot is marked as the interrupt's, in the file and in the log, and the run lists both."""
    from netdef.train.config import load_solver
    from netdef.train.solver import Solver
    from netdef.train.snapshot import ON_INTERRUPT, SCHEDULED, load_snapshot

    solver = Solver(load_solver(write_solver(tiny, max_iter=100, snapshot=2, display=0, test_interval=0)))
    advance = solver.log.advance

    def advance_then_interrupt(*args):
        advance(*args)
        if solver.iter == 3:
            solver.signals.pending.append("stop")
    solver.log.advance = advance_then_interrupt
    solver.solve()
    out = capsys.readouterr().out
    prefix = tiny / "snaps" / "tiny"
    assert [load_snapshot(f"{prefix}_iter_{n}.pt")["why"] for n in (2, 3)] == [SCHEDULED, ON_INTERRUPT]
    assert f"Snapshotting to {prefix}_iter_3.pt ({ON_INTERRUPT})" in out
    assert out.rstrip().endswith(f"Snapshots written by this run:\n    {prefix}_iter_2.pt ({SCHEDULED})\n"
                                 f"    {prefix}_iter_3.pt ({ON_INTERRUPT})\nOptimization stopped early.")


def test_snapshot_error_policy_continue_logs_a_failed_snapshot_and_trains_on(tmp_path):
    """The snapshot of iteration 2 meets a file-size limit (a full disk), that of iteration 4 does not: with
    snapshot_error_policy: continue the run logs the failure, trains on and ends with exit 0."""
    solver = _lenet_solver(tmp_path)
    solver.write_text(solver.read_text().replace("max_iter: 2", "max_iter: 4\nsnapshot: 2\n"
                                                 "snapshot_error_policy: continue"))
    done = train_with_a_full_disk_at(solver, "_iter_2")
    assert done.returncode == 0, done.stderr
    assert "cannot write" in done.stdout and "training goes on (snapshot_error_policy: continue)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["lenet_iter_4.pt"]


def test_resuming_an_older_snapshot_refuses_to_overwrite_later_ones(tiny, capsys):
    solver = write_solver(tiny, max_iter=6, snapshot=2, display=0, test_interval=0)
    assert main(["train", str(solver)]) == 0
    prefix = tiny / "snaps" / "tiny"
    newest = Path(f"{prefix}_iter_6.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", str(solver), "--snapshot", f"{prefix}_iter_2.pt"]) == 2
    err = capsys.readouterr().err
    assert f"resuming at iteration 2 would overwrite 2 later snapshot(s) of {prefix}, the newest {prefix}_iter_6.pt" \
        in err and f"--snapshot {prefix}_iter_6.pt" in err and "--overwrite" in err
    assert Path(f"{prefix}_iter_6.pt").read_bytes() == newest
    assert main(["train", str(solver), "--snapshot", f"{prefix}_iter_2.pt", "--overwrite"]) == 0
    assert "--overwrite: 2 snapshot(s) of" in capsys.readouterr().out
