"""What `netdef summary` reports, as the layer classes declare it: per-sample costs that do not depend on
the batch, costs netdef does not model shown as not counted, `--batch`, and no layer type known outside
netdef/layers/."""
from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path

import pytest

import netdef
from netdef.layers import LAYERS

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "nets" / "lenet.yaml"


def at_batch(path, batch, phase="TRAIN"):
    info = netdef.summarize(path, phase=phase)
    return netdef.summarize(path, phase=phase,
                            input_shapes={b: (batch,) + tuple(info.blob_shapes[b][1:]) for b in info.graph.inputs})


@pytest.mark.parametrize("name", ["lenet", "googlenet", "resnet50"])
def test_per_sample_costs_do_not_depend_on_the_batch(name):
    one, four = (at_batch(ROOT / "nets" / f"{name}.yaml", batch) for batch in (1, 4))
    assert [r.name for r in one.layers] == [r.name for r in four.layers]
    for a, b in zip(one.layers, four.layers):
        assert (a.macs, a.connections) == (b.macs, b.connections), a.name
        assert b.batch == 4 * a.batch or not a.in_shapes, a.name  # divided by the batch of the first bottom
    assert one.total_macs == four.total_macs > 0


def test_a_loss_reports_its_cost_per_sample(write_yaml):
    """EuclideanLoss on 8 samples of 3 features: 3 MACs per sample (its top is a scalar, its bottoms are not)."""
    net = write_yaml("""
name: regression
layers:
  - {name: data, type: Input, top: [x, y], input_param: {shape: [{dim: [8, 3]}, {dim: [8, 3]}]}}
  - {name: loss, type: EuclideanLoss, bottom: [x, y], top: loss}
""")
    row = netdef.summarize(net).row("loss")
    assert (row.macs, row.connections, row.batch) == (3, 3, 8)


def test_costs_netdef_does_not_model_are_not_counted(netdef_subprocess):
    info = netdef.summarize(ROOT / "nets" / "alexnet.yaml", phase="TEST")
    assert info.row("norm1").macs is None and info.row("norm1").connections is None  # LRN
    assert info.row("pool1").macs == 0  # pooling: 0 by the conventions, counted
    assert info.total_macs == sum(r.macs for r in info.layers if r.macs is not None)
    result = netdef_subprocess("summary", "nets/alexnet.yaml", "--phase", "TEST", "--json")
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert layers["norm1"]["macs"] is None and layers["conv1"]["macs"] == 105_415_200
    table = netdef_subprocess("summary", "nets/alexnet.yaml", "--phase", "TEST").stdout
    assert re.search(r"^norm1\s+LRN\s+\S+\s+0\s+-\s+-\s", table, re.M)
    assert "'-': not counted (Dropout, LRN, Softmax" in table.splitlines()[-1]


def test_summary_batch_changes_shapes_and_memory_not_per_sample_costs(netdef_subprocess):
    runs = {}
    for batch in ("2", "8"):
        result = netdef_subprocess("summary", "nets/lenet.yaml", "--batch", batch, "--json")
        assert result.returncode == 0, result.stderr
        runs[batch] = json.loads(result.stdout)
    assert runs["2"]["inputs"] == {"data": [2, 1, 28, 28], "label": [2]}
    assert runs["8"]["layers"][1]["shapes"] == [[8, 20, 24, 24]]
    assert runs["8"]["activation_memory"] > runs["2"]["activation_memory"]
    assert runs["2"]["total_macs"] == runs["8"]["total_macs"] == 2_293_000
    table = netdef_subprocess("summary", "nets/lenet.yaml", "--batch", "3", "--phase", "TEST").stdout
    assert re.search(r"^conv1\s+Convolution\s+3x20x24x24\s", table, re.M)


@pytest.mark.parametrize("value, message", [("0", "--batch must be at least 1"), ("two", "invalid int value")])
def test_summary_bad_batch_is_a_clean_error(netdef_subprocess, value, message):
    result = netdef_subprocess("summary", "nets/lenet.yaml", "--batch", value)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_unread_tops_are_fine_where_the_class_says_so(write_yaml):
    """Losses, metrics, data layers and net outputs (Softmax, ArgMax) may leave tops unread; others not."""
    head = """
name: t
layers:
  - {name: data, type: Input, top: [data, label], input_param: {shape: [{dim: [4, 6]}, {dim: [4]}]}}
  - {name: fc, type: InnerProduct, bottom: data, top: fc, inner_product_param: {num_output: 3}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [fc, label], top: loss}
"""
    fine = write_yaml(head + """
  - {name: prob, type: Softmax, bottom: fc, top: prob}
  - {name: best, type: ArgMax, bottom: fc, top: best}
  - {name: accuracy, type: Accuracy, bottom: [fc, label], top: accuracy}
""", name="fine.yaml")
    assert netdef.load_graph(fine).outputs == ["accuracy", "best", "loss", "prob"]
    unread = write_yaml(head + "  - {name: relu, type: ReLU, bottom: fc, top: relu}\n", name="unread.yaml")
    with pytest.raises(netdef.NetdefError, match="top 'relu' is never used and is not a loss"):
        netdef.load_graph(unread)


# Where a file outside netdef/layers/ still names a layer type or one of its parameter blocks (reported,
# not this suite's to change): Caffe's net-level inputs become an Input layer when a prototxt is read, the
# CIFAR backend of Data points its errors at data_param's fields, and ten-crop testing (oversample) turns
# off the data layers' crop in transform_param.
NAMING_ALLOWED = {"caffe/prototxt.py": {"Input", "input_param"}, "data/cifar.py": {"data_param"},
                  "tools/oversample.py": {"transform_param"}}


def test_no_layer_type_is_named_outside_netdef_layers():
    """Every stage reads what it needs from the layer classes: no string literal outside netdef/layers/
    is a layer type or a layer's parameter block (as `"Accuracy"` or `"pooling_param"` once were)."""
    names = set(LAYERS) | {block for cls in LAYERS.values() for block in cls.blocks}
    found = []
    package = ROOT / "netdef"
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("layers/"):
            continue
        for token in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
            if token.type == tokenize.STRING and token.string[-1] in "'\"":
                value = token.string.strip("rbuRBU").strip("'\"")
                if value in names and value not in NAMING_ALLOWED.get(relative, ()):
                    found.append(f"netdef/{relative}:{token.start[0]}: {value}")
    assert not found, "layer knowledge outside netdef/layers/: " + ", ".join(found)
