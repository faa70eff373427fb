"""Extension layer types in Python (netdef/layers/plugins.py, python_layer.py) and the worked example
examples/axpy/ (SE-ResNet's Axpy): named by `plugins:` or Caffe's `type: Python`, or installed through a
`netdef.layers` entry point; validated with positioned errors, trained, snapshotted and resumed as a
built-in type, deep-copied and pickled whole, and listed in `netdef schema net` when installed.

Registering a type changes the process's registry, so tests that do it in this process restore it
(`registry`), and the CLI runs that train or print the schema are real child processes."""
from __future__ import annotations

import copy
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

import netdef
from conftest import ROOT
from netdef.layers import LAYERS

EXAMPLE = ROOT / "examples" / "axpy"


@pytest.fixture
def registry():
    """Leave LAYERS and sys.modules as they were: a plugin registered here must not reach other tests."""
    layers, modules = dict(LAYERS), set(sys.modules)
    yield
    LAYERS.clear()
    LAYERS.update(layers)
    for name in set(sys.modules) - modules:
        if name in ("axpy", "shift", "broken", "empty", "probe_order", "probe_only_there"):
            del sys.modules[name]


@pytest.fixture
def folder(tmp_path):
    """A net folder holding a copy of the example's plugin module."""
    shutil.copy(EXAMPLE / "axpy.py", tmp_path / "axpy.py")
    return tmp_path


def write(path, text: str):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


SE_LAYERS = """\
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 4, 3, 3]}}}
  - {name: pool, type: Pooling, bottom: data, top: pool, pooling_param: {pool: AVE, global_pooling: true}}
  - {name: gate, type: Sigmoid, bottom: pool, top: gate}
  - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 1}}
"""


def se_net(folder, axpy_layer: str, head: str = "plugins: [axpy]", name="net.yaml"):
    """A squeeze-and-excitation unit on 2 x 4 x 3 x 3 inputs whose last layer (line 8) is `axpy_layer`."""
    path = folder / name
    path.write_text(f"name: se\n{head}\nlayers:\n{SE_LAYERS}  - {axpy_layer}\n", encoding="utf-8")
    return path


