"""The block language past plain substitution: optional arguments, templates that read inferred shapes
(`shape()`, `channels()`), per-repetition tables (`with_each:`), `param:` as one mapping, and the errors
of repetition (`${i}` outside a repeat, the repetition an error happened in, a read of the name of a last
repetition whose top is the instance's). The shipped nets rewritten with `with_each:` expand exactly as
their committed hand-indexed versions did."""
from __future__ import annotations

import subprocess
import textwrap

import pytest
import torch

import netdef
from conftest import ROOT
from netdef.front.expand import dump_net

# The commit before the shipped nets' parallel `${[...][i - 1]}` lists became `with_each:` tables.
BEFORE_WITH_EACH = "9476e55f70252c31650f46f28eb3936a175d6c24"
REWRITTEN_NETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                  "vgg11", "vgg11_lrn", "vgg13", "vgg16", "vgg16_c", "vgg19"]

CONV = """\
  conv:
    args: {num: null, k: 1, relu: {default: null, doc: "optional: a ReLU after the convolution when given"}}
    layers:
      - {name: "${name}", type: Convolution, bottom: "${bottom}", top: "${top}", param: {lr_mult: 2},
         convolution_param: {num_output: "${num}", kernel_size: "${k}", pad: "${k // 2}"}}
      - {name: "${name}_relu", type: ReLU, bottom: "${top}", top: "${top}", if: "${relu != null}"}
"""


def net_file(tmp_path, layers: str, blocks: str = CONV, name="net.yaml"):
    path = tmp_path / name
    lines = [line[8:] if line.startswith(" " * 8) else line for line in layers.splitlines()]  # test's indent
    path.write_text(f"name: test\nblocks:\n{blocks}layers:\n" + textwrap.indent("\n".join(lines) + "\n", "  "),
                    encoding="utf-8")
    return path


def layer_table(path) -> dict:
    return {layer["name"]: layer for layer in netdef.expand_file(path).layers}


def problems(netdef_cli, path) -> str:
    code, out, err = netdef_cli("check", path)
    assert code == 2, out
    return err


DATA = "- {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 3, 16, 16]}}}\n"


def test_an_optional_argument_defaults_to_null_and_a_required_one_is_still_required(tmp_path, netdef_cli):
    layers = layer_table(net_file(tmp_path, DATA + """\
        - {use: conv, name: plain, bottom: data, with: {num: 4}}
        - {use: conv, name: activated, bottom: plain, with: {num: 4, relu: yes}}
        """))
    assert list(layers) == ["data", "plain", "activated", "activated_relu"]
    err = problems(netdef_cli, net_file(tmp_path, DATA + "- {use: conv, name: c, bottom: data, with: {k: 3}}\n"))
    assert "net.yaml:11:46: layer 'c': block 'conv' needs argument 'num'" in err


def test_param_takes_one_mapping_like_every_repeated_field(tmp_path):
    path = net_file(tmp_path, DATA + """\
        - {name: top_level, type: Convolution, bottom: data, top: top_level, param: {lr_mult: 0},
           convolution_param: {num_output: 2, kernel_size: 1}}
        - {use: conv, name: in_block, bottom: top_level, with: {num: 4}}
        """)
    layers = layer_table(path)
    assert layers["top_level"]["param"] == [{"lr_mult": 0}] and layers["in_block"]["param"] == [{"lr_mult": 2}]
    graph = netdef.read_net(path).graph("TRAIN")
    assert graph.layer("top_level").param_spec(0)["lr_mult"] == 0
    assert graph.layer("in_block").param_spec(0)["lr_mult"] == 2
    info = netdef.summarize(path)
    assert info.row("top_level").trainable == 2 and info.row("in_block").trainable == 4 * 2 + 4


TRANSITION = CONV + """\
  transition:  # DenseNet's: halve the channels, whatever the dense block before it made
    layers:
      - {use: conv, name: "${name}_conv", bottom: "${bottom}", with: {num: "${channels(bottom) // 2}"}}
      - {name: "${name}", type: Pooling, bottom: "${name}_conv", top: "${top}",
         pooling_param: {pool: AVE, kernel_size: 2, stride: 2}}
  batch_scaled:  # reads the whole shape: batch, channels, height
    layers:
      - {name: "${name}", type: InnerProduct, bottom: "${bottom}", top: "${top}",
         inner_product_param: {num_output: "${shape(bottom)[0] * 1000 + shape(bottom)[1] * 10 + shape(bottom)[2]}"}}
"""


