"""The front end is total: hostile or broken files stop at a positioned problem within the limits of
netdef.front.limits, never at a traceback, a hang or an exhausted memory (sites found by tools/fuzz.py)."""
import time

import pytest

import netdef
from netdef.cli import main
from netdef.errors import NetdefError
from netdef.front.expand import TemplateError, evaluate
from netdef.front.limits import MAX_LAYERS, MAX_NESTING, MAX_REPEAT
from netdef.front.load import load_yaml, load_yaml_text

ALIAS_BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 8)}]\n" for i in range(1, 9))


def problem(text, file="net.yaml"):
    with pytest.raises(NetdefError) as caught:
        load_yaml_text(text, file)
    return caught.value.render()


@pytest.mark.parametrize("character, where", [("\x00", "2:7"), ("\x07", "2:7"), ("\x1b", "2:7")])
def test_a_non_printable_character_is_named_at_its_line_and_column(character, where):
    assert problem(f"name: n\nlayers{character}: []\n") == (
        f"net.yaml:{where}: invalid YAML: character U+{ord(character):04X} is not allowed in a YAML file "
        "(expected printable text (tabs, newlines and Unicode letters are fine))")


@pytest.mark.parametrize("text", ["layers: " + "[" * 5000 + "]" * 5000,
                                  "layers:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
                                  "a: " + "{k: " * 100 + "1" + "}" * 100])
def test_deep_nesting_is_refused_at_the_level_that_is_too_deep(text):
    message = problem(text)
    assert f"values nested more than {MAX_NESTING} deep" in message
    assert message.startswith("net.yaml:1:") or message.startswith("net.yaml:")


def test_an_alias_bomb_stops_quickly_at_the_alias_that_explodes():
    start = time.perf_counter()
    message = problem(ALIAS_BOMB)
    assert time.perf_counter() - start < 2
    assert "values once its aliases are expanded" in message and "alias (*name) repeats" in message


@pytest.mark.parametrize("tag", ["!!python/name:os.system", "!!python/object/apply:os.system ['true']",
                                 "!!python/object:os.system {a: 1}", "!!set {a, b}"])
def test_python_tags_are_refused_without_running_anything(tag):
    assert problem(f"name: n\nlayers: {tag}\n") == (f"net.yaml:2:9: unsupported YAML tag '{tag.split()[0]}' "
                                                    "(expected plain YAML values (no tags such as !!python/...))")


def test_a_complex_key_is_a_positioned_problem():
    assert problem("? [complex, key]\n: value\n") == \
        "net.yaml:1:3: a mapping key must be a plain name (found ['complex', 'key'])"


def test_a_file_past_the_size_limit_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr("netdef.front.load.MAX_FILE_BYTES", 1000)
    path = tmp_path / "huge.yaml"
    path.write_text("name: n\n" + "# padding\n" * 200)
    with pytest.raises(NetdefError, match="is larger than"):
        load_yaml(path)


@pytest.mark.parametrize("expression, message", [
    ("9**9**9", "is too large"), ("10 ** 10 ** 10", "is too large"), ("'a' * 10**10", "product is too large"),
    ("[1] * 10**9", "product is too large"), ("str(10**5000)", "is too large"),
    ("[[1] * 1000] * 1000", "too large"), ("[[[0] * 100] * 100] * 100", "too large"),
    ("-(" * 300 + "1" + ")" * 300, "cannot parse"), ("x" * 2000, "longer than"),
])
def test_template_evaluation_is_bounded(expression, message):
    start = time.perf_counter()
    with pytest.raises(TemplateError, match=message):
        evaluate(expression, {})
    assert time.perf_counter() - start < 1


def test_templates_that_real_nets_use_still_work():
    assert evaluate("64 * 2 ** (i - 1)", {"i": 3}) == 256
    assert evaluate("[3, 4, 6, 3][i - 1]", {"i": 4}) == 3
    assert evaluate("2 ** 64", {}) == 2 ** 64


