"""The compiled PyTorch module: equal to hand-written PyTorch, named as Caffe names blobs, sharing as Caffe
shares, with a generated forward that does nothing but call the layers."""
from __future__ import annotations

import operator
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import netdef

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "nets" / "lenet.yaml"


class TwinLeNet(nn.Module):
    """Caffe's LeNet written by hand in PyTorch, with the same attribute names as the layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.ip1 = nn.Linear(800, 500)
        self.relu1 = nn.ReLU()
        self.ip2 = nn.Linear(500, 10)

    def forward(self, data, label):
        x = self.pool2(self.conv2(self.pool1(self.conv1(data))))
        scores = self.ip2(self.relu1(self.ip1(x.flatten(1))))
        target = label.long()
        outputs = {"loss": F.cross_entropy(scores, target)}
        if not self.training:
            outputs["accuracy"] = (scores.argmax(1) == target).float().mean()
        return outputs


def write_net(tmp_path, layers, name="net") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "layers": layers}, sort_keys=False))
    return path


def input_layer(shapes: dict) -> dict:
    return {"name": "input", "type": "Input", "top": list(shapes),
            "input_param": {"shape": [{"dim": list(s)} for s in shapes.values()]}}


def mnist_batch(batch=64):
    torch.manual_seed(1)
    return torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,)).float()


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_lenet_equals_hand_written_pytorch(phase):
    net = netdef.load_net(LENET, phase=phase)
    twin = TwinLeNet().train(phase == "TRAIN")
    twin.load_state_dict(net.state_dict())
    data, label = mnist_batch()
    ours, theirs = net(data=data, label=label), twin(data, label)
    assert set(ours) == set(theirs) == ({"loss"} if phase == "TRAIN" else {"loss", "accuracy"})
    for blob in ours:
        torch.testing.assert_close(ours[blob], theirs[blob], atol=1e-6, rtol=1e-6)
    ours["loss"].backward()
    theirs["loss"].backward()
    twin_params = dict(twin.named_parameters())
    for name, param in net.named_parameters():
        torch.testing.assert_close(param.grad, twin_params[name].grad, atol=1e-6, rtol=1e-6)


def test_lenet_parameter_names_and_learning_rate_multipliers():
    net = netdef.load_net(LENET)
    names = [name for name, _ in net.named_parameters()]
    assert names == [f"{layer}.{blob}" for layer in ("conv1", "conv2", "ip1", "ip2") for blob in ("weight", "bias")]
    assert net.param_lr == {name: ((2.0 if name.endswith("bias") else 1.0), 1.0) for name in names}
    assert sum(p.numel() for p in net.parameters()) == netdef.summarize(LENET).total_params == 431_080


def test_lr_mult_zero_freezes_and_decay_mult_is_recorded(tmp_path):
    path = write_net(tmp_path, [
        input_layer({"x": (2, 3)}),
        {"name": "frozen", "type": "InnerProduct", "bottom": "x", "top": "y",
         "param": [{"lr_mult": 0, "decay_mult": 0}, {"lr_mult": 3, "decay_mult": 0.5}],
         "inner_product_param": {"num_output": 4}}])
    net = netdef.load_net(path)
    assert not net.frozen.weight.requires_grad and net.frozen.bias.requires_grad
    assert net.param_lr == {"frozen.weight": (0.0, 0.0), "frozen.bias": (3.0, 0.5)}


def test_shared_param_name_makes_one_tensor(tmp_path):
    shared = [{"name": "tied_w"}, {"name": "tied_b"}]
    fc = {"num_output": 3, "weight_filler": {"type": "gaussian"}}
    path = write_net(tmp_path, [
        input_layer({"a": (2, 5), "b": (2, 5)}),
        {"name": "fc_a", "type": "InnerProduct", "bottom": "a", "top": "ya", "param": shared, "inner_product_param": fc},
        {"name": "fc_b", "type": "InnerProduct", "bottom": "b", "top": "yb", "param": shared, "inner_product_param": fc},
        {"name": "sum", "type": "Eltwise", "bottom": ["ya", "yb"], "top": "out"}])
    net = netdef.load_net(path)
    assert net.fc_a.weight is net.fc_b.weight and net.fc_a.bias is net.fc_b.bias
    assert sum(p.numel() for p in net.parameters()) == netdef.summarize(path).total_params == 18
    a, b = torch.randn(2, 5), torch.randn(2, 5)
    net(a=a, b=b)["out"].sum().backward()
    # One tensor used twice: its gradient is the sum of both uses.
    torch.testing.assert_close(net.fc_a.weight.grad, (a + b).sum(0).expand(3, 5))


def test_train_and_test_nets_share_parameters_and_batchnorm_statistics(tmp_path):
    path = write_net(tmp_path, [
        {**input_layer({"x": (4, 3, 6, 6)}), "include": {"phase": "TRAIN"}},
        {**input_layer({"x": (2, 3, 6, 6)}), "include": {"phase": "TEST"}},
        {"name": "conv", "type": "Convolution", "bottom": "x", "top": "c",
         "convolution_param": {"num_output": 2, "kernel_size": 3, "weight_filler": {"type": "xavier"}}},
        {"name": "bn", "type": "BatchNorm", "bottom": "c", "top": "c"},
        {"name": "scale", "type": "Scale", "bottom": "c", "top": "c", "scale_param": {"bias_term": True}}])
    train = netdef.load_net(path, phase="TRAIN")
    test = netdef.load_net(path, phase="TEST", share_with=train)
    for name, tensor in test.state_dict(keep_vars=True).items():
        assert tensor is train.state_dict(keep_vars=True)[name], name
    train(x=torch.randn(4, 3, 6, 6) + 2)
    assert train.bn.scale_factor.item() == 1.0 and test.bn.scale_factor.item() == 1.0
    x = torch.randn(2, 3, 6, 6)
    c = F.conv2d(x, train.conv.weight, train.conv.bias)
    mean, var = train.bn.mean / train.bn.scale_factor, train.bn.variance / train.bn.scale_factor
    expected = (c - mean[:, None, None]) / (var[:, None, None] + 1e-5).sqrt() * train.scale.weight[:, None, None]
    torch.testing.assert_close(test(x=x)["c"], expected + train.scale.bias[:, None, None])


def test_multi_top_and_in_place_layers(tmp_path):
    path = write_net(tmp_path, [
        input_layer({"x": (2, 6, 3)}),
        {"name": "cut", "type": "Slice", "bottom": "x", "top": ["a", "b", "c"],
         "slice_param": {"axis": 1, "slice_point": [1, 3]}},
        {"name": "relu_b", "type": "ReLU", "bottom": "b", "top": "b"},
        {"name": "double_c", "type": "Power", "bottom": "c", "top": "c", "power_param": {"scale": 2}},
        {"name": "join", "type": "Concat", "bottom": ["c", "a", "b"], "top": "y"},
        {"name": "copies", "type": "Split", "bottom": "y", "top": ["y1", "y2"]}])
    net = netdef.load_net(path)
    x = torch.randn(2, 6, 3)
    outputs = net(x=x)
    expected = torch.cat([2 * x[:, 3:], x[:, :1], x[:, 1:3].clamp_min(0)], 1)
    assert sorted(outputs) == ["y1", "y2"]
    torch.testing.assert_close(outputs["y1"], expected)
    torch.testing.assert_close(outputs["y2"], expected)


def test_googlenet_style_names_with_slashes(tmp_path):
    path = write_net(tmp_path, [
        input_layer({"data": (1, 4, 5, 5)}),
        {"name": "inception_3a/1x1", "type": "Convolution", "bottom": "data", "top": "inception_3a/1x1",
         "convolution_param": {"num_output": 2, "kernel_size": 1, "weight_filler": {"type": "xavier"}}},
        {"name": "inception_3a/relu_1x1", "type": "ReLU", "bottom": "inception_3a/1x1", "top": "inception_3a/1x1"},
        {"name": "inception_3a/pool", "type": "Pooling", "bottom": "data", "top": "inception_3a/pool",
         "pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 1, "pad": 1}},
        {"name": "inception_3a/output", "type": "Concat", "bottom": ["inception_3a/1x1", "inception_3a/pool"],
         "top": "inception_3a/output"},
        {"name": "loss3/classifier.v2", "type": "InnerProduct", "bottom": "inception_3a/output", "top": "scores",
         "inner_product_param": {"num_output": 3}}])
    net = netdef.load_net(path)
    assert [name for name, _ in net.named_parameters()] == [
        "inception_3a/1x1.weight", "inception_3a/1x1.bias",
        "loss3/classifier_v2.weight", "loss3/classifier_v2.bias"]  # a dot would read as nesting
    assert net.get_submodule("inception_3a/1x1").weight.shape == (2, 4, 1, 1)
    x = torch.randn(1, 4, 5, 5)
    concat = torch.cat([F.relu(net.get_submodule("inception_3a/1x1")(x)), F.max_pool2d(x, 3, 1, 1)], 1)
    torch.testing.assert_close(net(data=x)["scores"], net.get_submodule("loss3/classifier_v2")(concat))
    reloaded = netdef.load_net(path)
    reloaded.load_state_dict(net.state_dict())
    torch.testing.assert_close(reloaded(data=x)["scores"], net(data=x)["scores"])


def test_generated_forward_only_calls_the_layers():
    net = netdef.load_net(ROOT / "nets" / "lenet.yaml", phase="TEST")
    ops = [(node.op, node.target) for node in net.graph.nodes]
    calls = [target for op, target in ops if op == "call_module"]
    assert calls == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy", "loss"]
    assert {op for op, _ in ops} == {"placeholder", "call_module", "output"}
    body = [line.strip() for line in net.code.strip().splitlines()[1:]]
    assert len(body) == len(calls) + 1 and body[-1].startswith("return {")
    multi = netdef.load_net(ROOT / "nets" / "lenet.yaml")
    extra = [(node.op, node.target) for node in multi.graph.nodes if node.op == "call_function"]
    assert all(target is operator.getitem for _, target in extra)


def test_forward_under_no_grad_matches_the_hand_written_twin():
    """As inference and the benchmarks run it. (Its speed beside the twin's is a measurement, not a test:
    tools/bench_lenet.py and `netdef time`.)"""
    net = netdef.load_net(LENET)
    twin = TwinLeNet()
    twin.load_state_dict(net.state_dict())
    data, label = mnist_batch(64)
    with torch.no_grad():
        torch.testing.assert_close(net(data=data, label=label)["loss"], twin(data, label)["loss"])


def test_scale_with_a_scale_bottom_freezes_its_bias_with_the_first_param_entry(tmp_path):
    """A Scale whose second bottom is the scale has one blob, its bias, and Caffe's first `param:` entry
    governs it: `lr_mult: 0` freezes it in the summary and in training alike (build and infer both read
    the blob's param index from the layer's BlobSpec)."""
    path = write_net(tmp_path, [
        input_layer({"x": (4, 3, 5), "gamma": (4, 3), "target": (4, 3, 5)}),
        {"name": "scale", "type": "Scale", "bottom": ["x", "gamma"], "top": "y", "param": [{"lr_mult": 0}],
         "scale_param": {"axis": 0, "bias_term": True, "bias_filler": {"type": "constant", "value": 0.5}}},
        {"name": "loss", "type": "EuclideanLoss", "bottom": ["y", "target"], "top": "loss"}])
    info = netdef.summarize(path)
    assert (info.row("scale").params, info.trainable_params) == (12, 0)
    net = netdef.compile_info(info)
    learning = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert learning == info.trainable_params == 0
    assert net.param_lr == {"scale.bias": (0.0, 1.0)}
    before = net.scale.bias.detach().clone()
    torch.manual_seed(0)
    for _ in range(3):  # plain SGD steps by the compiled net's lr_mult
        batch = {"x": torch.randn(4, 3, 5, requires_grad=True), "gamma": torch.randn(4, 3),
                 "target": torch.randn(4, 3, 5)}  # x needs a gradient: no parameter of this net trains
        net.zero_grad()
        net(**batch)["loss"].backward()
        with torch.no_grad():
            for name, parameter in net.named_parameters():
                if parameter.grad is not None:
                    parameter -= 0.1 * net.param_lr[name][0] * parameter.grad
    torch.testing.assert_close(net.scale.bias, before)

    # the same layer learning its bias: it moves, and both counts say so
    path.write_text(path.read_text().replace("lr_mult: 0", "lr_mult: 1"))
    info = netdef.summarize(path)
    net = netdef.compile_info(info)
    assert info.trainable_params == sum(p.numel() for p in net.parameters() if p.requires_grad) == 12


def test_param_entries_are_counted_against_the_layers_own_blobs(tmp_path):
    """As Caffe: one `param:` entry per blob this layer has; a Scale fed its scale has only the bias."""
    path = write_net(tmp_path, [
        input_layer({"x": (4, 3), "gamma": (4, 3)}),
        {"name": "scale", "type": "Scale", "bottom": ["x", "gamma"], "top": "y", "param": [{}, {}],
         "scale_param": {"axis": 0, "bias_term": True}}])
    with pytest.raises(netdef.NetdefError, match=r"too many 'param' entries \(expected at most 1 \(bias\), found 2\)"):
        netdef.summarize(path)