def test_templates_read_the_shapes_the_layers_before_them_make(tmp_path):
    path = net_file(tmp_path, DATA + """\
        - {use: conv, name: wide, bottom: data, with: {num: 24, k: 3}}
        - {use: transition, name: t1, bottom: wide}
        - {use: conv, name: wider, bottom: t1, with: {num: 40}}
        - {use: transition, name: t2, bottom: wider}
        - {use: batch_scaled, name: fc, bottom: t2}
        """, TRANSITION)
    layers = layer_table(path)
    assert layers["t1_conv"]["convolution_param"]["num_output"] == 12
    assert layers["t2_conv"]["convolution_param"]["num_output"] == 20
    assert layers["fc"]["inner_product_param"]["num_output"] == 2 * 1000 + 20 * 10 + 4  # [2, 20, 4, 4]
    assert netdef.summarize(path).row("t2").shapes == [(2, 20, 4, 4)]


def test_shapes_are_the_train_phase_s_and_test_s_for_a_blob_only_test_makes(tmp_path):
    path = net_file(tmp_path, """\
        - {name: train_data, type: Input, top: data, include: {phase: TRAIN}, input_param: {shape: {dim: [8, 6, 4, 4]}}}
        - {name: test_data, type: Input, top: data, include: {phase: TEST}, input_param: {shape: {dim: [1, 6, 4, 4]}}}
        - {name: probe, type: Input, top: probe, include: {phase: TEST}, input_param: {shape: {dim: [3, 5, 4, 4]}}}
        - {use: batch_scaled, name: fc, bottom: data}
        - {use: batch_scaled, name: probe_fc, bottom: probe, include: {phase: TEST}}
        """, TRANSITION)
    layers = layer_table(path)
    assert layers["fc"]["inner_product_param"]["num_output"] == 8 * 1000 + 6 * 10 + 4
    assert layers["probe_fc"]["inner_product_param"]["num_output"] == 3 * 1000 + 5 * 10 + 4


def test_shape_errors_name_the_blob_and_what_is_wrong(tmp_path, netdef_cli):
    blocks = CONV + """\
  reads:
    args: {blob: null}
    layers:
      - {use: conv, name: "${name}", bottom: "${bottom}", with: {num: "${channels(blob)}"}}
"""
    err = problems(netdef_cli, net_file(tmp_path, DATA + """\
        - {use: reads, name: a, bottom: data, with: {blob: dta}}
        - {use: reads, name: b, bottom: data, with: {blob: [data]}}
        - {use: reads, name: c, bottom: data, with: {blob: later}}
        - {use: conv, name: later, bottom: data, with: {num: 1}}
        """, blocks))
    assert "no layer before this template makes a blob named 'dta', so its shape is unknown; did you mean " \
           "'data'?" in err
    assert "shape() and channels() take one blob name, found a list" in err
    assert "no layer before this template makes a blob named 'later'" in err
    assert err.count("in block 'reads', instance") == 3
    # A layer with a shape problem before the template: that problem is reported, and the template says why
    # it has no shape.
    err = problems(netdef_cli, net_file(tmp_path, DATA + """\
        - {name: fc, type: InnerProduct, bottom: data, top: fc, inner_product_param: {num_output: 4}}
        - {name: pool, type: Pooling, bottom: fc, top: pool, pooling_param: {kernel_size: 3}}
        - {use: reads, name: a, bottom: pool, with: {blob: pool}}
        """, blocks))
    assert "layer 'pool' (Pooling)" in err and "shapes are not inferred while the net has other problems" in err


def test_with_each_rows_and_columns_equal_parallel_lists(tmp_path):
    lists = layer_table(net_file(tmp_path, DATA + """\
        - {use: conv, name: "s${letter}", bottom: data, repeat: 3,
           with: {num: "${[8, 16, 32][i - 1]}", k: "${[1, 3, 5][i - 1]}", relu: "${i}"}}
        """, name="lists.yaml"))
    rows = layer_table(net_file(tmp_path, DATA + """\
        - {use: conv, name: "s${letter}", bottom: data, with: {relu: "${i}"},
           with_each: [{num: 8, k: 1}, {num: 16, k: 3}, {num: 32, k: 5}]}
        """, name="rows.yaml"))
    columns = layer_table(net_file(tmp_path, DATA + """\
        - {use: conv, name: "s${letter}", bottom: data, repeat: 3, with: {relu: "${i}"},
           with_each: {num: [8, 16, 32], k: [1, 3, 5]}}
        """, name="columns.yaml"))
    assert lists == rows == columns
    assert [layers["num_output"] for layers in (lists[f"s{c}"]["convolution_param"] for c in "abc")] == [8, 16, 32]


