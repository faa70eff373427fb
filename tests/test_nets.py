"""The classic nets in nets/: parameter totals as their papers and reference models give them, LeNet-5's
per-layer figures as LeCun et al. (1998) print them, and one forward and backward step of each."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netdef
from netdef.layers.rbf import bitmap_code

from conftest import ROOT, SHIPPED_BLOCK_LIBRARIES, shipped_paths
from solver_helpers import one_thread  # noqa: F401  (a fixture)

NETS = ROOT / "nets"

# Learnable parameters of the TEST phase (GoogLeNet's TRAIN phase adds its auxiliary classifiers).
PARAMS = {
    "alexnet": 60_965_224,  # BVLC AlexNet (two towers)
    "alexnet_1tower": 61_100_840,  # torchvision's AlexNet
    "googlenet": 6_998_552,  # BVLC GoogLeNet, without the auxiliary classifiers
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,  # LRN adds no parameters
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg16_c": 133_638_952,  # B plus three 1x1 convolutions: 133,047,848 + 65,792 + 2 x 262,656
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
TRAIN_PARAMS = {"googlenet": 13_378_280}

# LeCun et al. (1998), Section II.B: (parameters, connections) of each layer of LeNet-5.
LENET5_ROWS = {"C1": (156, 122_304), "S2": (12, 5_880), "C3": (1_516, 151_600), "S4": (32, 2_000),
               "C5": (48_120, 48_120), "F6": (10_164, 10_164)}


def net_path(name) -> Path:
    return NETS / f"{name}.yaml"


def test_net_files_name_the_schema():
    for name in [*PARAMS, "lenet5_1998"]:
        assert net_path(name).read_text().startswith("# yaml-language-server: $schema=../schema/net.schema.json\n")
    for path in shipped_paths("nets/blocks", SHIPPED_BLOCK_LIBRARIES):
        assert path.read_text().startswith("# yaml-language-server: $schema=../../schema/net.schema.json\n")


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_totals(name):
    for phase in ("TRAIN", "TEST"):
        info = netdef.summarize(net_path(name), phase=phase)
        expected = TRAIN_PARAMS.get(name, PARAMS[name]) if phase == "TRAIN" else PARAMS[name]
        assert info.total_params == expected, phase
        assert info.trainable_params == expected, phase
    deploy = netdef.summarize(net_path(name), phase="TEST", stages=("deploy",))
    assert deploy.total_params == PARAMS[name]
    assert deploy.graph.inputs == ["data"] and deploy.graph.outputs == ["prob"]


def test_deploy_stage_feeds_10_crops_through_an_input():
    info = netdef.summarize(net_path("alexnet"), phase="TEST", stages=("deploy",))
    assert [row.type for row in info.layers][0] == "Input"
    assert info.blob_shapes["data"] == (10, 3, 227, 227)
    assert info.blob_shapes["prob"] == (10, 1000)


def test_resnet_depths_differ_only_in_repeat_counts():
    """ResNet-152's file is ResNet-101's with other repeat counts (and both number units as Kaiming He's
    models do: res4a, res4b1, ...)."""
    def body(name):
        return [line for line in net_path(name).read_text().splitlines() if not line.startswith(("#", "name:"))]
    diff = [(a, b) for a, b in zip(body("resnet101"), body("resnet152")) if a != b]
    assert len(diff) == 1 and "[3, 4, 23, 3]" in diff[0][0] and "[3, 8, 36, 3]" in diff[0][1]
    names = [row.name for row in netdef.summarize(net_path("resnet152"), phase="TEST").layers]
    assert {"res3b7", "res4b35", "res5c", "res2c"} <= set(names) and "res4b36" not in names


def test_googlenet_auxiliary_classifiers_train_only_with_weight_0_3():
    train = netdef.load_graph(net_path("googlenet"), phase="TRAIN")
    weights = {top: w for spec in train.layers for top, w in zip(spec.tops, spec.loss_weights) if w}
    assert weights == {"loss1/loss1": 0.3, "loss2/loss2": 0.3, "loss3/loss3": 1.0}
    test = netdef.load_graph(net_path("googlenet"), phase="TEST")
    assert not [spec.name for spec in test.layers if spec.name.startswith(("loss1/", "loss2/"))]
    assert sum(spec.type == "Concat" for spec in test.layers) == 9


def test_lenet5_summary_rows_match_the_paper():
    """`netdef summary --blocks --json`: one row per paper layer, with LeCun's parameter and connection counts."""
    out = subprocess.run([sys.executable, "-m", "netdef", "summary", str(net_path("lenet5_1998")), "--blocks",
                          "--json"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    summary = json.loads(out)
    rows = {row["name"]: (row["params"], row["connections"]) for row in summary["blocks"] if row["depth"] == 0}
    assert rows == LENET5_ROWS
    assert summary["trainable_params"] == 60_000
    assert summary["total_params"] == 60_000 + 10 * 84  # the RBF codes are stored, not trained
    table = subprocess.run([sys.executable, "-m", "netdef", "summary", str(net_path("lenet5_1998")), "--blocks"],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout
    names = [line.split()[0] for line in table.splitlines()[2:] if line.strip() and not line.startswith("LeNet")]
    assert names == ["mnist", "C1", "S2", "C3", "S4", "C5", "F6", "output", "loss"]


def test_lenet5_rbf_codes_are_plus_minus_one_bitmaps():
    graph = netdef.load_graph(net_path("lenet5_1998"), phase="TEST")
    rbf = graph.layer("output")
    codes = [bitmap_code(text) for text in rbf.params["rbf_param"]["bitmap"]]
    assert len(codes) == 10 and all(len(c) == 7 * 12 and set(c) == {1.0, -1.0} for c in codes)
    assert len({tuple(c) for c in codes}) == 10
    assert rbf.param_specs[0]["lr_mult"] == 0
    table = graph.layer("C3").params["convolution_param"]["connection_table"]
    assert [len(row) for row in table] == [3] * 6 + [4] * 9 + [6]


def test_lenet5_step_keeps_the_rbf_codes_and_the_c3_table():
    import torch
    torch.manual_seed(0)
    net = netdef.load_net(net_path("lenet5_1998"), phase="TRAIN", input_shapes={"data": (4, 1, 32, 32), "label": (4,)})
    centres = net.output.weight.detach().clone()
    data, label = torch.randn(4, 1, 32, 32), torch.tensor([0.0, 3.0, 7.0, 9.0])
    loss = net(data=data, label=label)["loss"]
    loss.backward()
    assert math.isfinite(loss.item())
    assert net.output.weight.grad is None
    assert net.C3.weight.grad.abs().sum() > 0
    # C3's absent connections get no gradient: the partial table holds during training
    absent = net.C3.mask.expand_as(net.C3.weight) == 0
    assert net.C3.weight.grad[absent].abs().sum() == 0
    assert torch.equal(net.output.weight, centres)


LENET5_PARTS = """
name: parts
layers:
  - {name: data, type: Input, top: [data, label], input_param: {shape: [{dim: [2, 2, 4, 4]}, {dim: [2]}]}}
  - {name: s, type: Subsampling, bottom: data, top: s,
     subsampling_param: {weight_filler: {type: constant, value: 0.5}, bias_filler: {type: constant, value: -1}}}
  - name: rbf
    type: RBF
    bottom: s
    top: rbf
    rbf_param:
      num_output: 3
      bitmap: ["#.#. .#.#", "##.. ..##", "#... ...#"]
  - {name: loss, type: RBFLoss, bottom: [rbf, label], top: loss, rbf_loss_param: {j: 2.0}}
"""


def test_subsampling_rbf_and_rbf_loss_follow_the_paper(tmp_path):
    """Against the formulas written out: S = coefficient x (2x2 window sum) + bias; y_i = sum_j (x_j - w_ij)^2;
    E = y_label + log(e^-j + sum_i e^-y_i) (Eq. 9), averaged over the batch."""
    import torch
    path = tmp_path / "parts.yaml"
    path.write_text(LENET5_PARTS)
    net = netdef.load_net(path, phase="TEST")
    data = torch.arange(64, dtype=torch.float32).reshape(2, 2, 4, 4) / 64
    label = torch.tensor([2.0, 0.0])
    captured = {}
    net.rbf.register_forward_hook(lambda module, args, out: captured.update(s=args[0], rbf=out))
    loss = net(data=data, label=label)["loss"]
    windows = data.reshape(2, 2, 2, 2, 2, 2).sum((3, 5))  # (n, c, row, col) sums of 2x2 windows
    assert torch.allclose(captured["s"], 0.5 * windows - 1)
    codes = torch.tensor([[1, -1, 1, -1, -1, 1, -1, 1], [1, 1, -1, -1, -1, -1, 1, 1], [1, -1, -1, -1, -1, -1, -1, 1]],
                         dtype=torch.float32)
    x = captured["s"].flatten(1)
    penalties = torch.stack([((x - code) ** 2).sum(1) for code in codes], 1)
    assert torch.allclose(captured["rbf"], penalties)
    expected = [penalties[n, int(label[n])] + math.log(math.exp(-2.0) + torch.exp(-penalties[n]).sum().item())
                for n in range(2)]
    assert loss.item() == pytest.approx(sum(expected).item() / 2, rel=1e-6)
    info = netdef.summarize(path, phase="TEST")
    assert (info.row("s").params, info.row("s").connections, info.row("s").macs) == (4, 2 * 2 * 2 * 5, 8)
    assert (info.row("rbf").params, info.row("rbf").connections) == (24, 24)


# One forward and backward step per net (TRAIN phase, random data). The cost is kept low by the batch size
# and, where the net allows it, the resolution: ResNets end in global pooling (at 32x32 res5 is 1x1); VGG's
# convolutional part runs at 32x32 (fc6 then reads 1x1x512 instead of 7x7x512), VGG-16 at full size.
STEP_SHAPES = {
    "lenet5_1998": (2, 1, 32, 32),
    "alexnet": (1, 3, 227, 227),
    "alexnet_1tower": (1, 3, 224, 224),
    "googlenet": (1, 3, 224, 224),
    "vgg11": (2, 3, 32, 32),
    "vgg11_lrn": (2, 3, 32, 32),
    "vgg13": (2, 3, 32, 32),
    "vgg16": (1, 3, 224, 224),
    "vgg16_c": (2, 3, 32, 32),
    "vgg19": (2, 3, 32, 32),
    "resnet18": (2, 3, 32, 32),
    "resnet34": (2, 3, 32, 32),
    "resnet50": (2, 3, 32, 32),
    "resnet101": (2, 3, 32, 32),
    "resnet152": (2, 3, 32, 32),
}


@pytest.mark.parametrize("name", sorted(STEP_SHAPES))
def test_forward_backward_step(name):
    import torch
    from netdef.build import weighted_loss
    torch.manual_seed(0)
    shape = STEP_SHAPES[name]
    classes = 10 if name.startswith("lenet") else 1000
    net = netdef.load_net(net_path(name), phase="TRAIN", input_shapes={"data": shape, "label": shape[:1]})
    data = torch.randn(shape) * (1 if name.startswith("lenet") else 50)
    label = torch.randint(0, classes, shape[:1]).float()
    loss = weighted_loss(net(data=data, label=label), net.loss_weights)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = next(p for p in net.parameters() if p.requires_grad)
    assert first.grad.abs().sum() > 0  # the gradient reaches the first layer


def test_nets_check():
    nets = [str(net_path(name)) for name in [*PARAMS, "lenet5_1998"]]
    result = subprocess.run([sys.executable, "-m", "netdef", "check", *nets], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lenet5_1998_solver_learns_the_bundled_digits(tmp_path, monkeypatch, netdef_cli, one_thread):
    """The shipped solver on the paper's net, cut to 100 iterations (of 1,500), tested on 200 digits: the
    smoothed loss falls to well under half and the test accuracy climbs far above chance. The full run, 95%
    or more on the 1,000 test digits, is measured by tools/bench_lenet5.py."""
    text = (ROOT / "solvers" / "lenet5_1998_solver.yaml").read_text()
    text = text.replace("../nets/lenet5_1998.yaml", str(net_path("lenet5_1998")))
    text = text.replace("../runs/lenet5_1998/lenet5_1998", str(tmp_path / "lenet5"))
    for field, value in {"max_iter": 100, "test_interval": 100, "test_iter": 2, "display": 10}.items():
        text, found = re.subn(rf"^{field}: \d+$", f"{field}: {value}", text, flags=re.M)
        assert found == 1, field
    solver = tmp_path / "solver.yaml"
    solver.write_text(text + f"average_loss: 10\nlog_dir: {tmp_path / 'log'}\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = netdef_cli("train", solver)
    assert status == 0, err[-2000:]
    losses = [float(x) for x in re.findall(r"^Iteration \d+ \(.*\), loss = (\S+)$", out, re.M)]
    accuracies = [float(x) for x in re.findall(r"Test net output #\d+: accuracy = (\S+)", out)]
    assert len(losses) == 10 and len(accuracies) == 2, out[-2000:]
    # losses[1]: the mean of iterations 1-10; losses[-1] of 81-90
    assert math.isfinite(losses[-1]) and losses[-1] < losses[1] / 2, losses
    assert accuracies[0] < 0.2 and accuracies[-1] >= 0.6, accuracies
