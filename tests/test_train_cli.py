"""`netdef train` and `netdef test` from the command line: the run folder, fine-tuning, bad input."""
import re

import pytest
import torch

from solver_helpers import one_thread, run_netdef, snapshot_weights, write_solver, write_tiny_net  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    write_tiny_net(tmp_path)
    return tmp_path


def test_train_writes_snapshots_and_the_run_folder(tiny, monkeypatch):
    monkeypatch.chdir(tiny)
    code, out, err = run_netdef("train", write_solver(tiny, max_iter=4, snapshot=2, log_dir=None,
                                                      snapshot_prefix=None))
    assert code == 0, err
    assert sorted(p.name for p in tiny.glob("solver_iter_*.pt")) == ["solver_iter_2.pt", "solver_iter_4.pt"]
    run = tiny / "runs" / "solver" / "1"  # the default: runs/<solver stem>/<N> in the working folder
    assert (run / "tiny.yaml").read_text().startswith(f"# {tiny / 'tiny.yaml'} with its blocks expanded")
    assert list(run.glob("events.out.tfevents.*"))
    snapshot = torch.load(tiny / "solver_iter_4.pt", weights_only=True)
    assert snapshot["iteration"] == 4 and set(snapshot["weights"]) == {
        "conv1.weight", "conv1.bias", "ip1.weight", "ip1.bias", "ip2.weight", "ip2.bias"}
    assert snapshot["config"]["seed"] == 7 and "tiny.yaml" in snapshot["config"]["nets"]
    assert {"torch", "cuda"} <= set(snapshot["rng"]) and "mnist" in snapshot["readers"]["train"]


def test_same_seed_same_weights_other_seed_other_weights(tiny):
    weights = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code, _, err = run_netdef("train", write_solver(tiny, f"{name}.yaml", max_iter=3, random_seed=seed,
                                                        snapshot_prefix=f"{name}/tiny", test_interval=0))
        assert code == 0, err
        weights.append(snapshot_weights(tiny / name / "tiny_iter_3.pt")["ip1.weight"])
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_unwritable_snapshot_folder_fails_before_iteration_0(tiny):
    (tiny / "blocked").write_text("a file where the snapshot folder should be")
    code, out, err = run_netdef("train", write_solver(tiny, snapshot_prefix="blocked/tiny"))
    assert code == 2
    assert re.search(r"solver\.yaml:\d+:\d+: cannot write snapshots to '.*blocked'", err)
    assert "Iteration 0" not in out and "Traceback" not in err


def test_fine_tuning_prints_the_table_and_copies_what_fits(tiny):
    code, _, err = run_netdef("train", write_solver(tiny, max_iter=2, test_interval=0))
    assert code == 0, err
    trained = snapshot_weights(tiny / "snaps" / "tiny_iter_2.pt")
    write_tiny_net(tiny, "wide.yaml", hidden=32)
    solver = write_solver(tiny, "tune.yaml", net="wide.yaml", max_iter=1, base_lr=0.0, snapshot_prefix="tune/wide",
                          test_interval=0)
    code, out, err = run_netdef("train", solver, "--weights", tiny / "snaps" / "tiny_iter_2.pt")
    assert code == 0, err
    table = out[out.index("Copying weights from"):]
    rows = {tuple(line.split()[:3]) for line in table.splitlines()[2:8]}
    assert rows == {("conv1", "weight", "copied"), ("conv1", "bias", "copied"), ("ip1", "weight", "shape"),
                    ("ip1", "bias", "shape"), ("ip2", "weight", "shape"), ("ip2", "bias", "copied")}
    assert "3 blobs copied, 3 shape mismatches, 0 missing in the file, 0 in the file but not in this net" in out
    tuned = snapshot_weights(tiny / "tune" / "wide_iter_1.pt")  # base_lr 0: the copied blobs did not move
    assert torch.equal(tuned["conv1.weight"], trained["conv1.weight"])
    assert tuned["ip1.weight"].shape == (32, 144)


def test_snapshot_and_weights_exclude_each_other(tiny):
    code, _, err = run_netdef("train", write_solver(tiny), "--snapshot", "a.pt", "--weights", "b.pt")
    assert code == 2 and "not allowed with argument" in err


@pytest.mark.parametrize("fields, message", [
    ({"device": "cuda:7"}, "device 'cuda:7' is not available"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"net": "missing.yaml"}, "no such file"),
])
def test_bad_solver_input_exits_2_without_a_traceback(tiny, fields, message):
    code, _, err = run_netdef("train", write_solver(tiny, **fields))
    assert code == 2 and message in err and "Traceback" not in err


def test_test_command_prints_each_batch_and_the_means(tiny):
    code, _, err = run_netdef("train", write_solver(tiny, max_iter=6, test_interval=0))
    assert code == 0, err
    code, out, err = run_netdef("test", "--model", tiny / "tiny.yaml", "--weights", tiny / "snaps" / "tiny_iter_6.pt",
                                "--iterations", 3, "--device", "cpu")
    assert code == 0, err
    accuracy = [float(x) for x in re.findall(r"^Batch \d, accuracy = (\S+)$", out, re.M)]
    loss = [float(x) for x in re.findall(r"^Batch \d, loss = (\S+)$", out, re.M)]
    assert len(accuracy) == len(loss) == 3
    mean_loss = sum(loss) / 3
    assert float(re.search(r"^Loss: (\S+)$", out, re.M).group(1)) == pytest.approx(mean_loss, rel=1e-4)
    assert float(re.search(r"^accuracy = (\S+)$", out, re.M).group(1)) == pytest.approx(sum(accuracy) / 3, rel=1e-4)
    assert re.search(rf"^loss = \S+ \(\* 1 = \S+ loss\)$", out, re.M)
    assert "Not every blob" not in out


def test_test_command_warns_about_blobs_the_weights_file_lacks(tiny):
    torch.save({"conv1.weight": torch.zeros(4, 1, 5, 5)}, tiny / "partial.pt")
    code, out, err = run_netdef("test", "--model", tiny / "tiny.yaml", "--weights", tiny / "partial.pt",
                                "--iterations", 1, "--device", "cpu", "--allow-partial")
    assert code == 0, err
    assert "Not every blob of the net was in" in out and "missing in the file" in out