def test_with_each_values_are_templates_of_the_repetition_and_may_be_lists(tmp_path, netdef_cli):
    """A with_each value is substituted in its repetition's scope (i, n, letter), and a value that is a list
    or a mapping where the block wants a number is a positioned problem, not a crash (found by tools/fuzz.py)."""
    table = layer_table(net_file(tmp_path, DATA + """\
        - {use: conv, name: "s${letter}", bottom: data, with: {relu: "${i}"},
           with_each: [{num: "${8 * i}", k: 1}, {num: "${8 * i}", k: "${2 * i - 1}"}]}
        """, name="scoped.yaml"))
    assert [table[f"s{c}"]["convolution_param"]["num_output"] for c in "ab"] == [8, 16]
    err = problems(netdef_cli, net_file(tmp_path, DATA + """\
        - {use: conv, name: "s${letter}", bottom: data, with: {relu: "${i}"},
           with_each: {num: [8, [16, {k: 1}]], k: [1, 3]}}
        """, name="nested.yaml"))
    assert "Traceback" not in err and "internal error" not in err and "(in repetition 2 of 2, i = 2)" in err


def test_with_each_problems_are_positioned(tmp_path, netdef_cli):
    err = problems(netdef_cli, net_file(tmp_path, DATA + """\
        - {use: conv, name: "a${i}", bottom: data, with_each: {num: [1, 2, 3], k: [1]}}
        - {use: conv, name: "b${i}", bottom: data, repeat: 2, with_each: [{num: 1}]}
        - {use: conv, name: "c${i}", bottom: data, with_each: [{num: 1}, {nm: 2}]}
        """))
    assert "net.yaml:11:57: the columns of 'with_each' differ in length (expected one value per repetition in " \
           "every column, found num: 3, k: 1)" in err
    assert "net.yaml:12:54: 'repeat' and 'with_each' disagree (expected repeat: 1" in err
    assert "net.yaml:13:69: layer 'c${i}': block 'conv' has no argument 'nm'; did you mean 'num'?" in err
    err = problems(netdef_cli, net_file(tmp_path, DATA + "- {use: conv, name: \"d${i}\", bottom: data, with_each: [1, 2]}\n"))
    assert "net.yaml:11:58: layer 'd${i}': invalid value for 'with_each[0]' (expected a mapping, found 1)" in err


def test_i_outside_a_repeat_is_an_error(tmp_path, netdef_cli):
    err = problems(netdef_cli, net_file(tmp_path, DATA + "- {use: conv, name: \"c${i}\", bottom: data, with: {num: 2}}\n"))
    assert "net.yaml:11:23: layer 'c${i}': 'i' is only defined in a repeated instance (a 'use:' entry with " \
           "'repeat:' or 'with_each:')" in err
    blocks = CONV.replace('param: {lr_mult: 2}', 'param: {lr_mult: "${n}"}')
    err = problems(netdef_cli, net_file(tmp_path, DATA + "- {use: conv, name: c, bottom: data, with: {num: 2}}\n",
                                        blocks))
    assert "net.yaml:6:99: layer 'c': 'n' is only defined in a repeated instance" in err
    assert "in block 'conv', instance 'c' at" in err


def test_an_error_in_repetition_k_names_k(tmp_path, netdef_cli):
    err = problems(netdef_cli, net_file(tmp_path, DATA + """\
        - {use: conv, name: "s${letter}", bottom: data, repeat: 4, with: {num: "${[8, 16, 32][i - 1]}"}}
        - {use: conv, name: "t${i}", bottom: data, with_each: {num: [8, 0]}}
        """))
    assert "net.yaml:11:74: layer 's${letter}': cannot evaluate '${[8, 16, 32][i - 1]}': list index out of " \
           "range (in repetition 4 of 4, i = 4)" in err
    assert "net.yaml:7:42: layer 't2' (Convolution): 'num_output' is out of range (in repetition 2 of 2, i = 2) " \
           "(expected >= 1, found 0)\n    in block 'conv', instance 't2' at" in err


