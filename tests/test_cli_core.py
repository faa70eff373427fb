"""`python -m netdef check|summary|expand|schema` as real processes: exit codes, output and messages."""
from __future__ import annotations

import json
import re

import pytest

from netdef.front.load import load_yaml

BAD = "tests/data/bad"


def test_check_good_net_prints_one_summary_line(netdef_subprocess):
    result = netdef_subprocess("check", "nets/lenet.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "nets/lenet.yaml: ok (TRAIN: 9 layers, 431,080 params, 2,293,000 MACs; "
        "TEST: 10 layers, 431,080 params, 2,293,000 MACs)"]


def test_check_solver_checks_its_net_too(netdef_subprocess):
    result = netdef_subprocess("check", "solvers/lenet_solver.yaml")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"solvers/lenet_solver\.yaml: ok \(solver SGD, lr_policy inv, \d+ iterations, "
                        r"net \S+lenet\.yaml\)\n", result.stdout)


def test_check_bad_net_exits_2_with_positioned_message_and_no_traceback(netdef_subprocess):
    result = netdef_subprocess("check", f"{BAD}/unknown_param_key.yaml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == (f"{BAD}/unknown_param_key.yaml:20:7: layer 'conv2' (Convolution): unknown key "
                             "'kernal_size' in convolution_param; did you mean 'kernel_size'?\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(netdef_subprocess, where):
    args = ["--debug", "check", f"{BAD}/unknown_bottom.yaml"] if where == "before" else \
        ["check", "--debug", f"{BAD}/unknown_bottom.yaml"]
    result = netdef_subprocess(*args)
    assert result.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in result.stderr
    assert "netdef.errors.NetdefError" in result.stderr
    assert "unknown bottom blob 'conv_1'" in result.stderr


def test_check_several_files_reports_all_problems_of_all_files(netdef_subprocess):
    files = ["nets/lenet.yaml", f"{BAD}/several_schema_problems.yaml", f"{BAD}/several_wiring_problems.yaml",
             f"{BAD}/empty.yaml"]
    result = netdef_subprocess("check", *files)
    assert result.returncode == 2
    assert result.stdout.startswith("nets/lenet.yaml: ok (")
    problems = result.stderr.splitlines()
    assert len(problems) == 4 + 3 + 1
    assert sum(line.startswith(f"{BAD}/several_schema_problems.yaml:") for line in problems) == 4
    assert sum(line.startswith(f"{BAD}/several_wiring_problems.yaml:") for line in problems) == 3
    assert f"{BAD}/empty.yaml:1:1: the file is empty" in problems


def test_summary_json_has_caffes_lenet_figures(netdef_subprocess):
    result = netdef_subprocess("summary", "nets/lenet.yaml", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    params = {layer["name"]: layer["params"] for layer in summary["layers"]}
    assert summary["total_params"] == 431080
    assert (params["conv1"], params["conv2"], params["ip1"], params["ip2"]) == (520, 25050, 400500, 5010)
    assert sum(params.values()) == summary["total_params"]
    assert summary["total_macs"] == 2293000


def test_summary_table_ends_with_totals(netdef_subprocess):
    result = netdef_subprocess("summary", "nets/lenet.yaml", "--phase", "test")
    assert result.returncode == 0, result.stderr
    assert "431,080" in result.stdout and "2,293,000" in result.stdout
    assert re.search(r"^conv2\s+Convolution\s", result.stdout, re.M)


def test_summary_of_a_bad_net_exits_2(netdef_subprocess):
    result = netdef_subprocess("summary", f"{BAD}/eltwise_channel_mismatch.yaml")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{BAD}/eltwise_channel_mismatch.yaml:20:13: layer 'add' (Eltwise): ")


def test_misspelt_command_suggests_the_right_one(netdef_subprocess):
    result = netdef_subprocess("chek", "nets/lenet.yaml")
    assert result.returncode == 2
    assert "did you mean 'check'?" in result.stderr
    result = netdef_subprocess("sumary", "nets/lenet.yaml")
    assert "did you mean 'summary'?" in result.stderr


def test_expand_output_is_valid_netdef_input(netdef_subprocess, write_yaml, tmp_path):
    net = write_yaml("""
        name: blocks
        blocks:
          conv_relu:
            args: {num: null}
            layers:
              - {name: "${name}_conv", type: Convolution, bottom: "${bottom}", top: "${name}_conv",
                 convolution_param: {num_output: "${num}", kernel_size: 3, pad: 1}}
              - {name: "${name}_relu", type: ReLU, bottom: "${name}_conv", top: "${top}"}
        layers:
          - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 8, 8]}}}
          - {use: conv_relu, name: "stage${i}", bottom: data, repeat: 2, with: {num: "${8 * i}"}}
        """)
    flat = tmp_path / "flat.yaml"
    result = netdef_subprocess("expand", net, "-o", flat)
    assert result.returncode == 0, result.stderr
    data, _ = load_yaml(flat)
    assert [layer["name"] for layer in data["layers"]] == [
        "data", "stage1_conv", "stage1_relu", "stage2_conv", "stage2_relu"]
    assert [layer["convolution_param"]["num_output"] for layer in data["layers"] if layer["type"] == "Convolution"] \
        == [8, 16]
    checked = netdef_subprocess("check", flat)
    assert checked.returncode == 0, checked.stderr
    assert "TRAIN: 5 layers, 1,392 params" in checked.stdout  # (3*9+1)*8 + (8*9+1)*16 = 224 + 1168


def test_expand_of_a_bad_net_names_block_and_instance_lines(netdef_subprocess):
    result = netdef_subprocess("expand", f"{BAD}/block_instance_value_error.yaml")
    assert result.returncode == 2
    assert result.stdout == ""
    first, via = result.stderr.splitlines()
    assert first.startswith(f"{BAD}/block_instance_value_error.yaml:16:24: layer 'stage2_conv' (Convolution): ")
    assert via == f"    in block 'conv_relu', instance 'stage2' at {BAD}/block_instance_value_error.yaml:21:11"


def test_schema_command_prints_json_schema(netdef_subprocess):
    result = netdef_subprocess("schema", "net")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "layer.Convolution" in schema["$defs"]
    wrong = netdef_subprocess("schema", "nett")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


def test_missing_file_is_a_clean_error(netdef_subprocess):
    result = netdef_subprocess("check", "nets/no_such_net.yaml")
    assert result.returncode == 2
    assert result.stderr == "no such file: nets/no_such_net.yaml\n"


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`netdef summary NET --json | head -1`: the closed pipe is no internal error, and no traceback."""
    import subprocess
    import sys

    from conftest import ROOT
    process = subprocess.Popen([sys.executable, "-m", "netdef", "summary", "nets/resnet152.yaml", "--json"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"{"  # 450 kB follow, more than the pipe holds
    process.stdout.close()
    status = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    assert status == 141, stderr
    assert stderr == ""


def test_check_checks_the_test_phase_without_stages_beside_its_deploy_stage(netdef_subprocess, write_yaml):
    """The ImageNet nets' TEST phase is two states, plain (DummyData, accuracy: `not_stage: deploy`) and
    `--stage deploy` (Input, prob): check infers both and names the staged one."""
    result = netdef_subprocess("check", "nets/resnet152.yaml")
    assert result.returncode == 0, result.stderr
    assert "; TEST: 673 layers, " in result.stdout and "; TEST (stage deploy): 671 layers, " in result.stdout
    net = write_yaml("""
        name: staged
        layers:
          - {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 3]}}}
          - {name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {num_output: 2}}
          - {name: prob, type: Softmax, bottom: ip, top: prob, include: {phase: TEST, stage: deploy}}
          - {name: bad, type: Softmax, bottom: nothing, top: bad, include: {phase: TEST, not_stage: deploy}}
        """)
    result = netdef_subprocess("check", net)
    assert result.returncode == 2 and f"{net}:6:" in result.stderr and "nothing" in result.stderr, result.stderr
