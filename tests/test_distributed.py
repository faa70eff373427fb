"""Data-parallel training on real processes (gloo on the CPU): 2 ranks at batch 32 against 1 process at
batch 64 on LeNet, resumes across process counts, and a rank that dies or hangs."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from solver_helpers import MNIST5K, REPO

LENET = (REPO / "nets" / "lenet.yaml").read_text(encoding="utf-8").replace("../data/mnist5k", str(MNIST5K))
AUGMENTED = "transform_param: {scale: 0.00390625, pad: 2, crop_size: 28, mirror: true}"

SOLVER = """\
net: {net}
test_iter: 2
test_interval: 20
base_lr: 0.01
momentum: 0.9
weight_decay: 5e-4
lr_policy: inv
gamma: 1e-4
power: 0.75
display: 20
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: {name}/lenet
log_dir: {name}_run
random_seed: 5
device: cpu
{extra}
"""


def lenet(folder, batch: int, test_batch: int, *, augmented=False):
    """LeNet on the bundled digits at TRAIN batch `batch`, TEST batch `test_batch` (per process)."""
    text = LENET.replace("batch_size: 64", f"batch_size: {batch}").replace("batch_size: 100",
                                                                           f"batch_size: {test_batch}")
    if augmented:
        text = text.replace("transform_param: {scale: 0.00390625}", AUGMENTED, 1)  # the TRAIN layer's
    path = folder / f"lenet_{batch}{'_aug' if augmented else ''}.yaml"
    path.write_text(text, encoding="utf-8")
    return path.name


def solver(folder, name: str, net: str, max_iter=40, extra="", snapshot=20):
    path = folder / f"{name}.yaml"
    path.write_text(SOLVER.format(net=net, name=name, max_iter=max_iter, extra=extra, snapshot=snapshot),
                    encoding="utf-8")
    return path


def environment(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run_train(folder, *args, nproc=1, timeout=240):
    """`netdef train ARGS` as real processes: one, or `nproc` through --nproc (torchrun)."""
    command = [sys.executable, "-m", "netdef", "train", *map(str, args)] + (["--nproc", str(nproc)] if nproc > 1 else [])
    return subprocess.run(command, cwd=folder, env=environment(), capture_output=True, text=True, timeout=timeout)


def train(folder, *args, nproc=1, timeout=240):
    result = run_train(folder, *args, nproc=nproc, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_nproc_with_bad_input_is_one_clean_error_before_any_rank_starts(tmp_path):
    net = tmp_path / lenet(tmp_path, 32, 50)
    net.write_text(net.read_text().replace("num_output: 20", "num_outputs: 20"))
    result = run_train(tmp_path, solver(tmp_path, "bad", net.name), nproc=2)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
    assert result.stderr.count("did you mean 'num_output'?") == 1, result.stderr
    # --net replaces the solver's net: the broken one is not the one trained, so it is not refused
    train(tmp_path, solver(tmp_path, "bad", net.name, max_iter=2), "--net", lenet(tmp_path, 16, 50), nproc=2)


def test_nproc_rank_failure_is_the_ranks_status_and_a_line_per_rank_not_torchruns_traceback(tmp_path):
    good = solver(tmp_path, "good", lenet(tmp_path, 32, 50))
    missing = run_train(tmp_path, good, "--snapshot", "no_such_snapshot.pt", nproc=2)
    assert missing.returncode == 2 and missing.stderr.count("no such snapshot file: no_such_snapshot.pt") == 1
    assert "netdef: rank" not in missing.stderr  # refused before any rank started
    (tmp_path / "not_a_snapshot.pt").write_bytes(b"not a torch.save archive")
    result = run_train(tmp_path, good, "--snapshot", "not_a_snapshot.pt", nproc=2)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
    assert "not_a_snapshot.pt is not a file written by torch.save" in result.stderr
    assert "netdef: rank 0 exited with status 2" in result.stderr and "netdef: rank 1 exited with status 2" in result.stderr


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["weights"]


def assert_same_weights(a, b, tolerance=1e-5):
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key], second[key], atol=tolerance, rtol=0), \
            f"{key}: {(first[key] - second[key]).abs().max().item()}"


def accuracies(log: str) -> list:
    return re.findall(r"Test net output #0: accuracy = (\S+)", log)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """LeNet for 40 iterations (snapshots at 20 and 40) on 1 process at batch 64 and on 2 at batch 32."""
    folder = tmp_path_factory.mktemp("ddp")
    one = train(folder, solver(folder, "one", lenet(folder, 64, 100)))
    two = train(folder, solver(folder, "two", lenet(folder, 32, 50)), nproc=2)
    return folder, one, two


def test_two_ranks_at_batch_32_train_as_one_process_at_batch_64(runs):
    folder, one, two = runs
    assert_same_weights(folder / "one" / "lenet_iter_40.pt", folder / "two" / "lenet_iter_40.pt")
    assert len(accuracies(one)) == 3 and accuracies(one) == accuracies(two)  # at 0, 20 and 40
    losses = [re.findall(r"Iteration \d+ \(.*\), loss = (\S+)", log) for log in (one, two)]
    assert [float(x) for x in losses[0]] == pytest.approx([float(x) for x in losses[1]], abs=1e-5)


def test_only_rank_0_logs_and_writes_snapshots_and_events(runs):
    folder, one, two = runs
    assert sorted(p.name for p in (folder / "two").iterdir()) == ["lenet_iter_20.pt", "lenet_iter_40.pt"]
    assert len(list((folder / "two_run").rglob("events.out.tfevents.*"))) == 1
    assert two.count("Optimization Done.") == 1 and two.count("Solving ") == 1


def test_a_two_process_snapshot_resumes_on_one_process_and_back(runs):
    folder, one, two = runs
    train(folder, solver(folder, "two_on_one", lenet(folder, 64, 100)), "--snapshot", folder / "two" / "lenet_iter_20.pt")
    assert_same_weights(folder / "two_on_one" / "lenet_iter_40.pt", folder / "one" / "lenet_iter_40.pt")
    train(folder, solver(folder, "one_on_two", lenet(folder, 32, 50)), "--snapshot", folder / "one" / "lenet_iter_20.pt",
          nproc=2)
    assert_same_weights(folder / "one_on_two" / "lenet_iter_40.pt", folder / "two" / "lenet_iter_40.pt")


def test_augmentation_iter_size_and_clipping_do_not_depend_on_the_split(tmp_path):
    """Random crops and mirrors drawn for the whole batch, iter_size's passes summed locally before one
    all-reduce, clip_gradients on the global norm of the averaged gradients."""
    extra = "iter_size: 2\nclip_gradients: 0.5"
    train(tmp_path, solver(tmp_path, "one", lenet(tmp_path, 64, 100, augmented=True), max_iter=10, extra=extra))
    train(tmp_path, solver(tmp_path, "two", lenet(tmp_path, 32, 50, augmented=True), max_iter=10, extra=extra),
          nproc=2)
    assert_same_weights(tmp_path / "one" / "lenet_iter_10.pt", tmp_path / "two" / "lenet_iter_10.pt")


def lenet_with_batch_norm(folder, batch: int, test_batch: int):
    """LeNet with Caffe's BatchNorm after its first convolution (in place, as Caffe nets write it)."""
    path = folder / lenet(folder, batch, test_batch)
    text = path.read_text(encoding="utf-8")
    norm = "  - {name: bn1, type: BatchNorm, bottom: conv1, top: conv1}\n"
    path.write_text(text.replace("  - name: pool1\n", norm + "  - name: pool1\n", 1), encoding="utf-8")
    return path.name