def write(tmp_path, text, name="net.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BLOCK = """name: n
blocks:
  unit:
    layers:
      - {{name: "${{name}}", type: ReLU, bottom: "${{bottom}}", top: "${{top}}"}}
layers:
  - {{name: data, type: Input, top: data, input_param: {{shape: {{dim: [1, 2]}}}}}}
  - {{use: unit, name: "u${{i}}", bottom: data, repeat: {repeat}}}
"""


@pytest.mark.parametrize("repeat", [10 ** 30, MAX_REPEAT + 1, 0])
def test_a_repeat_past_the_limit_is_a_schema_problem(tmp_path, repeat):
    with pytest.raises(NetdefError) as caught:
        netdef.read_net(write(tmp_path, BLOCK.format(repeat=repeat)))
    assert "net.yaml:8:" in caught.value.render() and "repeat" in caught.value.render()


@pytest.mark.parametrize("repeat, found", [("'${2.5}'", "found 2.5"), ("'${10**30}'", "digits")])
def test_a_repeat_computed_by_a_template_is_checked_after_it_is_computed(tmp_path, repeat, found):
    text = BLOCK.format(repeat=1).replace("  - {use: unit", "  - {use: outer, name: o, bottom: data}\n  - {use: unit") \
        .replace("layers:\n  - {name: data", "layers:\n  - {name: data") \
        .replace("blocks:\n", "blocks:\n  outer:\n    layers:\n"
                 f"      - {{use: unit, name: \"${{name}}_u\", bottom: \"${{bottom}}\", top: \"${{top}}\", "
                 f"repeat: {repeat}}}\n")
    with pytest.raises(NetdefError) as caught:
        netdef.read_net(write(tmp_path, text))
    message = caught.value.render()
    assert "invalid 'repeat'" in message and f"expected a whole number from 1 to {MAX_REPEAT:,}" in message
    assert found in message


def test_a_net_that_expands_past_the_layer_limit_stops_there(tmp_path, monkeypatch):
    monkeypatch.setattr("netdef.front.expand.MAX_LAYERS", 50)
    with pytest.raises(NetdefError, match="expands to more than 50 layers"):
        netdef.read_net(write(tmp_path, BLOCK.format(repeat=100)))
    assert MAX_LAYERS >= 10_000  # far above real nets (ResNet-152: 670 layers)


def test_use_and_type_of_the_wrong_kind_are_problems_not_crashes(tmp_path):
    path = write(tmp_path, "name: n\nblocks: text\nlayers:\n  - {name: a, type: [ReLU]}\n  - {use: [b], name: c}\n")
    assert main(["check", str(path)]) == 2


def test_an_unexpected_exception_is_an_internal_error_with_exit_3(monkeypatch, capsys, tmp_path):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr("netdef.cli.check.check_net", broken, raising=False)
    monkeypatch.setattr("netdef.cli.check.net_phases", broken, raising=False)
    status = main(["check", "nets/lenet.yaml"])
    err = capsys.readouterr().err
    assert status == 3 and "internal error in netdef (ZeroDivisionError: a bug)" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "check", "nets/lenet.yaml"])


@pytest.mark.parametrize("imported", ["/etc/passwd", "../../../../etc/passwd", "/dev/zero"])
def test_an_import_outside_the_nets_folder_is_refused_without_reading_it(tmp_path, imported):
    (tmp_path / "nets").mkdir()
    path = write(tmp_path / "nets", f"name: n\nimport: [{imported}]\nlayers: []\n")
    with pytest.raises(NetdefError) as caught:
        netdef.read_net(path)
    message = caught.value.render()
    assert message.startswith(f"{path}:2:10: imported file {imported} is outside the net's folder")
    assert "root:x:" not in message and "allow_outside_root: true" in message


def test_allow_outside_root_lets_a_net_import_a_shared_blocks_file(tmp_path):
    (tmp_path / "shared.yaml").write_text("blocks:\n  act:\n    layers:\n"
                                          "      - {name: \"${name}\", type: ReLU, bottom: \"${bottom}\", top: \"${top}\"}\n")
    (tmp_path / "nets").mkdir()
    text = ("name: n\n{allow}import: [../shared.yaml]\nlayers:\n"
            "  - {{name: data, type: Input, top: data, input_param: {{shape: {{dim: [1, 2]}}}}}}\n"
            "  - {{use: act, name: relu, bottom: data}}\n")
    with pytest.raises(NetdefError, match="outside the net's folder"):
        netdef.read_net(write(tmp_path / "nets", text.format(allow="")))
    net = netdef.read_net(write(tmp_path / "nets", text.format(allow="allow_outside_root: true\n")))
    assert [layer["name"] for layer in net.expanded.layers] == ["data", "relu"]


def test_a_fifo_is_not_read(tmp_path):
    import os
    fifo = tmp_path / "net.yaml"
    os.mkfifo(fifo)
    with pytest.raises(NetdefError, match="is not a regular file"):
        load_yaml(fifo)


def test_a_solver_naming_a_system_file_as_its_net_does_not_quote_it(tmp_path, capsys):
    solver = write(tmp_path, "net: /etc/passwd\nbase_lr: 0.1\nmax_iter: 1\n", "solver.yaml")
    assert main(["check", str(solver)]) == 2
    err = capsys.readouterr().err
    assert "a net file must be a mapping with 'name' and 'layers' (found text)" in err and "root:" not in err


@pytest.mark.parametrize("include", ["'${str(10**5000)}'", "'${\"TRAIN\"}'", "text"])
def test_an_instance_rule_that_is_not_a_mapping_is_a_problem(tmp_path, include):
    text = BLOCK.format(repeat=1).replace("repeat: 1}", f"repeat: 1, include: {include}}}")
    with pytest.raises(NetdefError) as caught:
        netdef.read_net(write(tmp_path, text))
    assert "net.yaml:8:" in caught.value.render()


def test_a_solver_net_path_too_long_for_the_file_system_is_a_problem(tmp_path):
    solver = write(tmp_path, f"net: {'n' * 5000}.yaml\nbase_lr: 0.1\nmax_iter: 1\n", "solver.yaml")
    assert main(["check", str(solver)]) == 2
