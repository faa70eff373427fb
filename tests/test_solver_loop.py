"""The training loop (netdef/train/solver.py) run from real solver files: Caffe's log lines, TensorBoard events,
iter_size, every solver type and lr policy, test nets and the run folder."""
import fcntl
import math
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from netdef.train.lr_policy import learning_rate
from netdef.train.config import SOLVER_TYPES, load_solver
from solver_helpers import one_thread, run_netdef, snapshot_weights, write_solver, write_tiny_net  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

NUMBER = r"[-+\d.eE]+|nan|inf"


@pytest.fixture
def tiny(tmp_path):
    write_tiny_net(tmp_path)
    return tmp_path


def test_log_lines_follow_caffe(tiny):
    code, out, err = run_netdef("train", write_solver(tiny, max_iter=10, display=5, test_interval=5))
    assert code == 0, err
    lines = out.splitlines()
    setup = [line.split("] ", 1)[1] for line in (tiny / "runs" / "1" / "train.log").read_text().splitlines()]
    assert "Top shape: 16 1 28 28 (12544)" in setup and "Top shape: 16 4 12 12 (9216)" in setup
    assert "Top shape: (1)" in setup and "    with loss weight 1" in setup
    assert any(re.fullmatch(r"Memory required for data: \d+", line) for line in setup)
    assert not any(line.startswith(("Setting up", "Top shape", "Memory required")) for line in lines)
    assert any(re.fullmatch(r"Training net \S+ \(TRAIN\): \d+ layers, [\d,]+ parameters, activations .+ per batch, "
                            r"from .*tiny.yaml", line) for line in lines)
    assert f"Per-layer set-up (Caffe's Setting up / Top shape lines): {tiny / 'runs' / '1' / 'train.log'}" in lines
    assert "Learning Rate Policy: inv" in lines
    expected_order = [
        r"Iteration 0, Testing net \(#0\)",
        rf"    Test net output #0: accuracy = ({NUMBER})",
        rf"    Test net output #1: loss = ({NUMBER}) \(\* 1 = ({NUMBER}) loss\)",
        rf"Iteration 0 \(0 iter/s, ({NUMBER})s/5 iters\), loss = ({NUMBER})",
        rf"    Train net output #0: loss = ({NUMBER}) \(\* 1 = ({NUMBER}) loss\)",
        r"Iteration 0, lr = 0.01",
        rf"Iteration 5, Testing net \(#0\)",
    ]
    start = lines.index("Iteration 0, Testing net (#0)")
    for pattern, line in zip(expected_order, lines[start:]):
        assert re.fullmatch(pattern, line), (pattern, line)
    rate_5 = next(line for line in lines if line.startswith("Iteration 5, lr = "))
    assert float(rate_5.split(" = ")[1]) == pytest.approx(learning_rate(load_solver(tiny / "solver.yaml"), 5),
                                                          rel=1e-5)
    assert re.search(rf"Iteration 5 \(({NUMBER}) iter/s, ({NUMBER})s/5 iters\), loss = ({NUMBER})", out)
    assert lines[-1] == "Optimization Done."
    assert "Snapshotting to " + str(tiny / "snaps" / "tiny_iter_10.pt") in lines
    assert re.search(rf"Iteration 10, loss = ({NUMBER})\nIteration 10, Testing net", out)


def test_displayed_loss_is_the_mean_over_average_loss_iterations(tiny):
    code, out, err = run_netdef("train", write_solver(tiny, max_iter=6, display=1, average_loss=3, test_interval=0))
    assert code == 0, err
    smoothed = [float(x) for x in re.findall(rf"Iteration \d+ \(.*\), loss = ({NUMBER})", out)]
    batch = [float(x) for x in re.findall(rf"Train net output #0: loss = ({NUMBER})", out)]
    for i in range(6):
        window = batch[max(0, i - 2):i + 1]
        assert smoothed[i] == pytest.approx(sum(window) / len(window), rel=1e-4)