def test_sync_bn_normalises_over_all_ranks_as_one_process_over_the_whole_batch(tmp_path):
    """With sync_bn two ranks at batch 32 update the weights and BatchNorm's running statistics as one
    process at batch 64 (within 1e-5 after one update; a weight gradient through batch normalisation
    is ill-conditioned, so float differences of the reduction order grow over later updates); without
    it each rank normalises its own half and they part at once (differences near 1e-4)."""
    train(tmp_path, solver(tmp_path, "one", lenet_with_batch_norm(tmp_path, 64, 100), max_iter=1))
    for name, extra in [("synced", "sync_bn: true"), ("apart", "")]:
        train(tmp_path, solver(tmp_path, name, lenet_with_batch_norm(tmp_path, 32, 50), max_iter=1, extra=extra),
              nproc=2)
    alone = tmp_path / "one" / "lenet_iter_1.pt"
    assert "bn1.mean" in weights(alone)
    assert_same_weights(alone, tmp_path / "synced" / "lenet_iter_1.pt")
    with pytest.raises(AssertionError, match="conv1.weight"):
        assert_same_weights(alone, tmp_path / "apart" / "lenet_iter_1.pt")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(folder, solver_path, timeout_s):
    """Two ranks started as torchrun would (RANK, WORLD_SIZE, MASTER_ADDR...), without its agent, which
    would kill the survivor itself."""
    port = str(free_port())
    return [subprocess.Popen([sys.executable, "-m", "netdef", "train", str(solver_path), "--collective-timeout",
                              str(timeout_s)], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                                             MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
            for rank in range(2)]


def wait_for_training(rank0, pattern="Iteration 20, lr"):
    """Read rank 0's output until training is under way."""
    deadline = time.monotonic() + 120
    for line in rank0.stdout:
        if pattern in line or time.monotonic() > deadline:
            return
    raise AssertionError("rank 0 ended before training started: " + rank0.stderr.read())


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_rank_that_dies_or_hangs_stops_the_other_which_names_it(tmp_path, how):
    timeout_s = 5
    path = solver(tmp_path, "long", lenet(tmp_path, 32, 50), max_iter=100000)
    rank0, rank1 = start_ranks(tmp_path, path, timeout_s)
    try:
        wait_for_training(rank0)
        rank1.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        started = time.monotonic()
        _, err = rank0.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        for process in (rank0, rank1):
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert rank0.returncode == 2, err
    assert "rank 1 of 2 stopped answering" in err and "Traceback" not in err
    assert took < timeout_s + 10  # the collective timeout, the survivors' grace and the exit


def test_a_signal_to_one_rank_acts_on_every_rank_at_the_same_iteration(tmp_path):
    """SIGHUP to rank 1 alone: rank 0 writes the snapshot, both train on; SIGINT to rank 0 alone: both stop
    after the closing snapshot, exit 0, and no rank hangs."""
    path = solver(tmp_path, "signals", lenet(tmp_path, 32, 50), max_iter=100000, snapshot=0)
    rank0, rank1 = start_ranks(tmp_path, path, 60)
    try:
        wait_for_training(rank0)
        rank1.send_signal(signal.SIGHUP)
        wait_for_training(rank0, "(requested by a signal)")
        wait_for_training(rank0, ", lr = ")  # trains on after it
        rank0.send_signal(signal.SIGINT)
        out, err = rank0.communicate(timeout=60)
        rank1.communicate(timeout=30)
    finally:
        for process in (rank0, rank1):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert rank0.returncode == 0 and rank1.returncode == 0, err
    assert "Optimization stopped early." in out
    written = sorted(p.name for p in (tmp_path / "signals").iterdir())
    assert len(written) == 2, written  # the signal's and the closing snapshot, by rank 0 alone


def choose_threads_in_a_fresh_process(**environ) -> dict:
    """netdef.train.threads.choose_threads() in a process where torch is not loaded yet, as in `netdef train`."""
    code = ("import json, os; from netdef.train.threads import choose_threads; env = dict(json.loads(os.environ['ENV']));"
            "note = choose_threads(env); print(json.dumps({'note': note, 'env': env}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "ENV": json.dumps(environ)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_rank_takes_its_share_of_the_free_cores_and_a_given_thread_count_wins():
    cores = len(os.sched_getaffinity(0))
    ranks = choose_threads_in_a_fresh_process(LOCAL_WORLD_SIZE=str(cores))
    assert ranks["env"]["OMP_NUM_THREADS"] == "1" and ranks["note"].startswith("Threads: 1 CPU thread")
    alone = choose_threads_in_a_fresh_process()
    free = max(0.0, cores - os.getloadavg()[0])
    assert 1 <= int(alone["env"]["OMP_NUM_THREADS"]) <= max(1, round(free) + 1)  # the load moves meanwhile
    given = choose_threads_in_a_fresh_process(OMP_NUM_THREADS="3", OMP_WAIT_POLICY="ACTIVE")
    assert given == {"note": None, "env": {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}}
    threads_given = choose_threads_in_a_fresh_process(OMP_NUM_THREADS="3")["note"]
    assert threads_given is None or "OMP_NUM_THREADS" not in threads_given  # no advice to set what is set
