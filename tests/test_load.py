"""Stage 1, load: YAML text -> data plus the 1-based line:col of every key and value."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from netdef.front import load
from netdef.errors import NetdefError, Pos
from netdef.front.load import Origin, load_yaml, load_yaml_text

ROOT = Path(__file__).resolve().parent.parent

NET = """\
name: SmallConv
layers:
  - name: data
    type: Input
    top: data
    input_param:
      shape:
        dim: [8, 3, 32, 32]
  - name: conv1
    type: Convolution
    bottom: data
    top: [conv1]
    convolution_param: {num_output: 16, kernel_size: [3, 5], weight_filler: {type: msra}}
"""


def problems(text):
    with pytest.raises(NetdefError) as caught:
        load_yaml_text(text, "net.yaml")
    return caught.value.problems


def test_values_and_keys_have_one_based_positions():
    data, source = load_yaml_text(NET, "net.yaml")
    assert data["layers"][1]["convolution_param"]["kernel_size"] == [3, 5]
    assert source.pos(("name",)) == Pos("net.yaml", 1, 7)
    assert source.pos(("name",), key=True) == Pos("net.yaml", 1, 1)
    assert source.pos(("layers", 0)) == Pos("net.yaml", 3, 5)  # a list item: where its mapping starts
    assert source.pos(("layers", 0, "input_param", "shape", "dim"), key=True) == Pos("net.yaml", 8, 9)
    assert source.pos(("layers", 0, "input_param", "shape", "dim", 2)) == Pos("net.yaml", 8, 21)
    assert source.pos(("layers", 1, "top", 0)) == Pos("net.yaml", 12, 11)


def test_flow_style_positions_point_inside_the_line():
    _, source = load_yaml_text(NET, "net.yaml")
    conv = ("layers", 1, "convolution_param")
    assert source.pos(conv + ("num_output",), key=True) == Pos("net.yaml", 13, 25)
    assert source.pos(conv + ("num_output",)) == Pos("net.yaml", 13, 37)
    assert source.pos(conv + ("kernel_size", 1)) == Pos("net.yaml", 13, 58)
    assert source.pos(conv + ("weight_filler", "type")) == Pos("net.yaml", 13, 84)


def test_missing_path_falls_back_to_its_nearest_ancestor():
    _, source = load_yaml_text(NET, "net.yaml")
    layer = ("layers", 1)
    assert source.pos(layer + ("convolution_param", "stride")) == source.pos(layer + ("convolution_param",))
    assert source.pos(layer + ("pooling_param", "pad")) == Pos("net.yaml", 9, 5)
    origin = Origin(source, layer)
    assert origin.pos(("bottom",)) == Pos("net.yaml", 11, 13)
    assert origin.pos(("bottom",), key=True) == Pos("net.yaml", 11, 5)


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("5e-4", 0.0005), ("5E+4", 50000.0), (".5", 0.5), ("-.5", -0.5), ("+1.5e-3", 0.0015),
    ("2.", 2.0), ("1.0", 1.0), ("-2.5E2", -250.0), ("1_000.5", 1000.5), (".inf", math.inf), ("-.inf", -math.inf),
])
def test_numbers_with_exponents_or_leading_dots_are_floats(text, value):
    data, _ = load_yaml_text(f"x: {text}")
    assert isinstance(data["x"], float)
    assert data["x"] == value


def test_nan_is_a_float():
    data, _ = load_yaml_text("x: .nan")
    assert math.isnan(data["x"])


@pytest.mark.parametrize("text, value", [("10", 10), ("-3", -3), ("0", 0), ("1_000", 1000)])
def test_integers_stay_integers(text, value):
    data, _ = load_yaml_text(f"x: {text}")
    assert data["x"] == value and isinstance(data["x"], int)


@pytest.mark.parametrize("text", ["'1e-3'", '"5e-4"', "1e", "e5", "1.2.3", "5e-4x"])
def test_quoted_or_malformed_numbers_stay_strings(text):
    data, _ = load_yaml_text(f"x: {text}")
    assert isinstance(data["x"], str)


def test_yaml_1_1_integer_forms_are_kept_as_pyyaml_reads_them():
    # Documented, not endorsed: YAML 1.1 reads a leading 0 as octal, 0x as hex and a:b as base 60.
    data, _ = load_yaml_text("octal: 010\nhex: 0x1F\nsexagesimal: 1:30")
    assert data == {"octal": 8, "hex": 31, "sexagesimal": 90}


def test_yes_no_on_off_are_booleans_y_n_are_strings():
    data, _ = load_yaml_text("a: yes\nb: No\nc: ON\nd: off\ne: true\nf: y\ng: n\nh: 'yes'\ni: \"no\"")
    assert data == {"a": True, "b": False, "c": True, "d": False, "e": True, "f": "y", "g": "n",
                    "h": "yes", "i": "no"}


def test_a_boolean_where_a_name_is_expected_gets_a_quoting_hint(write_yaml):
    from netdef import expand_file
    path = write_yaml("""
        name: gates
        layers:
          - {name: data, type: Input, top: [on, off], input_param: {shape: {dim: [1, 2]}}}
        """)
    with pytest.raises(NetdefError) as caught:
        expand_file(path)
    texts = [str(p) for p in caught.value.problems]
    assert len(texts) == 2
    assert all("found true" in t or "found false" in t for t in texts)
    assert all("write the name in quotes" in t for t in texts)


def test_duplicate_key_is_reported_at_the_second_naming_the_first():
    (problem,) = problems("name: a\nlayers: []\nname: b\n")
    assert problem.pos == Pos("net.yaml", 3, 1)
    assert "duplicate key 'name' (first at line 1)" in problem.message


def test_every_duplicate_key_is_reported_at_once_nested_and_in_flow_style():
    found = problems("layers:\n  - {name: a, type: ReLU, type: TanH}\n  - name: b\n    top: x\n    top: y\n")
    assert [(p.pos.line, p.pos.col) for p in found] == [(2, 27), (5, 5)]
    assert "first at line 2, column 15" in found[0].message
    assert "first at line 4)" in found[1].message


def test_same_key_in_different_mappings_is_fine():
    data, _ = load_yaml_text("a: {name: x}\nb: {name: x}\n")
    assert data == {"a": {"name": "x"}, "b": {"name": "x"}}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_document_is_an_error(text):
    (problem,) = problems(text)
    assert problem.message == "the file is empty"
    assert problem.pos == Pos("net.yaml", 1, 1)


def test_syntax_error_points_at_the_problem_and_where_the_construct_began():
    (problem,) = problems("name: x\nlayers:\n  - {name: a, type: ReLU\n  - name: b\n")
    assert problem.pos == Pos("net.yaml", 4, 9)
    assert problem.message.startswith("invalid YAML: while parsing a flow mapping (begun at line 3, column 5)")


def test_tab_indentation_gets_a_hint():
    (problem,) = problems("name: x\nlayers:\n\t- name: a\n")
    assert problem.pos.line == 3
    assert "tabs" in problem.hint


def test_a_mapping_used_as_a_key_is_rejected():
    (problem,) = problems("name: x\n? [a, b]\n: 1\n")
    assert problem.message == "a mapping key must be a plain name"
    assert problem.pos == Pos("net.yaml", 2, 3)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(NetdefError, match="no such file"):
        load_yaml(tmp_path / "absent.yaml")
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(NetdefError, match="cannot read"):
        load_yaml(binary)


@pytest.mark.parametrize("net", ["lenet.yaml", "googlenet.yaml", "blocks/resnet.yaml"])
def test_libyaml_and_pure_python_parsers_give_the_same_data_and_positions(net, monkeypatch):
    text = (ROOT / "nets" / net).read_text(encoding="utf-8")
    fast = load_yaml_text(text, net)
    monkeypatch.setattr(load, "_FastLoader", load._Loader)
    slow = load_yaml_text(text, net)
    assert fast[0] == slow[0]
    assert fast[1].values == slow[1].values and fast[1].keys == slow[1].keys


def test_merge_keys_merge_and_the_mappings_own_keys_override():
    data, _ = load_yaml_text("defaults: &d {lr_mult: 1, decay_mult: 1}\n"
                             "param:\n  <<: *d\n  decay_mult: 0\n")
    assert data["param"] == {"lr_mult": 1, "decay_mult": 0}


def test_a_bad_merge_value_is_a_positioned_problem_not_a_traceback():
    with pytest.raises(NetdefError) as caught:
        load_yaml_text("param:\n  <<: 5\n")
    assert str(caught.value).startswith("<string>:2:7: invalid merge key '<<'")


def test_a_key_repeated_after_a_merge_is_still_a_duplicate():
    with pytest.raises(NetdefError, match="duplicate key 'c' \\(first at line 4\\)"):
        load_yaml_text("a: &x {b: 1}\nd:\n  <<: *x\n  c: 3\n  c: 4\n")
