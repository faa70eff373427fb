"""Caffe's text files as they are: every command reads .prototxt nets and solvers (errors at the prototxt's
own lines), V1 nets upgraded, fork fields mapped, Caffe's solver fields and tolerances, and `netdef import`
with repeated structure re-rolled into blocks, over every prototxt in ../shared/caffe."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

import netdef
from netdef.caffe.prototxt import read_prototxt
from netdef.fields import apply_defaults, as_list
from netdef.front.schema import layer_fields
from netdef.layers import LAYERS

from conftest import SHARED, needs_shared

CAFFE = SHARED / "caffe"
needs_caffe = needs_shared("caffe")
PROTOTXTS = sorted(CAFFE.rglob("*.prototxt")) if CAFFE.exists() else []
# What a Caffe file here may lack: its data (LMDBs made by Caffe's scripts, ImageNet, Flickr images).
MISSING_DATA = ("is not a folder", "does not exist")


def _layers(net_path, netdef_cli) -> list:
    """`netdef expand`'s layers, every field with its default (one value or a list of one read alike)."""
    status, out, err = netdef_cli("expand", net_path)
    assert status == 0, err
    return [_resolved_paths(apply_defaults(layer_fields(LAYERS[layer["type"]]), layer), net_path.parent)
            for layer in yaml.safe_load(out)["layers"]]


def _resolved_paths(layer: dict, folder) -> dict:
    """Relative paths that exist (data sources: the import rewrites them for its own folder) made absolute."""
    def resolved(value):
        if isinstance(value, dict):
            return {key: resolved(item) for key, item in value.items()}
        return str((folder / value).resolve()) if isinstance(value, str) and value and (folder / value).exists() else value
    return {key: resolved(value) if key.endswith("_param") else value for key, value in layer.items()}


