"""Blocks: arguments and defaults, typed templates, repeat, nesting, `if:`, imports, include/exclude on an
instance; `netdef expand` gives a flat net that is valid input again and summarizes identically; the
template language runs no code."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import netdef
from netdef.cli import main
from netdef.front.expand import TemplateError, evaluate

BLOCKS = Path(__file__).resolve().parent / "data" / "blocks"
NET = BLOCKS / "net.yaml"


@pytest.fixture(scope="module")
def layers():
    expanded = netdef.expand_file(NET)
    return {layer["name"]: layer for layer in expanded.layers}


def test_instances_expand_in_file_order_with_their_names(layers):
    def unit(name, shortcut=False):
        convs = [f"{name}_branch2a", f"{name}_branch2a_bn", f"{name}_branch2a_scale", f"{name}_branch2a_relu",
                 f"{name}_branch2b", f"{name}_branch2b_bn", f"{name}_branch2b_scale"]
        return convs + ([f"{name}_branch1"] if shortcut else []) + [name, f"{name}_relu"]
    head = ["{}_pool", "{}_drop", "{}_fc"]
    assert list(layers) == (["data", "conv1", "conv1_bn", "conv1_scale"] + unit("res2a") + unit("res2b")
                            + unit("res3a", shortcut=True) + unit("res3b")
                            + [n.format("head") for n in head] + [n.format("test_head") for n in head]
                            + ["loss", "accuracy"])


def test_arguments_defaults_and_typed_templates(layers):
    conv1 = layers["conv1"]["convolution_param"]
    assert conv1 == {"num_output": 8, "kernel_size": 5, "pad": 2, "stride": 1, "bias_term": False,
                     "weight_filler": {"type": "msra"}}
    assert layers["res2a_branch2a"]["convolution_param"]["kernel_size"] == 3, "the block's default k"
    assert layers["res3a_branch2a"]["convolution_param"]["stride"] == 2
    assert layers["res3b_branch2a"]["convolution_param"]["stride"] == 1
    num = layers["res3a_branch2b"]["convolution_param"]["num_output"]
    assert num == 16 and type(num) is int, "a whole-value template keeps the expression's type"
    slope = layers["res3a_branch2a_relu"]["relu_param"]["negative_slope"]
    assert slope == 0.1 and type(slope) is float
    assert layers["res2a_branch2a_relu"]["relu_param"]["negative_slope"] == 0.0, "the default slope"
    ratios = [layers[f"{h}_drop"]["dropout_param"]["dropout_ratio"] for h in ("head", "test_head")]
    assert ratios == [0.5, 0.0]


def test_repeat_chains_instances_and_nesting_resolves_inner_names(layers):
    assert layers["res2a_branch2a"]["bottom"] == "conv1"
    assert layers["res2b_branch2a"]["bottom"] == "res2a", "each repetition is fed by the previous one's top"
    assert layers["res3a_branch2a"]["bottom"] == "res2b"
    assert layers["res3b"]["top"] == "res3b" and layers["head_pool"]["bottom"] == "res3b"
    assert layers["res2a_branch2b_bn"] == {"name": "res2a_branch2b_bn", "type": "BatchNorm",
                                           "bottom": "res2a_branch2b", "top": "res2a_branch2b"}
    assert layers["head_fc"]["top"] == "scores" and layers["test_head_fc"]["top"] == "scores"


def test_if_keeps_a_layer_only_when_true(layers):
    assert "res3a_branch1" in layers and not any(n.endswith("_branch1") and n != "res3a_branch1" for n in layers)
    assert layers["res3a"]["bottom"] == ["res3a_branch1", "res3a_branch2b"]
    assert layers["res3b"]["bottom"] == ["res3a", "res3b_branch2b"]
    assert "if" not in layers["res3a_branch1"]


def test_include_and_exclude_on_an_instance_apply_to_its_layers(layers):
    for suffix in ("pool", "drop", "fc"):
        assert layers[f"head_{suffix}"]["exclude"] == {"phase": "TEST"}
        assert layers[f"test_head_{suffix}"]["include"] == {"phase": "TEST"}
    train = [row.name for row in netdef.summarize(NET, phase="TRAIN").layers]
    test = [row.name for row in netdef.summarize(NET, phase="TEST").layers]
    assert "head_fc" in train and "test_head_fc" not in train and "accuracy" not in train
    assert "test_head_fc" in test and "head_fc" not in test and "accuracy" in test


def test_blocks_come_from_nested_imports():
    info = netdef.summarize(NET)
    via = {row.name: [block for block, _, _ in row.via] for row in info.layers}
    assert via["res3a_branch2b_bn"] == ["conv_bn", "residual"], "base.yaml's block inside lib.yaml's"
    assert via["conv1"] == ["conv_bn"] and via["head_fc"] == ["head"] and via["loss"] == []
    origin = netdef.expand_file(NET).origins[1]
    assert Path(origin.source.file).name == "base.yaml"


def run_cli(capsys, *args):
    """The `netdef` command in this process (one real subprocess run below covers the entry point)."""
    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def _summary_without_positions(capsys, path, phase):
    summary = json.loads(run_cli(capsys, "summary", path, "--phase", phase, "--json"))
    summary.pop("blocks")  # block instances exist only in the blocks version
    for layer in summary["layers"]:
        layer.pop("block")
    return summary


def test_expand_output_is_valid_input_and_summarizes_identically(tmp_path, capsys):
    flat = tmp_path / "flat.yaml"
    result = subprocess.run([sys.executable, "-m", "netdef", "expand", str(NET), "-o", str(flat)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "use:" not in flat.read_text() and "${" not in flat.read_text()
    assert "ok (TRAIN: 45 layers" in run_cli(capsys, "check", flat)
    for phase in ("TRAIN", "TEST"):
        assert _summary_without_positions(capsys, flat, phase) == _summary_without_positions(capsys, NET, phase)
    again = tmp_path / "again.yaml"
    run_cli(capsys, "expand", flat, "-o", again)
    assert again.read_text() == flat.read_text(), "expanding a flat net changes nothing"


@pytest.mark.parametrize("expression", [
    "().__class__", "().__class__.__bases__[0].__subclasses__()", "open('/etc/passwd')", "__import__('os')",
    "(lambda: 1)()", "[x for x in (1, 2)]", "num.bit_length()",
])
def test_templates_refuse_attribute_access_and_calls(expression):
    with pytest.raises(TemplateError, match="is not allowed in a template"):
        evaluate(expression, {"num": 3})


def test_a_net_that_tries_to_run_code_gets_a_positioned_error(tmp_path):
    net = tmp_path / "evil.yaml"
    net.write_text("""name: evil
