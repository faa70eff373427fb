"""netdef export: the deploy net as ONNX, checked by onnx.checker and run by onnxruntime."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import netdef
from netdef.cli import main
from netdef.tools.export import deploy_net, example_inputs
from netdef.train.snapshot import FORMAT, VERSION

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
# (net, extra export arguments): the ImageNet nets at their deploy stage (Input, Softmax "prob"), batch 2
NETS = [(ROOT / "nets" / "lenet.yaml", ())] + [
    pytest.param(ROOT / "nets" / name, ("--stage", "deploy", "--batch", "2"), marks=pytest.mark.slow)
    for name in ("alexnet.yaml", "resnet50.yaml") if (ROOT / "nets" / name).exists()]


def netdef_cli(*args):
    return subprocess.run([sys.executable, "-m", "netdef", *map(str, args)], capture_output=True, text=True)


def trained_like(state: dict) -> dict:
    """Weights as after training: BatchNorm statistics set (fresh ones are zero, which a deep net
    amplifies past float range), every other tensor as the fillers made it."""
    generator = torch.Generator().manual_seed(0)
    fills = {"mean": lambda t: 0.1 * torch.randn(t.shape, generator=generator),
             "variance": lambda t: 0.5 + torch.rand(t.shape, generator=generator),
             "scale_factor": lambda t: torch.ones(t.shape)}
    return {key: fills[key.rsplit(".", 1)[-1]](value) if key.rsplit(".", 1)[-1] in fills else value
            for key, value in state.items()}


@pytest.mark.parametrize("net_file, options", NETS, ids=lambda p: Path(p).stem if isinstance(p, Path) else " ".join(p) or "as-written")
def test_onnxruntime_matches_netdef(net_file, options, tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save(trained_like(netdef.load_net(net_file, phase="TEST", stages=options[1:2]).state_dict()), weights)
    model = tmp_path / "model.onnx"
    result = netdef_cli("export", net_file, "--weights", weights, "-o", model, *options)
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(str(model)), full_check=True)

    batch = int(options[3]) if options else None
    net, graph, info = deploy_net(net_file, weights, stages=options[1:2], batch=batch)
    inputs = example_inputs(graph, info, seed=1)
    with torch.no_grad():
        expected = net(**{net.input_names[b]: t for b, t in inputs.items()})
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [net.input_names[b] for b in graph.inputs]
    outputs = session.run(None, {net.input_names[b]: t.numpy() for b, t in inputs.items()})
    assert [o.name for o in session.get_outputs()] == list(graph.outputs)
    for name, value in zip(graph.outputs, outputs):
        assert value.shape == tuple(info.blob_shapes[name])
        assert abs(value - expected[name].numpy()).max() <= 1e-5


def test_export_drops_data_loss_and_accuracy_layers():
    net, graph, _ = deploy_net(ROOT / "nets" / "lenet.yaml")
    names = [spec.name for spec in graph.layers if spec.impl.compiled()]
    assert names == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"]
    assert graph.inputs == ["data"] and graph.outputs == ["ip2"]


def test_weights_are_exported(tmp_path):
    """Two different weight files give two different models: the weights, not the fillers, are exported."""
    net_file = ROOT / "nets" / "lenet.yaml"
    outputs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        weights = tmp_path / f"w{seed}.pt"
        torch.save({"format": FORMAT, "version": VERSION, "weights": netdef.load_net(net_file).state_dict()}, weights)
        net, graph, info = deploy_net(net_file, weights)
        outputs.append(net(data=example_inputs(graph, info)["data"])["ip2"])
    assert not torch.allclose(outputs[0], outputs[1])


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path, capsys):
    weights = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(3, 1, 5, 5)}, weights)
    result = netdef_cli("export", ROOT / "nets" / "lenet.yaml", "--weights", weights, "-o", tmp_path / "m.onnx")
    assert result.returncode == 2
    assert "do not fit the net" in result.stderr and "conv1.weight [3, 1, 5, 5]" in result.stderr
    assert "Traceback" not in result.stderr

    not_weights = ROOT / "nets" / "lenet.yaml"
    assert main(["export", str(not_weights), "--weights", str(not_weights), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "is not a file written by torch.save" in capsys.readouterr().err


def test_deploy_keeps_what_the_layer_classes_say(tmp_path):
    """Plain layers stay (a Softmax `prob` and an ArgMax are net outputs), losses and metrics go, and a
    data layer whose tops nothing deployed reads goes too."""
    path = tmp_path / "net.yaml"
    path.write_text("""
name: roles
layers:
  - {name: data, type: Input, top: [data, label], input_param: {shape: [{dim: [2, 6]}, {dim: [2]}]}}
  - {name: extra, type: Input, top: extra, input_param: {shape: {dim: [2, 3]}}}
  - {name: fc, type: InnerProduct, bottom: data, top: fc, inner_product_param: {num_output: 3}}
  - {name: prob, type: Softmax, bottom: fc, top: prob}
  - {name: best, type: ArgMax, bottom: fc, top: best}
  - {name: accuracy, type: Accuracy, bottom: [fc, label], top: accuracy}
  - {name: loss, type: EuclideanLoss, bottom: [fc, extra], top: loss}
""")
    net, graph, _ = deploy_net(path)
    assert [spec.name for spec in graph.layers] == ["data", "fc", "prob", "best"]
    assert graph.inputs == ["data"] and graph.outputs == ["best", "prob"]
    assert [name for name, _ in net.named_children()] == ["fc", "prob", "best"]


def test_a_layer_its_class_calls_unexportable_is_a_clear_error(monkeypatch):
    from netdef.layers import LAYERS
    monkeypatch.setattr(LAYERS["InnerProduct"], "exportable", False)
    with pytest.raises(netdef.NetdefError, match="InnerProduct layers cannot be exported to ONNX"):
        deploy_net(ROOT / "nets" / "lenet.yaml")