def _only_missing_data(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return bool(lines) and all(any(text in line for text in MISSING_DATA) for line in lines)


def _written(out: str) -> list:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")]


# ---------------------------------------------------------------- every Caffe file here

@needs_caffe
@pytest.mark.parametrize("prototxt", PROTOTXTS, ids=[str(p.relative_to(CAFFE)) for p in PROTOTXTS])
def test_every_prototxt_imports_checks_and_expands_to_the_original(tmp_path, netdef_cli, prototxt):
    """Each file imports; the import (and the prototxt itself) checks, or names only missing data; each
    imported net expands to the prototxt's own layers, layer for layer."""
    out = tmp_path / (prototxt.stem + ".yaml")
    status, stdout, err = netdef_cli("import", prototxt, "-o", out)
    if status != 0:  # only lenet_auto_solver: its net is made by a Python script Caffe ships
        assert "net file not found: mnist/lenet_auto_train.prototxt" in err and prototxt.name == "lenet_auto_solver.prototxt"
        return
    for checked in (prototxt, out):
        status, _, err = netdef_cli("check", checked)
        assert status == 0 or _only_missing_data(err), err
    document, _ = read_prototxt(prototxt.read_text(), str(prototxt))
    if "layers" in document:
        assert _layers(out, netdef_cli) == _layers(prototxt, netdef_cli)
    else:  # a solver: its nets are written beside it, and point at the same layers
        nets = [tmp_path / name for name in _written(stdout)[:-1]]
        assert nets and all(net.exists() for net in nets)
        for net in nets:
            assert _layers(net, netdef_cli), net


MODEL_ZOO_PARAMS = {  # Caffe's own counts of these files' learnable blobs
    "models/bvlc_alexnet/deploy.prototxt": 60_965_224,
    "models/bvlc_googlenet/deploy.prototxt": 6_998_552,
}


def _googlenet_params_from_blob_shapes(prototxt) -> int:
    """An independent count: walk the prototxt's layers with their channel counts (Concat adds them, pooling
    and ReLU keep them) and add each Convolution's and InnerProduct's weight and bias sizes."""
    net = netdef.caffe.prototxt.load_prototxt(prototxt)
    channels, spatial, total = {}, {}, 0
    for layer in net["layers"]:
        bottoms, tops = layer.get("bottom", []), layer.get("top", [])
        if layer["type"] == "Input":
            dim = layer["input_param"]["shape"][0]["dim"]
            channels[tops[0]], spatial[tops[0]] = dim[1], dim[2] * dim[3]
        elif layer["type"] == "Convolution":
            p = layer["convolution_param"]
            k = p["kernel_size"][0]
            total += p["num_output"] * channels[bottoms[0]] * k * k + p["num_output"]
            channels[tops[0]] = p["num_output"]
        elif layer["type"] == "InnerProduct":
            n = layer["inner_product_param"]["num_output"]
            total += n * channels[bottoms[0]] * spatial.get(bottoms[0], 1) + n
            channels[tops[0]], spatial[tops[0]] = n, 1
        elif layer["type"] == "Concat":
            channels[tops[0]] = sum(channels[b] for b in bottoms)
        else:
            channels[tops[0]] = channels[bottoms[0]]
        if layer["type"] == "Pooling" and layer["pooling_param"].get("kernel_size") == 7:
            spatial[tops[0]] = 1  # the 7x7 average pooling before the classifier
    return total


@needs_caffe
@pytest.mark.parametrize("prototxt, params", MODEL_ZOO_PARAMS.items(), ids=list(MODEL_ZOO_PARAMS))
def test_model_zoo_parameter_counts_of_the_import(tmp_path, netdef_cli, prototxt, params):
    out = tmp_path / "net.yaml"
    assert netdef_cli("import", CAFFE / prototxt, "-o", out)[0] == 0
    assert netdef.summarize(out, phase="TEST").total_params == params
    if "googlenet" in prototxt:
        # from the blob shapes, and the published figure: "about 7 million" (Szegedy et al. 2014, deploy net
        # without the auxiliary classifiers, which this file lacks)
        assert _googlenet_params_from_blob_shapes(CAFFE / prototxt) == params
        assert 6.9e6 < params < 7.1e6


# ---------------------------------------------------------------- blocks re-rolled

@needs_caffe
def test_googlenet_inception_modules_become_one_block(tmp_path, netdef_cli):
    out = tmp_path / "googlenet.yaml"
    status, _, err = netdef_cli("import", CAFFE / "models/bvlc_googlenet/deploy.prototxt", "-o", out)
    assert status == 0 and "143 layers as 1 block used 9 times" in err
    net = yaml.safe_load(out.read_text())
    (name, block), = net["blocks"].items()
    assert name == "inception" and len(block["layers"]) == 14
    uses = [entry for entry in net["layers"] if "use" in entry]
    assert [entry["name"] for entry in uses] == [f"inception_{m}" for m in
                                                ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert uses[0]["with"]["num_output_3x3"] == 128 and uses[-1]["with"]["num_output_3x3"] == 384
    assert len(out.read_text().splitlines()) < len((CAFFE / "models/bvlc_googlenet/deploy.prototxt").read_text().splitlines()) / 4


def _bottleneck(unit, bottom, mid, out, stride, project) -> str:
    """One of Kaiming He's ResNet bottleneck units as his deploy prototxts write it."""
    def conv(name, bottom, n, k, s, pad=0):
        return (f'layer {{ bottom: "{bottom}" top: "{name}" name: "{name}" type: "Convolution"\n'
                f'  convolution_param {{ num_output: {n} kernel_size: {k} pad: {pad} stride: {s} bias_term: false }} }}\n')

    def bn_scale(branch, blob):
        return (f'layer {{ bottom: "{blob}" top: "{blob}" name: "bn{unit}_{branch}" type: "BatchNorm"\n'
                f'  batch_norm_param {{ use_global_stats: true }} }}\n'
                f'layer {{ bottom: "{blob}" top: "{blob}" name: "scale{unit}_{branch}" type: "Scale"\n'
                f'  scale_param {{ bias_term: true }} }}\n')

    def relu(blob, name):
        return f'layer {{ bottom: "{blob}" top: "{blob}" name: "{name}" type: "ReLU" }}\n'
    text, shortcut = "", bottom
    if project:
        shortcut = f"res{unit}_branch1"
        text += conv(shortcut, bottom, out, 1, stride) + bn_scale("branch1", shortcut)
    a, b, c = (f"res{unit}_branch2{x}" for x in "abc")
    text += conv(a, bottom, mid, 1, stride) + bn_scale("branch2a", a) + relu(a, f"{a}_relu")
    text += conv(b, a, mid, 3, 1, 1) + bn_scale("branch2b", b) + relu(b, f"{b}_relu")
    text += conv(c, b, out, 1, 1) + bn_scale("branch2c", c)
    text += (f'layer {{ bottom: "{shortcut}" bottom: "{c}" top: "res{unit}" name: "res{unit}" type: "Eltwise" }}\n'
             + relu(f"res{unit}", f"res{unit}_relu"))
    return text


def resnet_prototxt(units_per_stage) -> str:
    """A deploy prototxt laid out as Kaiming He's ResNet-50/101/152 files: unit names 2a, 2b, 3b1 ..."""
    text = ('name: "ResNet"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n'
            'layer { bottom: "data" top: "conv1" name: "conv1" type: "Convolution"\n'
            '  convolution_param { num_output: 64 kernel_size: 7 pad: 3 stride: 2 } }\n'
            'layer { bottom: "conv1" top: "conv1" name: "conv1_relu" type: "ReLU" }\n'
            'layer { bottom: "conv1" top: "pool1" name: "pool1" type: "Pooling"\n'
            '  pooling_param { kernel_size: 3 stride: 2 pool: MAX } }\n')
    bottom = "pool1"
    for stage, count in enumerate(units_per_stage, start=2):
        mid = 64 * 2 ** (stage - 2)
        for k in range(count):
            letter = "a" if k == 0 else ("bcdefgh"[k - 1] if count <= 3 else f"b{k}")
            unit = f"{stage}{letter}"
            text += _bottleneck(unit, bottom, mid, 4 * mid, 2 if k == 0 and stage > 2 else 1, k == 0)
            bottom = f"res{unit}"
    return text + (f'layer {{ bottom: "{bottom}" top: "pool5" name: "pool5" type: "Pooling"\n'
                   '  pooling_param { kernel_size: 7 stride: 1 pool: AVE } }\n'
                   'layer { bottom: "pool5" top: "fc1000" name: "fc1000" type: "InnerProduct"\n'
                   '  inner_product_param { num_output: 1000 } }\n'
                   'layer { bottom: "fc1000" top: "prob" name: "prob" type: "Softmax" }\n')


def test_resnet152_bottleneck_units_become_one_block_used_per_stage(tmp_path, netdef_cli):
    source = tmp_path / "ResNet-152-deploy.prototxt"
    source.write_text(resnet_prototxt((3, 8, 36, 3)))
    out = tmp_path / "resnet152.yaml"
    status, _, err = netdef_cli("import", source, "-o", out)
    assert status == 0, err
    net = yaml.safe_load(out.read_text())
    uses = [entry for entry in net["layers"] if "use" in entry]
    assert sum(entry.get("repeat", 1) for entry in uses) == 50, "every bottleneck unit is a block instance"
    assert len(net["blocks"]) == 1 and len(uses) == 8, "one block, two uses per stage: its projection unit, the rest"
    repeated = {entry["name"]: entry["repeat"] for entry in uses if "repeat" in entry}
    assert repeated["3b${i}"] == 7 and repeated["4b${i}"] == 35 and list(repeated.values()) == [2, 7, 35, 2]
    (block,) = net["blocks"].values()
    assert sum("if" in layer for layer in block["layers"]) == 3, "the projection shortcut's conv, bn, scale"
    assert _layers(out, netdef_cli) == _layers(source, netdef_cli)
    assert netdef.summarize(out, phase="TEST").total_params == netdef.summarize(source, phase="TEST").total_params


# ---------------------------------------------------------------- reading prototxt directly

def test_a_broken_prototxt_is_a_positioned_prototxt_error_never_yaml(tmp_path, netdef_cli):
    broken = tmp_path / "net.prototxt"
    broken.write_text('name: "x"\nlayer {\n  name: "a" type: "ReLU"\n  bottom: "data" top: "a"\n  relu_param { : }\n}\n')
    for command in (["summary"], ["check"], ["draw", "-o", tmp_path / "net.svg"], ["expand"]):
        status, _, err = netdef_cli(*command, broken)
        assert status == 2 and f"{broken}:5:16: prototxt syntax error" in err and "YAML" not in err, (command, err)


def test_errors_point_at_the_prototxt_lines(tmp_path, netdef_cli):
    net = tmp_path / "net.prototxt"
    net.write_text('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
                   'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"\n'
                   '  inner_product_param { num_output: 10\n    bogus: 3 } }\n')
    status, _, err = netdef_cli("check", net)
    assert status == 2 and f"{net}:5:5: layer 'fc' (InnerProduct): unknown key 'bogus'" in err


V1_NET = """name: "old"
input: "data" input: "label"
input_dim: 2 input_dim: 3 input_dim: 16 input_dim: 16 input_dim: 2 input_dim: 1 input_dim: 1 input_dim: 1
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "fc" bottom: "label" }
"""
V2_NET = """name: "old"
layer { name: "input" type: "Input" top: "data" top: "label"
  input_param { shape { dim: [2, 3, 16, 16] } shape { dim: [2, 1, 1, 1] } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" }
"""


def test_v1_nets_are_upgraded_by_caffes_rules_and_ceil_mode_is_round_mode(tmp_path, netdef_cli):
    old, new = tmp_path / "v1.prototxt", tmp_path / "v2.prototxt"
    old.write_text(V1_NET)
    new.write_text(V2_NET)
    assert _layers(old, netdef_cli) == _layers(new, netdef_cli)
    pool = netdef.read_net(old).graph("TEST").layer("pool")
    assert pool.params["pooling_param"]["round_mode"] == "FLOOR"
    assert netdef.read_net(old).graph("TEST").layer("conv").param_spec(1)["lr_mult"] == 2


def test_a_caffe_data_layer_without_backend_reads_leveldb_as_caffe_does(tmp_path, netdef_cli):
    """caffe.proto's DataParameter.backend defaults to LEVELDB, netdef's Data to IDX: a prototxt that
    leaves it out means Caffe's default (and a missing database is named at its source line)."""
    net = tmp_path / "net.prototxt"
    net.write_text('name: "n"\nlayer { name: "data" type: "Data" top: "data" top: "label"\n'
                   '  data_param { source: "train_leveldb" batch_size: 4 } }\n')
    status, out, err = netdef_cli("expand", net)
    assert status == 0, err
    assert yaml.safe_load(out)["layers"][0]["data_param"]["backend"] == "LEVELDB"
    status, _, err = netdef_cli("check", net)
    assert status == 2 and "net.prototxt:3:24: layer 'data' (Data): data source 'train_leveldb'" in err


def test_v1_unknown_type_and_v0_nets_are_positioned_errors(tmp_path, netdef_cli):
    unknown = tmp_path / "unknown.prototxt"
    unknown.write_text('layers {\n  name: "x"\n  type: CONVOLUTON\n}\n')
    status, _, err = netdef_cli("check", unknown)
    assert status == 2 and f"{unknown}:3:3: unknown V1 layer type 'CONVOLUTON'" in err
    v0 = tmp_path / "v0.prototxt"
    v0.write_text('layers {\n  layer { name: "conv1" type: "conv" num_output: 96 }\n  bottom: "data"\n}\n')
    status, _, err = netdef_cli("check", v0)
    assert status == 2 and f"{v0}:2:3: this is Caffe's V0 net format" in err and "upgrade_net_proto_text" in err


def test_a_loss_without_top_gets_one_and_blobless_duplicate_names_are_renamed(tmp_path, netdef_cli):
    net = tmp_path / "net.prototxt"
    net.write_text('input: "x" input_shape { dim: 4 dim: 6 }\ninput: "y" input_shape { dim: 4 dim: 6 }\n'
                   'layer { name: "loss" type: "EuclideanLoss" bottom: "x" bottom: "y" }\n'
                   'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "y" top: "xent"\n'
                   '  loss_weight: 0 }\n')
    graph = netdef.read_net(net).graph("TRAIN")
    assert [(spec.name, spec.tops) for spec in graph.layers[1:]] == [("loss", ["loss"]), ("loss_2", ["xent"])]
    assert graph.notes == [f"{net}:4:15: layer name 'loss' is used twice in phase TRAIN (first at line 3), as Caffe "
                           "allows; netdef names this one 'loss_2'"]
    assert graph.outputs == ["loss", "xent"]
    status, out, _ = netdef_cli("check", net)
    assert status == 0 and "\n  note: " + graph.notes[0] in out


@needs_caffe
def test_mnist_autoencoder_two_loss_layers_check(netdef_cli):
    net = netdef.read_net(CAFFE / "examples/mnist/mnist_autoencoder.prototxt")
    expanded = [layer["name"] for layer in net.expanded.layers]
    assert expanded.count("loss") == 2, "expand keeps Caffe's names"


# ---------------------------------------------------------------- solvers

SOLVER = """# a Caffe solver
net: "net.prototxt"
base_lr: 0.01
max_iter: 3
solver_type: NESTEROV
momentum: 0.9
solver_mode: CPU
test_compute_loss: true
snapshot_format: BINARYPROTO
train_state { level: 1 stage: "train-stage" }
"""


DUMMY_DATA = ('layer { name: "data" type: "DummyData" top: "x" top: "y"\n'
              '  dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 dim: 2 } } }\n')


def _net_file(tmp_path):
    (tmp_path / "net.prototxt").write_text(
        DUMMY_DATA +
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 2 } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }\n')


def test_caffe_solver_fields_have_caffes_meaning(tmp_path):
    from netdef.train.config import load_solver
    _net_file(tmp_path)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(SOLVER)
    config = load_solver(solver)
    assert config.type == "Nesterov" and config.device == "cpu" and config.net == "net.prototxt"
    assert config.train_state["level"] == 1 and config.train_state["stage"] == ("train-stage",)
    gpu = load_solver(_write(tmp_path, "gpu.prototxt", SOLVER.replace("solver_mode: CPU", "solver_mode: GPU\ndevice_id: 1")))
    assert gpu.device == "cuda:1"
    assert load_solver(_write(tmp_path, "auto.prototxt", SOLVER.replace("solver_mode: CPU", "solver_mode: GPU"))).device == "auto"


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def test_caffe_solver_fields_netdef_cannot_honour_are_refused_at_their_line(tmp_path, netdef_cli):
    _net_file(tmp_path)
    diff = _write(tmp_path, "diff.prototxt", SOLVER + "snapshot_diff: true\n")
    status, _, err = netdef_cli("check", diff)
    assert status == 2 and f"{diff}:11:16: netdef does not write gradients into snapshots" in err
    clash = _write(tmp_path, "clash.prototxt", SOLVER + 'type: "Adam"\n')
    status, _, err = netdef_cli("check", clash)
    assert status == 2 and f"{clash}:5:14: 'solver_type' and 'type' disagree" in err


def test_inline_nets_are_read_from_the_solver_file_with_its_positions(tmp_path, netdef_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run folder (runs/<solver>) is made where netdef runs
    inline = _write(tmp_path, "inline.prototxt", "base_lr: 0.1\nmax_iter: 2\ntest_iter: 1\nnet_param {\n"
                    + DUMMY_DATA +
                    '  layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 2 } }\n'
                    '  layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }\n}\n')
    status, out, err = netdef_cli("check", inline)
    assert status == 0, err
    broken = _write(tmp_path, "broken.prototxt", inline.read_text().replace("num_output: 2", "num_output: -2"))
    status, _, err = netdef_cli("check", broken)
    assert status == 2 and f"{broken}:7:" in err and "num_output" in err, err
    status, out, err = netdef_cli("import", inline, "-o", tmp_path / "imported" / "solver.yaml")
    assert status == 0 and (tmp_path / "imported" / "solver_net.yaml").exists()
    assert "net: solver_net.yaml" in (tmp_path / "imported" / "solver.yaml").read_text()
    status, _, err = netdef_cli("train", tmp_path / "imported" / "solver.yaml")
    assert status == 0, err


@needs_caffe
def test_imported_solver_keeps_its_comments_and_points_at_its_nets(tmp_path, netdef_cli):
    status, out, err = netdef_cli("import", CAFFE / "fixtures/lenet_solver.prototxt", "-o", tmp_path / "lenet_solver.yaml")
    assert status == 0, err
    text = (tmp_path / "lenet_solver.yaml").read_text()
    assert "# The learning rate policy\nlr_policy: inv\n" in text and "net: lenet_train_test.yaml\n" in text
    assert "solver_mode: CPU" in text


EXAMPLE_SOLVERS = sorted((CAFFE / "examples").rglob("*solver*.prototxt")) if CAFFE.exists() else []


def _cifar_lmdb(folder, records: int, rng) -> None:
    """A CIFAR-10-shaped Caffe LMDB (3 x 32 x 32 uint8 Datums, labels 0-9), standing in for the one Caffe's
    create_cifar10.sh makes from the CIFAR-10 download, which is not here."""
    import lmdb
    import numpy as np

    from netdef.data.datum import datum_bytes
    environment = lmdb.open(str(folder), map_size=1 << 26)
    with environment.begin(write=True) as transaction:
        for k in range(records):
            image = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
            transaction.put(f"{k:05d}".encode(), datum_bytes(image, int(rng.integers(0, 10))))
    environment.close()


@pytest.fixture(scope="module")
def caffe_root(tmp_path_factory):
    """A Caffe root as the example solvers expect to run from: examples/mnist and examples/cifar10 as
    shipped, with the data their scripts would make: the fixtures' mnist5k LMDBs (written by Caffe's
    convert_mnist_data) as mnist_{train,test}_lmdb, and CIFAR-shaped LMDBs with their mean.binaryproto."""
    import numpy as np

    from netdef.data.mean import write_binaryproto
    root = tmp_path_factory.mktemp("caffe_root")
    shutil.copytree(CAFFE / "examples", root / "examples")
    for split in ("train", "test"):
        shutil.copytree(CAFFE / "fixtures" / f"mnist5k_{split}_lmdb", root / "examples/mnist" / f"mnist_{split}_lmdb")
        _cifar_lmdb(root / "examples/cifar10" / f"cifar10_{split}_lmdb", 128, np.random.default_rng(len(split)))
    write_binaryproto(np.full((3, 32, 32), 120.0), root / "examples/cifar10/mean.binaryproto")
    return root


@needs_shared("caffe", "fixtures")
@pytest.mark.parametrize("solver", EXAMPLE_SOLVERS, ids=lambda p: p.name)
def test_every_example_solver_trains_after_import(caffe_root, tmp_path, netdef_cli, monkeypatch, solver):
    """Each of Caffe's example solvers, imported from a Caffe root (its paths are the root's), trains two
    iterations with its test pass (max_iter and test_iter cut; nothing else changed). lenet_auto_solver's
    nets are written by a Python script of Caffe's (examples/pycaffe), so its import names the missing file."""
    monkeypatch.chdir(caffe_root)
    written = tmp_path / solver.with_suffix(".yaml").name
    status, out, err = netdef_cli("import", solver.relative_to(CAFFE), "-o", written)
    if solver.name == "lenet_auto_solver.prototxt":
        assert status == 2 and "net file not found: mnist/lenet_auto_train.prototxt" in err
        return
    assert status == 0, err
    settings = yaml.safe_load(written.read_text())
    prefix = re.search(r'snapshot_prefix: "([^"]+)"', solver.read_text()).group(1)
    assert (written.parent / settings["snapshot_prefix"]).resolve() == (caffe_root / prefix).resolve()
    tests = len(as_list(settings.get("test_iter")))
    settings.update(max_iter=2, display=1, snapshot=0, test_interval=2, test_iter=[1] * tests,
                    snapshot_prefix=str(tmp_path / "snapshot"))  # not the root's: the cifar10_full solvers share one
    written.write_text(yaml.safe_dump(settings))
    status, out, err = netdef_cli("train", written, "--device", "cpu")
    assert status == 0, err
    assert "Iteration 1 " in out and "Optimization Done." in out
    if tests:
        assert "Test net output #0:" in out


SHORTENED = {r"max_iter: \d+": "max_iter: 2", r"test_iter: \d+": "test_iter: 1", r"test_interval: \d+": "test_interval: 2",
             r"snapshot: \d+": "snapshot: 2", r"display: \d+": "display: 1"}


@needs_shared("caffe", "fixtures")
@pytest.mark.parametrize("example, prefix", [("examples/mnist/lenet_solver.prototxt", "examples/mnist/lenet"),
                                             ("examples/cifar10/cifar10_quick_solver.prototxt", "examples/cifar10/cifar10_quick")])
def test_caffe_example_solvers_train_unimported_with_caffe_root_paths(caffe_root, tmp_path, netdef_cli, monkeypatch,
                                                                     example, prefix):
    """Caffe's solvers and nets read as they are, without `netdef import`: their paths (the net, the data, the
    mean file, the snapshot prefix) are the Caffe root's, found above the file wherever netdef runs, and the
    snapshots go where Caffe's would."""
    monkeypatch.chdir(tmp_path)
    text = (caffe_root / example).read_text()
    for pattern, value in SHORTENED.items():
        text = re.sub(pattern, value, text)
    shortened = (caffe_root / example).with_name("short_" + Path(example).name)
    shortened.write_text(text)
    status, out, err = netdef_cli("train", shortened, "--device", "cpu")
    assert status == 0, err
    assert (caffe_root / f"{prefix}_iter_2.pt").is_file() and "Test net output #0:" in out


@needs_shared("caffe", "fixtures")
def test_caffes_lenet_solver_trains_as_it_is(tmp_path, netdef_cli, monkeypatch):
    """The fixtures' lenet_solver.prototxt and lenet_train_test.prototxt, unchanged but for max_iter (a copy
    of the folder: reading an LMDB rewrites its lock file)."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "fixtures"
    shutil.copytree(CAFFE / "fixtures", folder, ignore=shutil.ignore_patterns("*.caffemodel", "*.solverstate", "*.log"))
    solver = folder / "lenet_solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 2000", "max_iter: 20").replace("display: 100", "display: 10"))
    status, out, err = netdef_cli("train", solver)
    assert status == 0, err
    log = out + err
    assert "Iteration 20" in log and "Test net output" in log


STAGED = """base_lr: 0.1
max_iter: 2
test_interval: 2
test_iter: 1
test_iter: 1
test_state { stage: "on-train" }
test_state { stage: "on-test" }
train_state { stage: "big" }
snapshot_prefix: "staged"
net_param {
  layer { name: "data" type: "DummyData" top: "x" top: "y" include { phase: TRAIN stage: "big" }
    dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 dim: 2 } } }
  layer { name: "data" type: "DummyData" top: "x" top: "y" include { phase: TEST stage: "on-train" }
    dummy_data_param { shape { dim: 3 dim: 6 } shape { dim: 3 dim: 2 } } }
  layer { name: "data" type: "DummyData" top: "x" top: "y" include { phase: TEST stage: "on-test" }
    dummy_data_param { shape { dim: 5 dim: 6 } shape { dim: 5 dim: 2 } } }
  layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 2 } }
  layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
  layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "l2" loss_weight: 0 }
}
"""


def test_train_state_test_state_and_weights_of_a_solver_are_used(tmp_path, netdef_cli, monkeypatch):
    """Caffe's lenet_consolidated_solver form: each test net in its own stage, the TRAIN net in train_state's;
    then the solver's `weights` start a second run."""
    monkeypatch.chdir(tmp_path)
    solver = _write(tmp_path, "staged.prototxt", STAGED)
    status, out, err = netdef_cli("train", solver)
    assert status == 0, err
    log = out + err
    assert "Test net output #0: l2" in log and log.count("Testing net") >= 2, log
    assert "layer name 'loss' is used twice in phase TRAIN (first at line 18), as Caffe allows; netdef names this " \
           "one 'loss_2'" in log
    wrong = _write(tmp_path, "wrong.prototxt", STAGED.replace('test_state { stage: "on-test" }\n', ""))
    status, _, err = netdef_cli("check", wrong)
    assert status == 2 and "give one 'test_state' per test net, or none" in err
    snapshot = next(tmp_path.glob("staged_iter_2*"))
    again = _write(tmp_path, "again.prototxt", STAGED.replace('"staged"', '"again"') + f'weights: "{snapshot.name}"\n')
    status, out, err = netdef_cli("train", again)
    assert status == 0 and f"Copying weights from {tmp_path / snapshot.name}" in out + err, out + err
