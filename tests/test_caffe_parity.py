"""netdef against real BVLC Caffe files: the prototxt reader, `netdef import`, LeNet layer for layer, and the
parameter counts of the reference models (reference/caffe.md §k)."""
from __future__ import annotations

import copy
import math

import pytest
import torch

import netdef
from netdef.fields import apply_defaults
from netdef.layers import LAYERS
from netdef.front.load import load_yaml
from netdef.caffe.prototxt import load_prototxt, net_from_prototxt, parse_prototxt
from netdef.front.schema import layer_fields

from conftest import ROOT, SHARED, needs_shared

CAFFE = SHARED / "caffe"
needs_caffe = needs_shared("caffe")  # the BVLC Caffe reference files, in ../shared beside the repository


# ---------------------------------------------------------------- the protobuf text format

def test_parses_messages_repeated_fields_strings_enums_numbers_and_comments():
    text = r"""
    name: "tiny"  # a comment
    layer {
      name: 'conv' type: "Conv" "olution"   # adjacent strings are one
      bottom: "data" top: "conv"
      param { lr_mult: 1 } param: { lr_mult: 2.0 decay_mult: 0 }
      convolution_param < num_output: 0x10, kernel_size: 3; pad: [1, 2] weight_filler { type: "xavier" std: 1e-2 } >
    }
    layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" relu_param { negative_slope: -.5 } }
    force_backward: true
    state { phase: TEST stage: "a\tb\"c" }
    nan_and_inf: [inf, -inf, 1.5f]
    """
    net = parse_prototxt(text)
    assert net["name"] == "tiny" and net["force_backward"] is True
    conv, relu = net["layer"]
    assert conv["name"] == "conv" and conv["type"] == "Convolution"
    assert conv["param"] == [{"lr_mult": 1}, {"lr_mult": 2.0, "decay_mult": 0}]
    assert type(conv["param"][0]["lr_mult"]) is int and type(conv["param"][1]["lr_mult"]) is float
    assert conv["convolution_param"] == {"num_output": 16, "kernel_size": 3, "pad": [1, 2],
                                         "weight_filler": {"type": "xavier", "std": 0.01}}
    assert relu["relu_param"]["negative_slope"] == -0.5
    assert net["state"] == {"phase": "TEST", "stage": 'a\tb"c'}, "enums are names; C escapes are decoded"
    assert net["nan_and_inf"] == [math.inf, -math.inf, 1.5]


@pytest.mark.parametrize("text, where, expected", [
    ("layer { name: \"a\"\n  type: \"ReLU\"\n", "3:1", "expected a field name or '}', found the end of the file"),
    ("layer {\n  name: \"a\" }\n}", "3:1", "expected a field name, found '}'"),
    ("name \"x\"", "1:6", "expected ':' or '{' or '<', found '\"x\"'"),
    ("layer {\n  bottom: @data\n}", "2:11", "unexpected character '@'"),
])
def test_syntax_errors_are_positioned(text, where, expected):
    with pytest.raises(netdef.NetdefError) as caught:
        parse_prototxt(text, "bad.prototxt")
    assert str(caught.value).startswith(f"bad.prototxt:{where}: ") and expected in str(caught.value)


def test_net_dicts_have_netdef_shape():
    net = net_from_prototxt("""
        name: "n"
        input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layer { name: "c" type: "Convolution" bottom: "data" top: "c"
                param { lr_mult: 1 } convolution_param { num_output: 2 kernel_size: 3 } }
        layer { name: "p" type: "Pooling" bottom: "c" top: "p" include { phase: TEST } pooling_param { kernel_size: 2 } }
    """)
    data, conv, pool = net["layers"]
    assert data == {"name": "input", "type": "Input", "top": ["data"],
                    "input_param": {"shape": [{"dim": [1, 3, 8, 8]}]}}, "Caffe's UpgradeNetInput"
    assert conv["bottom"] == ["data"] and conv["top"] == ["c"] and conv["param"] == [{"lr_mult": 1}]
    assert conv["convolution_param"] == {"num_output": 2, "kernel_size": [3]}, "repeated Caffe fields are lists"
    assert pool["include"] == [{"phase": "TEST"}] and pool["pooling_param"] == {"kernel_size": 2}
    legacy = net_from_prototxt('layers { name: "c" type: CONVOLUTION blobs_lr: 1 }', "old.prototxt")
    assert legacy["layers"] == [{"name": "c", "type": "Convolution", "param": [{"lr_mult": 1}]}], "V1, upgraded"


