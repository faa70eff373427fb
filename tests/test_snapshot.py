"""Snapshot files (netdef/snapshot.py): Caffe's prefix rules, atomic writes, safe loading, the fine-tune
table and the configuration differences a resume reports."""
import pytest
import torch

import netdef
from netdef.build import module_name
from netdef.train.snapshot import (check_writable, config_differences, copy_weights, load_snapshot, load_weights,
                             save_atomic, snapshot_path, snapshot_prefix, weights_table)
from netdef.train.config import load_solver
from solver_helpers import write_solver, write_tiny_net


@pytest.mark.parametrize("written, expected", [
    (None, "solver"),                       # unset: the solver file without its extension
    ("snaps/tiny", "snaps/tiny"),          # relative to the solver file
    ("out/", "out/solver"),                # a folder: <folder>/<solver stem>
    ("existing", "existing/solver"),       # an existing folder, without a slash
])
def test_snapshot_prefix_follows_caffe(tmp_path, written, expected):
    (tmp_path / "existing").mkdir()
    config = load_solver(write_solver(tmp_path, snapshot_prefix=written))
    prefix = snapshot_prefix(config)
    assert prefix == tmp_path / expected
    assert snapshot_path(prefix, 500).name == f"{(tmp_path / expected).name}_iter_500.pt"


class Note:
    pass


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated by an object that cannot be written)")


def test_a_failing_write_keeps_the_previous_snapshot_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "net_iter_10.pt"
    save_atomic({"weights": {"w": torch.ones(3)}}, path)
    good = path.read_bytes()
    with pytest.raises(netdef.NetdefError, match="cannot write .*net_iter_10.pt: disk full"):
        save_atomic({"weights": {"w": torch.zeros(1000)}, "broken": Unpicklable()}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_unwritable_snapshot_folder_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "plain_file").write_text("not a folder")
    with pytest.raises(netdef.NetdefError) as err:
        check_writable(tmp_path / "plain_file" / "net", 0)
    assert "cannot write snapshots to" in str(err.value) and "plain_file" in str(err.value)
    check_writable(tmp_path / "new" / "deeper" / "net", 0)  # missing folders are created
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())


def test_loading_refuses_foreign_files_with_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(netdef.NetdefError, match="not a file written by torch.save"):
        load_weights(tmp_path / "notes.txt")
    torch.save({"config": Note()}, tmp_path / "object.pt")  # a pickle that would construct an object
    with pytest.raises(netdef.NetdefError, match="weights_only"):
        load_weights(tmp_path / "object.pt")
    torch.save({"conv1.weight": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(netdef.NetdefError, match="not a netdef snapshot"):
        load_snapshot(tmp_path / "plain.pt")
    assert torch.equal(load_weights(tmp_path / "plain.pt")["conv1.weight"], torch.ones(1))


def compiled(folder, **kw):
    path = write_tiny_net(folder, **kw)
    info = netdef.summarize(path, phase="TRAIN")
    return netdef.compile_info(info), {module_name(s.name): s.name for s in info.graph.layers}


def test_fine_tune_table_lists_every_blob_and_never_stops_at_a_mismatch(tmp_path):
    (tmp_path / "source").mkdir()
    source, _ = compiled(tmp_path / "source", hidden=16)
    weights = source.state_dict()
    weights["old_head.weight"] = torch.ones(2, 2)
    del weights["conv1.bias"]
    target, names = compiled(tmp_path, hidden=8)  # ip1 and ip2 change shape
    rows = copy_weights(target, weights, names)
    status = {(layer, blob): s for layer, blob, s, _, _ in rows}
    assert status == {("conv1", "weight"): "copied", ("conv1", "bias"): "missing in file",
                      ("ip1", "weight"): "shape mismatch", ("ip1", "bias"): "shape mismatch",
                      ("ip2", "weight"): "shape mismatch", ("ip2", "bias"): "copied",
                      ("old_head", "weight"): "not in net"}
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    table = weights_table(rows)
    assert any(line.split() == ["ip1", "weight", "shape", "mismatch", "16x144", "8x144"] for line in table.splitlines())
    assert table.splitlines()[-1].startswith("2 blobs copied, 3 shape mismatches")


def test_config_differences_name_each_field_and_diff_the_nets():
    stored = {"solver": {"base_lr": 0.01, "max_iter": 10, "type": "SGD"}, "nets": {"net.yaml": "a: 1\nb: 2\n"}}
    current = {"solver": {"base_lr": 0.02, "max_iter": 10, "type": "SGD"}, "nets": {"net.yaml": "a: 1\nb: 3\n"}}
    lines = config_differences(stored, current)
    assert lines[0] == "base_lr: 0.01 in the snapshot, 0.02 now"
    assert lines[1].startswith("net net.yaml differs (blocks expanded):")
    assert "    -b: 2" in lines[1] and "    +b: 3" in lines[1]
    assert config_differences(stored, stored) == []
