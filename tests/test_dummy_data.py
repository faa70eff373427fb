"""DummyData feeds training: random tops are refilled every batch, constant ones are filled once."""
import torch

from netdef.cli import main
from netdef.front.graph import NetState, build_graph
from netdef import expand_file

NET = """name: dummy
layers:
  - name: data
    type: DummyData
    top: [data, label]
    dummy_data_param:
      shape: [{dim: [4, 8]}, {dim: [4]}]
      data_filler: [{type: gaussian}, {type: uniform, min: 0, max: 3}]
  - {name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {num_output: 3, weight_filler: {type: xavier}}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""

SOLVER = """net: dummy.yaml
base_lr: 0.01
max_iter: 3
display: 1
lr_policy: fixed
snapshot_after_train: false
log_dir: runs
"""


def _reader(tmp_path, net_text):
    (tmp_path / "dummy.yaml").write_text(net_text)
    graph = build_graph(expand_file(tmp_path / "dummy.yaml"), NetState("TRAIN"))
    return graph.layers[0].impl.reader("TRAIN", 0, "cpu")


def test_random_tops_change_and_constant_tops_are_filled_once(tmp_path):
    reader = _reader(tmp_path, NET)
    first, second = reader.next(), reader.next()
    assert first[0].shape == (4, 8) and not torch.equal(first[0], second[0])
    constant = _reader(tmp_path, NET.replace("data_filler: [{type: gaussian}, {type: uniform, min: 0, max: 3}]",
                                             "data_filler: {type: constant, value: 2}"))
    batch = constant.next()
    assert batch is constant.next() and torch.all(batch[1] == 2)


def test_a_dummy_data_net_trains_from_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "dummy.yaml").write_text(NET)
    (tmp_path / "solver.yaml").write_text(SOLVER)
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(tmp_path / "solver.yaml")]) == 0
    out = capsys.readouterr()
    assert "Iteration 2, lr = 0.01" in out.out + out.err and "Optimization Done." in out.out + out.err


def test_net_on_the_command_line_replaces_the_solvers_net(tmp_path, capsys, monkeypatch):
    (tmp_path / "dummy.yaml").write_text(NET)
    (tmp_path / "other.yaml").write_text(NET.replace("name: ip,", "name: other_ip,"))
    (tmp_path / "solver.yaml").write_text(SOLVER)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "solver.yaml", "--net", "other.yaml"]) == 0
    out = capsys.readouterr()
    log = out.out + out.err
    assert "net: other.yaml from the command line instead of the solver's dummy.yaml" in log
    setup = (tmp_path / "runs" / "1" / "train.log").read_text()  # the per-layer lines' place
    assert "] Setting up other_ip\n" in setup and "] Setting up ip\n" not in setup