def test_tensorboard_events_hold_loss_lr_rate_and_every_test_output(tiny):
    code, _, err = run_netdef("train", write_solver(tiny, max_iter=10, display=5, test_interval=5))
    assert code == 0, err
    runs = tiny / "runs" / "1"  # log_dir: runs, this solver's first run
    assert {"solver.yaml", "tiny.yaml"} <= {p.name for p in runs.iterdir()}
    assert "random_seed: 7" in (runs / "solver.yaml").read_text()
    events = EventAccumulator(str(runs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/iters_per_second", "test/accuracy", "test/loss"} <= tags
    assert [e.step for e in events.Scalars("test/accuracy")] == [0, 5, 10]
    assert [e.step for e in events.Scalars("train/lr")] == [0, 5]
    assert events.Scalars("train/lr")[0].value == pytest.approx(0.01)
    assert all(0 <= e.value <= 1 for e in events.Scalars("test/accuracy"))


def test_iter_size_accumulates_gradients_like_one_larger_batch(tmp_path):
    """Caffe: gradients of iter_size passes add up and are divided by iter_size. With the same seed the
    first 16 shuffled samples are served either as one batch of 16 or as two of 8."""
    weights = []
    for name, batch, iter_size in (("big", 16, 1), ("accumulated", 8, 2)):
        folder = tmp_path / name
        folder.mkdir()
        write_tiny_net(folder, batch=batch)
        # dropout draws differ between one batch and two, so compare a net whose dropout is 0
        net = folder / "tiny.yaml"
        net.write_text(net.read_text().replace("dropout_ratio: 0.2", "dropout_ratio: 0.0"))
        code, _, err = run_netdef("train", write_solver(folder, max_iter=1, iter_size=iter_size, test_interval=0))
        assert code == 0, err
        weights.append(snapshot_weights(folder / "snaps" / "tiny_iter_1.pt"))
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-5, atol=1e-7)


SOLVER_SETTINGS = {"SGD": {}, "Nesterov": {}, "AdaGrad": {"momentum": 0}, "RMSProp": {"momentum": 0},
                   "AdaDelta": {"base_lr": 1.0, "momentum": 0.95, "delta": 1e-6},
                   "Adam": {"base_lr": 0.001, "lr_policy": "fixed"}}
POLICIES = {"fixed": {}, "step": {"gamma": 0.5, "stepsize": 2}, "exp": {"gamma": 0.9},
            "inv": {"gamma": 1e-4, "power": 0.75}, "multistep": {"gamma": 0.5, "stepvalue": [2, 3]},
            "poly": {"power": 2.0}, "sigmoid": {"gamma": -0.5, "stepsize": 2}}


@pytest.mark.parametrize("solver_type", SOLVER_TYPES)
def test_every_solver_type_trains_from_a_solver_file(tiny, solver_type):
    settings = {"type": solver_type, "max_iter": 4, "display": 1, "test_interval": 4, **SOLVER_SETTINGS[solver_type]}
    code, out, err = run_netdef("train", write_solver(tiny, **settings))
    assert code == 0, err
    losses = [float(x) for x in re.findall(rf"Train net output #0: loss = ({NUMBER})", out)]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    initial = snapshot_weights(tiny / "snaps" / "tiny_iter_4.pt")
    assert all(torch.isfinite(t).all() for t in initial.values())


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_lr_policy_sets_the_logged_rates(tiny, policy):
    solver = write_solver(tiny, lr_policy=policy, max_iter=5, display=1, test_interval=0,
                          **{"gamma": None, "power": None, **POLICIES[policy]})
    code, out, err = run_netdef("train", solver)
    assert code == 0, err
    logged = [float(x) for x in re.findall(rf"Iteration \d+, lr = ({NUMBER})", out)]
    config = load_solver(solver)
    assert logged == pytest.approx([learning_rate(config, i) for i in range(5)], rel=1e-5)


def test_test_nets_from_test_net_files_share_the_trained_weights(tiny):
    write_tiny_net(tiny, name="other_test.yaml")
    solver = write_solver(tiny, net=None, train_net="tiny.yaml", test_net=["tiny.yaml", "other_test.yaml"],
                          test_iter=[2, 1], max_iter=3, test_interval=3, test_initialization=False)
    code, out, err = run_netdef("train", solver)
    assert code == 0, err
    assert "Iteration 0, Testing net" not in out
    first = re.search(rf"Iteration 3, Testing net \(#0\)\n    Test net output #0: accuracy = ({NUMBER})", out)
    second = re.search(rf"Iteration 3, Testing net \(#1\)\n    Test net output #0: accuracy = ({NUMBER})", out)
    assert first and second
    # #1 scores the first 50 digits of the same weights, #0 the first 100: the same data and weights give
    # the same first batch, so both nets really share the trained weights
    events = EventAccumulator(str(tiny / "runs" / "1"))
    events.Reload()
    assert {"test/accuracy", "test1/accuracy"} <= set(events.Tags()["scalars"])


def test_test_iter_must_match_the_test_nets(tiny):
    solver = write_solver(tiny, net=None, train_net="tiny.yaml", test_net=["tiny.yaml"], test_iter=[2, 2])
    code, _, err = run_netdef("train", solver)
    assert code == 2 and "give one 'test_iter' per test net" in err and "solver.yaml:" in err


def test_without_a_terminal_progress_lines_and_the_test_pass_length_are_printed(tiny):
    code, out, err = run_netdef("train", write_solver(tiny, max_iter=20, display=5, test_interval=10, test_iter=12))
    assert code == 0, err
    progress = re.findall(rf"^Progress: (\d+)/20 iterations \((\d+)%\), ({NUMBER}) iter/s, ETA (\d\d:\d\d)$", out, re.M)
    assert [(int(n), int(pct)) for n, pct, _, _ in progress] == [(5, 25), (10, 50), (15, 75)]
    assert all(float(rate) > 0 for _, _, rate, _ in progress)
    estimates = re.findall(rf"^Test net #0: about ({NUMBER}) s for 12 batches \(test_iter\)$", out, re.M)
    assert len(estimates) == 1 and float(estimates[0]) > 0  # once a run, in the first pass (of three)
    lines = out.splitlines()
    assert lines[lines.index("Iteration 0, Testing net (#0)") + 1].startswith("Test net #0: about ")
    log = (tiny / "runs" / "1" / "train.log").read_text()
    assert "Progress: " not in log and "] Test net #0: about " in log  # the log file's lines carry their times


def test_on_a_terminal_bars_replace_the_progress_lines(tiny):
    solver = write_solver(tiny, max_iter=20, display=5, test_interval=10, test_iter=12)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm draws in its width
    child = subprocess.Popen([sys.executable, "-m", "netdef", "train", str(solver)], cwd=tiny, stdout=follower,
                             stderr=follower, env=dict(os.environ, OMP_NUM_THREADS="1"))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert child.wait(timeout=120) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "Progress: " not in screen and "Top shape: " not in screen
    assert re.search(r"test #0: +\d+%.*\| \d+/12 ", screen) and re.search(r"\| \d+/20 \[", screen)  # both bars
    assert "Test net #0: about " in screen and "Optimization Done." in screen