# ---------------------------------------------------------------- LeNet, layer for layer

EXCEPTED_DATA_FIELDS = ("source", "backend", "split")  # where the data lives, not what the net is


def after_defaults(layer: dict) -> dict:
    layer = copy.deepcopy(layer)
    for key in EXCEPTED_DATA_FIELDS:
        (layer.get("data_param") or {}).pop(key, None)
    return apply_defaults(layer_fields(LAYERS[layer["type"]]), layer)


@needs_caffe
def test_lenet_yaml_equals_caffes_lenet_train_test_layer_for_layer():
    ours, _ = load_yaml(ROOT / "nets" / "lenet.yaml")
    theirs = load_prototxt(CAFFE / "examples" / "mnist" / "lenet_train_test.prototxt")
    assert ours["name"] == theirs["name"] == "LeNet"
    assert [layer["name"] for layer in ours["layers"]] == [layer["name"] for layer in theirs["layers"]]
    for mine, caffes in zip(ours["layers"], theirs["layers"]):
        assert after_defaults(mine) == after_defaults(caffes), mine["name"]


# ---------------------------------------------------------------- the reference models

REFERENCE_PARAMS = {  # reference/caffe.md §k
    "models/bvlc_alexnet/deploy.prototxt": 60_965_224,
    "models/bvlc_reference_caffenet/deploy.prototxt": 60_965_224,
    "models/bvlc_googlenet/deploy.prototxt": 6_998_552,
    "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt": 57_687_624,
    "models/finetune_flickr_style/deploy.prototxt": 56_950_164,
    "examples/cifar10/cifar10_quick.prototxt": 145_578,
    "examples/cifar10/cifar10_full.prototxt": 89_578,
    "examples/mnist/lenet.prototxt": 431_080,
}


@needs_caffe
@pytest.mark.parametrize("prototxt, params", REFERENCE_PARAMS.items(), ids=[p.split("/")[-2] for p in REFERENCE_PARAMS])
def test_imported_reference_models_have_caffes_parameter_counts(tmp_path, netdef_cli, prototxt, params):
    converted = tmp_path / "net.yaml"
    assert netdef_cli("import", CAFFE / prototxt, "-o", converted)[0] == 0
    for phase in ("TRAIN", "TEST"):
        assert netdef.summarize(converted, phase=phase).total_params == params
        assert netdef.summarize(CAFFE / prototxt, phase=phase).total_params == params, "the prototxt read as it is"


@needs_caffe
def test_imported_net_compiles_and_runs(tmp_path, netdef_subprocess):
    converted = tmp_path / "cifar10_quick.yaml"
    result = netdef_subprocess("import", CAFFE / "examples/cifar10/cifar10_quick.prototxt", "-o", converted)
    assert result.returncode == 0, result.stderr
    text = converted.read_text()
    assert text.startswith("# Imported from cifar10_quick.prototxt by netdef import") and "kernel_size: 5," in text
    net = netdef.load_net(converted, phase="TEST")
    probabilities = net(data=torch.randn(10, 3, 32, 32))["prob"]
    assert probabilities.shape == (10, 10)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(10))


def test_import_reports_bad_prototxt_with_position(tmp_path, netdef_cli):
    broken = tmp_path / "broken.prototxt"
    broken.write_text('name: "x"\nlayer {\n  name: "a"\n')
    status, _, err = netdef_cli("import", broken)
    assert status == 2 and f"{broken}:4:1: prototxt syntax error" in err
    assert not broken.with_suffix(".yaml").exists()
