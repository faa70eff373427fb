"""netdef time: Caffe's layer-by-layer benchmark on random inputs, on every shipped net."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import netdef
from conftest import SHIPPED_NETS, shipped_paths
from netdef.build import weighted_loss
from netdef.cli import main
from netdef.tools.timing import Benchmark, random_inputs

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "nets" / "lenet.yaml"
SMALL_NETS = {"lenet", "lenet5_1998", "tiny_folder"}  # the ImageNet nets take seconds each even at batch 1

REGRESSION_NET = """\
name: regression
blocks:
  fc_tanh:
    args: {num: null}
    layers:
      - {name: "${name}_fc", type: InnerProduct, bottom: "${bottom}", top: "${name}_fc",
         inner_product_param: {num_output: "${num}", weight_filler: {type: xavier}}}
      - {name: "${name}_tanh", type: TanH, bottom: "${name}_fc", top: "${top}"}
layers:
  - name: data
    type: DummyData
    top: [x, target]
    dummy_data_param: {shape: [{dim: [8, 5]}, {dim: [8, 3]}]}
  - {use: fc_tanh, name: hidden, bottom: x, with: {num: 16}}
  - {name: out, type: InnerProduct, bottom: hidden, top: out, inner_product_param: {num_output: 3}}
  - {name: loss, type: EuclideanLoss, bottom: [out, target], top: loss, loss_weight: 0.5}
"""


def test_cli_prints_caffes_benchmark_and_a_layer_table():
    result = subprocess.run([sys.executable, "-m", "netdef", "time", str(LENET), "--iterations", "2", "--batch", "4"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("*** Benchmark begins ***") and out.rstrip().endswith("*** Benchmark ends ***")
    assert "inputs data [4, 1, 28, 28], label [4]" in out
    assert re.search(r"^Initial loss: [\d.]+$", out, re.M)
    assert len(re.findall(r"^Iteration: \d forward-backward time: [\d.]+ ms\.$", out, re.M)) == 2
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in {"conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "loss"}}
    assert len(rows) == 8
    assert rows["conv1"][1] == "Convolution" and float(rows["conv1"][5]) > 0  # GFLOP/s from the summary's MACs
    assert rows["pool1"][5] == "-"  # pooling counts no MACs
    assert sum(float(row[4].rstrip("%")) for row in rows.values()) <= 100.5
    for name in ("Forward pass", "Backward pass", "Forward-Backward"):
        assert re.search(rf"^Average {name}: [\d.]+ ms\.$", out, re.M)


def test_layer_by_layer_backward_gives_autograds_gradients():
    """The benchmark's backward, run one layer at a time, must compute what one autograd pass computes."""
    info = netdef.summarize(LENET, phase="TRAIN", input_shapes={"data": (3, 1, 28, 28), "label": (3,)})
    net = netdef.compile_info(info)
    bench = Benchmark(net, info)
    loss = bench.iteration()
    layered = {name: p.grad.clone() for name, p in net.named_parameters()}
    for parameter in net.parameters():
        parameter.grad = None
    outputs = net(**{net.input_names[b]: t for b, t in bench.inputs.items()})
    weighted_loss(outputs, net.loss_weights).backward()
    assert abs(loss - outputs["loss"].item()) < 1e-5
    for name, parameter in net.named_parameters():
        assert torch.allclose(layered[name], parameter.grad, atol=1e-6), name
    assert all(len(layer.forward) == 1 and len(layer.backward) == 1 for layer in bench.layers.values())


def test_labels_are_class_indices_and_loss_weights_apply(tmp_path):
    lenet = netdef.summarize(LENET, phase="TEST")
    inputs = random_inputs(lenet, "cpu")
    assert inputs["label"].dtype == torch.int64 and 0 <= inputs["label"].min() and inputs["label"].max() < 10
    assert inputs["data"].dtype == torch.float32 and inputs["data"].shape == (100, 1, 28, 28)

    net_file = tmp_path / "regression.yaml"
    net_file.write_text(REGRESSION_NET)
    info = netdef.summarize(net_file)
    net = netdef.compile_info(info)
    bench = Benchmark(net, info)
    bench.iteration()
    layered = net.hidden_fc.weight.grad.clone()
    net.zero_grad()
    outputs = net(**bench.inputs)
    (outputs["loss"] * 0.5).backward()
    assert torch.allclose(layered, net.hidden_fc.weight.grad, atol=1e-6)
    assert [layer.name for layer in bench.layers.values()] == ["hidden_fc", "hidden_tanh", "out", "loss"]


def test_bad_arguments_are_clear_errors(capsys):
    assert main(["time", str(LENET), "--iterations", "0"]) == 2
    assert "--iterations must be at least 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["time", str(LENET), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def cli(*args):
    return subprocess.run([sys.executable, "-m", "netdef", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_lenet5_1998_times_with_its_rbf_loss_labels():
    """RBFLoss reads class labels (its class says so): the random labels are class indices, not floats
    that would index classes below zero."""
    result = cli("time", ROOT / "nets" / "lenet5_1998.yaml", "--batch", "2", "--iterations", "1")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"^loss\s+RBFLoss\s", result.stdout, re.M) and "*** Benchmark ends ***" in result.stdout
    info = netdef.summarize(ROOT / "nets" / "lenet5_1998.yaml")
    labels = random_inputs(info, "cpu")["label"]
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 10


def tiny_folder(tmp_path) -> Path:
    """nets/tiny_folder.yaml beside a generated image folder (its data are not shipped)."""
    subprocess.run([sys.executable, str(ROOT / "tools/make_image_folder.py"), str(tmp_path / "data/tiny_images"),
                    "--train", "2", "--test", "1"], check=True, capture_output=True)
    (tmp_path / "nets").mkdir()
    return Path(shutil.copy(ROOT / "nets/tiny_folder.yaml", tmp_path / "nets"))


@pytest.mark.parametrize("name", [name if name in SMALL_NETS else pytest.param(name, marks=pytest.mark.slow)
                                  for name in SHIPPED_NETS])
def test_every_shipped_net_times(name, tmp_path, netdef_cli):
    (path,) = shipped_paths("nets", [name])
    if name == "tiny_folder":
        path = tiny_folder(tmp_path)
    status, out, err = netdef_cli("time", path, "--batch", "1", "--iterations", "1")
    assert status == 0, err
    assert "Iteration: 1 forward-backward time:" in out and out.rstrip().endswith("*** Benchmark ends ***")


def test_batch_argument_is_checked(capsys):
    assert main(["time", str(LENET), "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err


def test_layers_without_counted_macs_show_no_rate(tmp_path):
    """A layer whose cost is not counted (None) has no FLOPs and no GFLOP/s, never a division by zero."""
    info = netdef.summarize(LENET, phase="TEST", input_shapes={"data": (2, 1, 28, 28), "label": (2,)})
    bench = Benchmark(netdef.compile_info(info), info)
    flops = {layer.name: layer.flops for layer in bench.layers.values()}
    assert flops["loss"] is None and flops["pool1"] == 0
    assert flops["conv1"] == 2 * 288_000 * 2  # 2 FLOPs per MAC, 2 samples
