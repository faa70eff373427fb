"""netdef export: the deploy net as ONNX, checked by onnx.checker and run by onnxruntime."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import netdef
from netdef.cli import main
from netdef.export import deploy_net, example_inputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
NETS = [ROOT / "nets" / "lenet.yaml"] + [pytest.param(ROOT / "nets" / name, marks=pytest.mark.slow)
                                         for name in ("alexnet.yaml", "resnet50.yaml")
                                         if (ROOT / "nets" / name).exists()]


def netdef_cli(*args):
    return subprocess.run([sys.executable, "-m", "netdef", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("net_file", NETS, ids=lambda p: Path(p).stem)
def test_onnxruntime_matches_netdef(net_file, tmp_path):
    train = netdef.load_net(net_file, phase="TRAIN")
    weights = tmp_path / "weights.pt"
    torch.save(train.state_dict(), weights)
    model = tmp_path / "model.onnx"
    result = netdef_cli("export", net_file, "--weights", weights, "-o", model)
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(str(model)), full_check=True)

    net, graph, info = deploy_net(net_file, weights)
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
    names = [spec.name for spec in graph.layers if not spec.impl.is_source]
    assert names == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2"]
    assert graph.inputs == ["data"] and graph.outputs == ["ip2"]


def test_weights_are_exported(tmp_path):
    """Two different weight files give two different models: the weights, not the fillers, are exported."""
    net_file = ROOT / "nets" / "lenet.yaml"
    outputs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        weights = tmp_path / f"w{seed}.pt"
        torch.save({"weights": netdef.load_net(net_file).state_dict()}, weights)  # a snapshot-style file
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
    assert "cannot read weights file" in capsys.readouterr().err
