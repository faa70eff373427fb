"""Exact resume: a run snapshotted at N and resumed to 2N ends bitwise where a straight run ends; a run
killed with SIGKILL resumes from its last snapshot; SIGHUP snapshots and goes on, SIGINT snapshots and
stops; changed configurations are reported on resume."""
import re
import signal
import time

import pytest
import torch

from solver_helpers import (AUGMENTED, Lines, one_thread, run_netdef, snapshot_weights, spawn_netdef,  # noqa: F401
                            stopped_early_at, write_solver, write_tiny_net)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    # random crops, flips and dropout: the resume must restore every generator, not only the weights
    write_tiny_net(tmp_path, train_transform=AUGMENTED)
    return tmp_path


def assert_same_state(a, b):
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert first["iteration"] == second["iteration"]
    for key, tensor in first["weights"].items():
        assert torch.equal(tensor, second["weights"][key]), key
    for set_name, tensors in first["updater"]["history"].items():
        for key, tensor in tensors.items():
            assert torch.equal(tensor, second["updater"]["history"][set_name][key]), (set_name, key)
    assert first["readers"]["train"]["mnist"]["position"] == second["readers"]["train"]["mnist"]["position"]


def test_resume_to_2n_is_bitwise_equal_to_a_straight_run(tiny):
    common = {"display": 3, "test_interval": 4, "average_loss": 3}
    code, straight, err = run_netdef("train", write_solver(tiny, "straight.yaml", max_iter=12, snapshot=6,
                                                           snapshot_prefix="straight/tiny", **common))
    assert code == 0, err
    code, _, err = run_netdef("train", write_solver(tiny, "split.yaml", max_iter=6, snapshot_prefix="split/tiny",
                                                    **common))
    assert code == 0, err
    assert_same_state(tiny / "straight" / "tiny_iter_6.pt", tiny / "split" / "tiny_iter_6.pt")
    write_solver(tiny, "split.yaml", max_iter=12, snapshot_prefix="split/tiny", **common)
    code, out, err = run_netdef("train", tiny / "split.yaml", "--snapshot", tiny / "split" / "tiny_iter_6.pt")
    assert code == 0, err
    assert "    max_iter: 6 in the snapshot, 12 now" in out
    # the smoothed loss continues too: its window is in the snapshot
    smoothed = re.compile(r"Iteration (\d+) \(.*\), loss = (\S+)")
    assert smoothed.findall(out) == [row for row in smoothed.findall(straight) if int(row[0]) >= 6]
    assert_same_state(tiny / "straight" / "tiny_iter_12.pt", tiny / "split" / "tiny_iter_12.pt")


def test_resume_reports_changed_fields_and_uses_the_current_ones(tiny):
    code, _, err = run_netdef("train", write_solver(tiny, max_iter=4, display=1, test_interval=0))
    assert code == 0, err
    solver = write_solver(tiny, max_iter=6, display=1, test_interval=0, base_lr=0.02, type="Adam",
                          lr_policy="fixed")
    code, out, err = run_netdef("train", solver, "--snapshot", tiny / "snaps" / "tiny_iter_4.pt")
    assert code == 0, err
    assert "The current configuration differs from the snapshot's:" in out
    for line in ("base_lr: 0.01 in the snapshot, 0.02 now", "type: SGD in the snapshot, Adam now",
                 "lr_policy: inv in the snapshot, fixed now", "max_iter: 4 in the snapshot, 6 now"):
        assert "    " + line in out
    assert "Using the current configuration" in out
    assert "Solver history not restored: type SGD in the snapshot, Adam now" in out
    assert "Iteration 4, lr = 0.02" in out


def test_resume_into_a_changed_net_is_refused_with_the_table(tiny):
    code, _, err = run_netdef("train", write_solver(tiny, max_iter=2, test_interval=0))
    assert code == 0, err
    write_tiny_net(tiny, hidden=8, train_transform=AUGMENTED)
    code, out, err = run_netdef("train", tiny / "solver.yaml", "--snapshot", tiny / "snaps" / "tiny_iter_2.pt")
    assert code == 2
    assert "do not fit the current net" in err and "shape mismatch" in err and "use --weights instead" in err
    assert "    net tiny.yaml differs (blocks expanded):" in out
    assert "        -    num_output: 16" in out and "        +    num_output: 8" in out


@pytest.mark.slow
def test_sighup_snapshots_and_goes_on_sigint_snapshots_and_stops(tiny):
    solver = write_solver(tiny, max_iter=100000, display=2, test_interval=0)
    child = spawn_netdef("train", solver, cwd=tiny)
    lines = Lines(child)
    try:
        lines.wait_for(r"^Iteration 2 \(")
        child.send_signal(signal.SIGHUP)
        hup = int(re.search(r"_iter_(\d+)\.pt \(requested by a signal\)$",
                            lines.wait_for(r"^Snapshotting to .*_iter_(\d+)\.pt")).group(1))
        lines.wait_for(rf"^Iteration {hup + (2 - hup % 2)} \(")  # still training after the snapshot
        child.send_signal(signal.SIGINT)
        output = lines.rest()
    finally:
        child.kill()
    stopped = stopped_early_at(child, output, tiny / "snaps" / "tiny")
    assert hup < stopped < 100000
    assert torch.load(tiny / "snaps" / f"tiny_iter_{hup}.pt", weights_only=True)["iteration"] == hup


@pytest.mark.slow
def test_a_sigkilled_run_resumes_from_its_last_snapshot_exactly(tiny):
    child = spawn_netdef("train", write_solver(tiny, "killed.yaml", max_iter=100000, snapshot=3, display=0,
                                               test_interval=5, snapshot_prefix="killed/tiny"), cwd=tiny)
    lines = Lines(child)
    try:
        lines.wait_for(r"^Snapshotting to .*_iter_9\.pt")
        deadline = time.monotonic() + 60
        while not (tiny / "killed" / "tiny_iter_9.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    done = sorted(int(p.stem.rsplit("_", 1)[1]) for p in (tiny / "killed").glob("tiny_iter_*.pt"))
    last = done[-1]
    assert last >= 9 and done == list(range(3, last + 1, 3))
    target = last + 4
    write_solver(tiny, "killed.yaml", max_iter=target, snapshot=3, display=0, test_interval=5,
                 snapshot_prefix="killed/tiny")
    code, out, err = run_netdef("train", tiny / "killed.yaml", "--snapshot", tiny / "killed" / f"tiny_iter_{last}.pt")
    assert code == 0, err
    code, _, err = run_netdef("train", write_solver(tiny, "straight.yaml", max_iter=target, snapshot=3, display=0,
                                                    test_interval=5, snapshot_prefix="straight/tiny"))
    assert code == 0, err
    assert_same_state(tiny / "straight" / f"tiny_iter_{target}.pt", tiny / "killed" / f"tiny_iter_{target}.pt")