blocks:
  fc:
    args: {num: 3}
    layers:
      - {name: "${name}", type: InnerProduct, bottom: "${bottom}", top: "${top}",
         inner_product_param: {num_output: "${().__class__}"}}
layers:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 4]}}}
  - {use: fc, name: fc1, bottom: data}
""")
    result = subprocess.run([sys.executable, "-m", "netdef", "check", str(net)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "evil.yaml:7:" in result.stderr and "'().__class__' is not allowed in a template" in result.stderr
    assert "in block 'fc', instance 'fc1' at" in result.stderr and "evil.yaml:10:" in result.stderr


def test_allowed_template_expressions():
    scope = {"i": 2, "n": 3, "mid": 16, "names": ["a", "b"], "first": False}
    assert evaluate("mid * 4 // i + n % 2 - 1", scope) == 32
    assert evaluate("'proj' if i == 1 else 'id'", scope) == "id"
    assert evaluate("names[i - 1] + str(max(i, n))", scope) == "b3"
    assert evaluate("not first and (1 <= i < n)", scope) is True
    assert evaluate("[min(mid, 8), int(2.7), float(i), len(names), abs(-1)]", scope) == [8, 2, 2.0, 2, 1]
    with pytest.raises(TemplateError, match="unknown name 'mdi'.*did you mean 'mid'"):
        evaluate("mdi * 2", scope)