def netdef_run(*args, env=None, cwd=None):
    """`python -m netdef ARGS` as a real child process: (status, stdout, stderr)."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    result = subprocess.run([sys.executable, "-m", "netdef", *map(str, args)], capture_output=True, text=True,
                            env=environment, cwd=cwd, timeout=300)
    return result.returncode, result.stdout, result.stderr


def test_a_plugin_type_computes_a_times_x_plus_y(folder, registry):
    net = netdef.read_net(se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv, data], top: out}"))
    info = net.info("TRAIN")
    assert info.row("axpy").shapes == [(2, 4, 3, 3)] and info.row("axpy").macs == 4 * 3 * 3
    model = net.compile("TRAIN")
    data = torch.randn(2, 4, 3, 3)
    out = model(data=data)
    gate = torch.sigmoid(data.mean(dim=(2, 3), keepdim=True))
    assert torch.allclose(out["out"], gate * model.conv(data) + data, atol=1e-6)
    # A compiled net holding the plugin's module deep-copies and pickles whole, as a built-in one does.
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin.outputs == model.outputs and torch.equal(twin(data=data)["out"], out["out"])


def test_plugin_layers_are_validated_with_positioned_errors(folder, netdef_cli, registry):
    path = se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv], top: out, axpy_param: {}}")
    code, _, err = netdef_cli("check", path)
    assert code == 2
    assert f"{path}:8:62: layer 'axpy' (Axpy): unknown key 'axpy_param'" in err
    path = se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv], top: out}")
    code, _, err = netdef_cli("check", path)
    assert f"{path}:8:38: layer 'axpy' (Axpy): wrong number of bottoms (expected 3 bottoms, found 2)" in err
    path = se_net(folder, "{name: axpy, type: Axpy, bottom: [conv, gate, data], top: out}")
    code, _, err = netdef_cli("check", path)
    assert code == 2
    assert f"{path}:8:51: layer 'axpy' (Axpy): Axpy's x and y (bottoms 2 and 3) must have equal shapes " \
           "(expected shape [2, 4, 1, 1], found shape [2, 4, 3, 3])" in err


def test_plugins_naming_a_missing_or_broken_module_is_a_positioned_error(tmp_path, netdef_cli, registry):
    write(tmp_path / "broken.py", "raise ValueError('no configuration file')\n")
    write(tmp_path / "empty.py", "WIDTH = 3\n")
    path = write(tmp_path / "net.yaml", """\
        name: missing
        plugins: [axpy_layers, broken, empty, "os; rm"]
        layers:
          - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 2]}}}
        """)
    code, out, err = netdef_cli("check", path)
    assert code == 2 and "Traceback" not in err
    assert f"{path}:2:11: no Python module named 'axpy_layers' (searched {tmp_path}, then sys.path); put " \
           "axpy_layers.py beside the net file, or install it" in err
    assert f"{path}:2:24: plugin module 'broken' failed while importing: ValueError: no configuration file" in err
    assert f"{path}:2:32: plugin module 'empty' defines no layer class" in err
    assert f"{path}:2:39: 'os; rm' is not a Python module name" in err


def test_a_type_unknown_without_its_plugin_says_so(folder, netdef_cli):
    path = se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv, data], top: out}", head="")
    code, _, err = netdef_cli("check", path)
    assert code == 2 and "unknown layer type 'Axpy'" in err


SHIFT = """\
    from netdef.fields import Float
    from netdef.layers import Layer


    class Shift(Layer):
        \"\"\"A field to validate: only checked here, never built.\"\"\"
        blocks = {"shift_param": {"shift": Float(0.0, "added to every value", minimum=-10)}}
    """


def test_type_python_names_the_class_caffe_style(folder, netdef_cli, registry):
    layer = "{name: axpy, type: Python, bottom: [gate, conv, data], top: out, python_param: {module: axpy, layer: Axpy}}"
    python = netdef.read_net(se_net(folder, layer, head="", name="python.yaml"))
    assert "Axpy" not in LAYERS  # Caffe's form registers no type
    native = netdef.read_net(se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv, data], top: out}"))
    for phase in ("TRAIN", "TEST"):
        assert [(r.name, r.shapes, r.params, r.macs) for r in python.info(phase).layers] == \
            [(r.name, r.shapes, r.params, r.macs) for r in native.info(phase).layers]
    data = torch.randn(2, 4, 3, 3)
    twin = python.compile("TRAIN")
    twin.load_state_dict(native.compile("TRAIN").state_dict())
    assert torch.allclose(twin(data=data)["out"], native.compile("TRAIN", share_with=twin)(data=data)["out"])

    write(folder / "shift.py", SHIFT)
    path = write(folder / "bad.yaml", """\
        name: bad
        layers:
          - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 2]}}}
          - {name: a, type: Python, bottom: data, top: a, python_param: {module: shift, layer: Shift, param_str: "shift: -20"}}
          - {name: b, type: Python, bottom: data, top: b, python_param: {module: shift, layer: Shift, param_str: "shiftt: 1"}}
          - {name: c, type: Python, bottom: data, top: c, python_param: {module: shift, layer: Shif}}
          - {name: d, type: Python, bottom: data, top: d, python_param: {module: nosuch, layer: Shift}}
          - {name: e, type: Python, bottom: [data, data], top: e, python_param: {module: shift, layer: Shift}}
        """)
    code, _, err = netdef_cli("check", path)
    assert code == 2
    assert f"{path}:4:106: layer 'a' (Python): param_str: 'shift' is out of range (expected >= -10, found -20)" in err
    assert f"{path}:5:106: layer 'b' (Python): param_str: unknown key 'shiftt' in shift_param" in err
    assert f"{path}:6:88: layer 'c' (Python): module 'shift' has no layer class 'Shif'" in err
    assert f"{path}:7:74: layer 'd' (Python): no Python module named 'nosuch' (searched {folder}, then sys.path)" in err
    assert f"{path}:8:37: layer 'e' (Python): wrong number of bottoms for Shift (expected 1, found 2)" in err


def solver(folder, **values):
    settings = {"net": str(EXAMPLE / "se_net.yaml"), "base_lr": 0.05, "lr_policy": "fixed", "momentum": 0.9,
                "display": 1, "max_iter": 4, "test_iter": 1, "test_interval": 4, "snapshot": 2,
                "snapshot_prefix": str(folder / "snaps" / "se"), "random_seed": 1, "device": "cpu"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "solver.yaml"
    path.write_text(yaml.safe_dump({**settings, **values}), encoding="utf-8")
    return path


def test_the_example_trains_snapshots_and_resumes_as_a_built_in_type(tmp_path):
    code, straight, err = netdef_run("train", solver(tmp_path / "straight"), cwd=tmp_path)
    assert code == 0, err
    losses = [float(line.rsplit("=", 1)[1]) for line in straight.splitlines() if ", loss = " in line]
    assert len(losses) == 5 and all(loss == loss for loss in losses)
    code, out, err = netdef_run("train", solver(tmp_path / "split", max_iter=2), cwd=tmp_path)
    assert code == 0, err
    code, out, err = netdef_run("train", solver(tmp_path / "split"), "--snapshot",
                                tmp_path / "split" / "snaps" / "se_iter_2.pt", cwd=tmp_path)
    assert code == 0, err
    first = torch.load(tmp_path / "straight" / "snaps" / "se_iter_4.pt", weights_only=True)
    second = torch.load(tmp_path / "split" / "snaps" / "se_iter_4.pt", weights_only=True)
    assert first["iteration"] == second["iteration"] == 4
    assert any(key.startswith("se1_up.") for key in first["weights"])
    for key, tensor in first["weights"].items():
        assert torch.equal(tensor, second["weights"][key]), key


def test_an_installed_plugin_is_a_type_of_the_schema_and_needs_no_plugins_line(tmp_path):
    """A distribution declaring a `netdef.layers` entry point (here a dist-info folder on PYTHONPATH, as
    pip would install it) registers its types in every netdef process: the schema lists them for editors."""
    site = tmp_path / "site"
    info = site / "axpy_layer-1.0.dist-info"
    info.mkdir(parents=True)
    shutil.copy(EXAMPLE / "axpy.py", site / "axpy.py")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: axpy-layer\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[netdef.layers]\nAxpy = axpy:Axpy\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    code, out, err = netdef_run("schema", "net", env=env)
    assert code == 0, err
    schema = json.loads(out)
    assert "layer.Axpy" in schema["$defs"] and "Axpy" in schema["$defs"]["entry"]["else"]["properties"]["type"]["enum"]
    assert schema["$defs"]["layer.Axpy"]["description"].startswith("top = a * x + y")
    net = se_net(tmp_path, "{name: axpy, type: Axpy, bottom: [gate, conv, data], top: out}", head="")
    code, out, err = netdef_run("summary", net, env=env)
    assert code == 0, err
    assert re.search(r"^axpy +Axpy +2x4x3x3 ", out, re.M), out
    # Without the distribution, the same net does not know the type.
    assert netdef_run("check", net)[0] == 2


def test_a_plugin_layer_exports_to_onnx_and_runs_in_onnxruntime(folder, netdef_cli, registry):
    onnxruntime = pytest.importorskip("onnxruntime")
    net = se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv, data], top: out}")
    code, out, err = netdef_cli("export", net, "-o", folder / "se.onnx")
    assert code == 0, err
    data = torch.randn(2, 4, 3, 3)
    expected = netdef.load_net(net, phase="TEST")(data=data)["out"].detach().numpy()
    session = onnxruntime.InferenceSession(str(folder / "se.onnx"))
    (got,) = session.run(None, {session.get_inputs()[0].name: data.numpy()})
    assert abs(got - expected).max() < 1e-5


def test_netdef_expand_keeps_the_plugins_line(folder, netdef_cli, registry):
    net = se_net(folder, "{name: axpy, type: Axpy, bottom: [gate, conv, data], top: out}")
    code, out, err = netdef_cli("expand", net, "-o", folder / "flat.yaml")
    assert code == 0, err
    flat = yaml.safe_load((folder / "flat.yaml").read_text())
    assert flat["plugins"] == ["axpy"] and flat["layers"][-1]["type"] == "Axpy"
    code, out, err = netdef_cli("check", folder / "flat.yaml")
    assert code == 0, err


def test_param_str_must_be_a_yaml_mapping_of_the_class_s_fields(folder, netdef_cli, registry):
    write(folder / "shift.py", SHIFT)
    path = write(folder / "net.yaml", """\
        name: param_str
        layers:
          - {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 4, 3, 3]}}}
          - {name: a, type: Python, bottom: [data, data, data], top: a, python_param: {module: axpy, layer: Axpy, param_str: "x: 1"}}
          - {name: b, type: Python, bottom: data, top: b, python_param: {module: shift, layer: Shift, param_str: "[1, 2]"}}
          - {name: c, type: Python, bottom: data, top: c, python_param: {module: shift, layer: Shift, param_str: "shift: {"}}
        """)
    code, _, err = netdef_cli("check", path)
    assert code == 2
    assert f"{path}:4:118: layer 'a' (Python): Axpy has no parameters (expected an empty param_str, found x: 1)" in err
    assert f"{path}:5:106: layer 'b' (Python): param_str must be a mapping" in err
    assert f"{path}:6:106: layer 'c' (Python): param_str is not valid YAML" in err


def test_a_plugin_is_searched_in_the_net_s_folder_then_on_sys_path(tmp_path, monkeypatch, netdef_cli, registry):
    probe = "from netdef.layers import Layer\n\n\nclass {name}(Layer):\n    \"\"\"Found in {where}.\"\"\"\n"
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    monkeypatch.syspath_prepend(str(elsewhere))
    write(elsewhere / "probe_order.py", probe.format(name="FromSysPath", where="sys.path"))
    write(elsewhere / "probe_only_there.py", probe.format(name="OnlyOnSysPath", where="sys.path"))
    nets = tmp_path / "nets"
    nets.mkdir()
    write(nets / "probe_order.py", probe.format(name="FromNetFolder", where="the net's folder"))
    path = write(nets / "net.yaml", """\
        name: order
        plugins: [probe_order, probe_only_there]
        layers:
          - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 2]}}}
          - {name: a, type: FromNetFolder, bottom: data, top: a}
          - {name: b, type: OnlyOnSysPath, bottom: a, top: b}
        """)
    code, out, err = netdef_cli("check", path)
    assert code == 0, err
    assert "FromNetFolder" in LAYERS and "OnlyOnSysPath" in LAYERS and "FromSysPath" not in LAYERS


def test_the_example_trains_data_parallel_as_one_process(tmp_path):
    """Every rank imports the plugin module the net names: 2 ranks at batch 32 (gloo, --nproc 2) train
    the example's Axpy net to the weights of 1 process at batch 64 (within 1e-5); Caffe's Python layer
    refused multi-GPU training ("PythonLayer does not support CLI Multi-GPU")."""
    shutil.copy(EXAMPLE / "axpy.py", tmp_path / "axpy.py")
    net = (EXAMPLE / "se_net.yaml").read_text(encoding="utf-8").replace("../../data/mnist5k",
                                                                       str(ROOT / "data" / "mnist5k"))
    runs = {}
    for name, batch, nproc in [("one", 64, []), ("two", 32, ["--nproc", "2"])]:
        folder = tmp_path / name
        folder.mkdir()
        (tmp_path / f"{name}.yaml").write_text(net.replace("batch_size: 64", f"batch_size: {batch}")
                                               .replace("batch_size: 100", f"batch_size: {batch}"), encoding="utf-8")
        code, out, err = netdef_run("train", solver(folder, net=str(tmp_path / f"{name}.yaml")), *nproc, cwd=tmp_path)
        assert code == 0, out[-2000:] + err[-2000:]
        runs[name] = torch.load(folder / "snaps" / "se_iter_4.pt", weights_only=True)["weights"]
    assert any(key.startswith("se1_up.") for key in runs["one"])
    for key, tensor in runs["one"].items():
        assert torch.allclose(tensor, runs["two"][key], atol=1e-5, rtol=0), key