def test_reading_the_name_of_a_last_repetition_whose_top_is_the_instance_s(tmp_path, netdef_cli):
    path = net_file(tmp_path, DATA + """\
        - {use: conv, name: "stage${letter}", bottom: data, top: stage, repeat: 3, with: {num: 4}}
        - {name: early, type: ReLU, bottom: stageb, top: early}
        - {name: late, type: ReLU, bottom: stagec, top: late}
        """)
    err = problems(netdef_cli, path)
    assert ("net.yaml:13:38: layer 'late': bottom 'stagec' is no blob: 'stagec' is the last of 3 repetitions of "
            f"the instance at {path}:11:11, which writes the instance's top 'stage' instead") in err
    assert "read 'stage'" in err and "stageb" not in err


def test_a_shape_reading_net_is_read_once_per_command(tmp_path, netdef_cli, monkeypatch):
    """Shapes read while expanding come from the layers so far, not from a second pass over the file."""
    path = net_file(tmp_path, DATA + """\
        - {use: conv, name: wide, bottom: data, with: {num: 24, k: 3}}
        - {use: transition, name: t1, bottom: wide}
        """, TRANSITION)
    reads, load_yaml = [], netdef.api.load_yaml
    monkeypatch.setattr(netdef.api, "load_yaml", lambda file: reads.append(file) or load_yaml(file))
    code, out, err = netdef_cli("summary", path)
    assert code == 0, err
    assert reads == [str(path)] and "t1_conv" in out


def _committed(path: str) -> str | None:
    result = subprocess.run(["git", "show", f"{BEFORE_WITH_EACH}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


@pytest.mark.parametrize("net", REWRITTEN_NETS)
def test_a_rewritten_shipped_net_expands_as_its_committed_version(net, tmp_path):
    old = _committed(f"nets/{net}.yaml")
    if old is None:
        pytest.skip(f"the repository's history has no commit {BEFORE_WITH_EACH[:10]}")
    assert "[i - 1]" in old and "[i - 1]" not in (ROOT / "nets" / f"{net}.yaml").read_text()
    # The old file beside the shipped blocks it imports: nets/old_<net>.yaml, written into a copy of nets/.
    folder = tmp_path / "nets"
    (folder / "blocks").mkdir(parents=True)
    for library in (ROOT / "nets" / "blocks").glob("*.yaml"):
        (folder / "blocks" / library.name).write_text(library.read_text())
    (folder / f"old_{net}.yaml").write_text(old)
    assert dump_net(netdef.expand_file(folder / f"old_{net}.yaml")) == \
        dump_net(netdef.expand_file(ROOT / "nets" / f"{net}.yaml"))


def test_densenet121_reads_its_transition_widths_and_has_its_published_parameters():
    """nets/densenet121.yaml types no width past the stem: each transition halves what its dense block made
    (channels(bottom) // 2), and the total is the published 7,978,856 (torchvision's densenet121)."""
    path = ROOT / "nets" / "densenet121.yaml"
    net = netdef.read_net(path)
    for phase, stages in (("TRAIN", ()), ("TEST", ()), ("TEST", ("deploy",))):
        info = net.info(phase, stages=stages)
        assert info.total_params == info.trainable_params == 7_978_856, (phase, stages)
    info = net.info("TEST")
    assert [info.row(f"pool{s}/conv").in_shapes[0][1] for s in (2, 3, 4)] == [64 + 6 * 32, 128 + 12 * 32,
                                                                               256 + 24 * 32]
    assert [info.row(f"pool{s}/conv").shapes[0][1] for s in (2, 3, 4)] == [128, 256, 512]
    assert info.blob_shapes["block5"][1] == 512 + 16 * 32
    assert sum(row.type == "Concat" for row in info.layers) == 6 + 12 + 24 + 16
    text = path.read_text()
    assert not any(f"num_output: {width}" in text for width in (128, 256, 512))
    # It builds and learns: one step at a small input.
    small = net.compile("TRAIN", input_shapes={"data": (2, 3, 32, 32), "label": (2,)})
    loss = small(data=torch.randn(2, 3, 32, 32), label=torch.tensor([3, 7]))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and getattr(small, "pool3/conv").weight.grad.abs().sum() > 0
