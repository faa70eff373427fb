"""The committed JSON Schemas and the README's generated tables are fresh, every shipped file points at
its schema, and the schema editors use accepts the shipped nets and rejects broken ones by itself."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from jsonschema import Draft202012Validator

from netdef.cli.schema import render
from netdef.front.load import load_yaml, load_yaml_text

from conftest import ROOT, SHIPPED_BLOCK_LIBRARIES, SHIPPED_FILES, SHIPPED_NETS, SHIPPED_SOLVERS, shipped_paths

NETS = shipped_paths("nets", SHIPPED_NETS)
BLOCK_LIBRARIES = shipped_paths("nets/blocks", SHIPPED_BLOCK_LIBRARIES)
SOLVERS = shipped_paths("solvers", SHIPPED_SOLVERS)


@pytest.fixture(scope="module")
def net_validator():
    schema = json.loads((ROOT / "schema" / "net.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("kind", ["net", "solver"])
def test_committed_schema_equals_what_netdef_schema_prints(kind):
    committed = (ROOT / "schema" / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert committed == render(kind), (
        f"schema/{kind}.schema.json is stale; regenerate it with: "
        f"python -m netdef schema {kind} > schema/{kind}.schema.json")


def test_netdef_schema_command_prints_the_same_text():
    result = subprocess.run([sys.executable, "-m", "netdef", "schema", "solver"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render("solver")


def test_readme_tables_are_fresh():
    result = subprocess.run([sys.executable, "tools/readme_tables.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + " (run: python tools/readme_tables.py)"


@pytest.mark.parametrize("path", NETS + BLOCK_LIBRARIES + SOLVERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_file_starts_with_its_schema_line(path):
    kind = "solver" if path.parent.name == "solvers" else "net"
    up = "../" * (len(path.relative_to(ROOT).parts) - 1)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema={up}schema/{kind}.schema.json"


def test_every_shipped_net_is_listed():
    assert ROOT / "nets" / "lenet.yaml" in NETS


def test_shipped_files_are_listed():
    """conftest.py's SHIPPED_* lists name existing files, and (in a git checkout) exactly the committed ones."""
    listed = SHIPPED_FILES
    assert [str(p.relative_to(ROOT)) for p in listed if not p.is_file()] == []
    try:
        result = subprocess.run(["git", "ls-files", "nets/*.yaml", "nets/blocks/*.yaml", "solvers/*.yaml"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    except OSError:
        pytest.skip("git is not available")
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    committed = sorted(result.stdout.split())
    assert sorted(str(p.relative_to(ROOT)) for p in listed) == committed, (
        "add the shipped file to (or remove it from) SHIPPED_NETS, SHIPPED_BLOCK_LIBRARIES or SHIPPED_SOLVERS "
        "in tests/conftest.py")


@pytest.mark.parametrize("path", NETS + BLOCK_LIBRARIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_editor_schema_accepts_shipped_net(path, net_validator):
    data, _ = load_yaml(path)
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in net_validator.iter_errors(data)]
    assert not errors


@pytest.mark.parametrize("mistake, path", [
    ("convolution_param: {num_output: 20, kernal_size: 5}", ["layers", 1, "convolution_param"]),
    ("convolution_param: {num_output: 0, kernel_size: 5}", ["layers", 1, "convolution_param", "num_output"]),
    ("convolution_param: {num_output: 20, kernel_size: 5, weight_filler: {type: xavir}}",
     ["layers", 1, "convolution_param", "weight_filler", "type"]),
    ("convolution_param: {num_output: 20, kernel_size: 5}\n    include: {phase: TRIAN}",
     ["layers", 1, "include", "phase"]),
    ("pooling_param: {kernel_size: 2}", ["layers", 1]),
])
def test_editor_schema_rejects_a_broken_layer_on_its_own(mistake, path, net_validator):
    text = f"""
name: tiny
layers:
  - {{name: data, type: Input, top: data, input_param: {{shape: {{dim: [1, 1, 28, 28]}}}}}}
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    {mistake}
"""
    data, _ = load_yaml_text(text)
    paths = [list(error.absolute_path) for error in net_validator.iter_errors(data)]
    assert paths, "the schema accepted a broken net"
    # Editors mark the innermost value the schema pins down (a value that may also be a template is
    # reported at its key), always inside the broken layer.
    assert any(len(found) >= 2 and (path[:len(found)] == found or found[:len(path)] == path)
               for found in paths), paths


def test_editor_schema_accepts_block_templates_and_rejects_unknown_layer_types(net_validator):
    text = """
name: blocks
blocks:
  conv_relu:
    args: {num: null, k: 3}
    layers:
      - {name: "${name}_conv", type: Convolution, bottom: "${bottom}", top: "${name}_conv",
         convolution_param: {num_output: "${num}", kernel_size: "${k}", pad: "${k // 2}",
                             weight_filler: {type: msra}}}
      - {name: "${name}_relu", type: ReLU, bottom: "${name}_conv", top: "${top}"}
layers:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 32, 32]}}}
  - {use: conv_relu, name: "stage${letter}", bottom: data, repeat: 2, with: {num: 16}}
"""
    data, _ = load_yaml_text(text)
    assert not list(net_validator.iter_errors(data))
    data["layers"][0]["type"] = "Inputt"
    assert list(net_validator.iter_errors(data))


def test_shared_blocks_are_defined_once():
    schema = json.loads(render("net"))
    text = render("net")
    assert {"filler", "rule", "param_spec", "template"} <= set(schema["$defs"])
    # Each filler variant (they differ only in their defaults) is spelt out once; every use refers to it.
    assert text.count('"positive_unitball"') == len([k for k in schema["$defs"] if k.startswith("filler")])
    assert text.count('"#/$defs/filler"') >= 10
    assert len(text) < 350_000


def test_solver_schema_accepts_shipped_solvers():
    validator = Draft202012Validator(json.loads((ROOT / "schema" / "solver.schema.json").read_text()))
    for path in SOLVERS:
        data, _ = load_yaml(path)
        assert not list(validator.iter_errors(data)), path
