"""Malformed Caffe files that tools/fuzz.py once crashed or stalled netdef with: each is now a clean error
(exit 2, the file named with what is wrong, no traceback), or is read as far as it makes sense."""
from __future__ import annotations

import time

import pytest

from netdef.data.datum import datum_bytes
from malformed_files import png_claiming

# Two ReLU-TanH units on an Input: structure `netdef import` re-rolls into a block.
UNITS = """
name: "units"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "fc_a" type: "InnerProduct" bottom: "data" top: "fc_a" inner_product_param { num_output: 4 } }
layer { name: "relu_a" type: "ReLU" bottom: "fc_a" top: "fc_a" }
layer { name: "fc_b" type: "InnerProduct" bottom: "fc_a" top: "fc_b" inner_product_param { num_output: 4 } }
layer { name: "relu_b" type: "ReLU" bottom: "fc_b" top: "fc_b" }
"""


@pytest.fixture
def write_prototxt(tmp_path):
    def write(text, name="net.prototxt"):
        path = tmp_path / name
        path.write_text(text.lstrip("\n"), encoding="utf-8")
        return path
    return write


@pytest.mark.parametrize("nested, what", [("input_dim: " + "[" * 5000 + "1" + "]" * 5000, "lists"),
                                          ("n { " * 5000 + "}" * 5000, "messages")])
def test_deep_nesting_is_a_positioned_error(write_prototxt, netdef_subprocess, nested, what):
    """`[[[...]]]` 5,000 deep once overflowed the parser's recursion (a traceback); messages 5,000 deep in a
    large file are refused without scanning the rest of it."""
    net = write_prototxt('name: "n"\n' + nested + "\n" + "# more\n" * 100_000)
    run = netdef_subprocess("check", net)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{net}:2:" in run.stderr and f"{what} nested more than 64 deep" in run.stderr


def test_a_field_written_100000_times_is_read_in_linear_time(write_prototxt, netdef_cli):
    """Each repetition once copied the list of the earlier ones: 100,000 lines took minutes."""
    net = write_prototxt(UNITS.replace('name: "units"', 'name: "units"\n' * 100_000))
    start = time.perf_counter()
    status, _, err = netdef_cli("check", net)
    assert status == 2 and "'name'" in err and f"{net}:1:1:" in err
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("odd_type", ['type: "ReLU" type: "TanH"', "type { a: 1 }"])
def test_a_layer_type_that_is_not_a_name_is_reported(write_prototxt, netdef_cli, tmp_path, odd_type):
    """A `type` written twice (a list) or as a message once crashed the prototxt reader (unhashable type)."""
    net = write_prototxt(UNITS.replace('type: "ReLU" bottom: "fc_a"', odd_type + ' bottom: "fc_a"'))
    status, _, err = netdef_cli("check", net)
    assert status == 2 and f"{net}:4:24: layer 'relu_a': unknown layer type a " in err and "Traceback" not in err
    status, _, err = netdef_cli("import", net, "-o", tmp_path / "net.yaml")
    assert status == 0, err


@pytest.mark.parametrize("odd_wiring", ['name: "relu_b" name: "again"', 'name: "relu_b" top { a: 1 }'])
def test_import_leaves_a_net_with_odd_wiring_flat(write_prototxt, netdef_cli, tmp_path, odd_wiring):
    """A layer name written twice, or a top that is a message, once crashed re-rolling (it read them as
    text); the net is imported flat and `netdef check` names the field."""
    net = write_prototxt(UNITS.replace('name: "relu_b"', odd_wiring))
    out = tmp_path / "net.yaml"
    status, stdout, err = netdef_cli("import", net, "-o", out)
    assert status == 0 and "block" not in stdout, err
    assert "use:" not in out.read_text()
    status, _, err = netdef_cli("check", net)
    assert status == 2 and f"{net}:6:" in err and "Traceback" not in err


def test_an_encoded_datum_claiming_too_many_pixels_is_named(tmp_path, write_prototxt, netdef_cli):
    """Pillow refuses to decode 900 million pixels (a decompression bomb) with an error of its own, which
    once escaped the Datum reader."""
    import lmdb
    source = tmp_path / "bomb_lmdb"
    with lmdb.open(str(source), map_size=1 << 20) as env, env.begin(write=True) as transaction:
        transaction.put(b"00000000", datum_bytes(None, 0, png_claiming(30000, 30000)))
    net = write_prototxt(f'layer {{ name: "data" type: "Data" top: "data" top: "label" '
                         f'data_param {{ source: "{source}" batch_size: 1 backend: LMDB }} }}\n')
    status, _, err = netdef_cli("check", net)
    assert status == 2 and "Traceback" not in err
    assert f"{net}:1:" in err and f"{source}: record '00000000' holds an encoded image that cannot be decoded" in err
    assert "decompression bomb" in err


def datum_solver(tmp_path, write_prototxt, labels) -> "Path":
    """A solver training a two-class InnerProduct on an LMDB of 1 x 2 x 2 Datums with these labels."""
    import lmdb
    import numpy as np
    source = tmp_path / "labels_lmdb"
    with lmdb.open(str(source), map_size=1 << 20) as env, env.begin(write=True) as transaction:
        for index, label in enumerate(labels):
            transaction.put(f"{index:08d}".encode(), datum_bytes(np.zeros((1, 2, 2), np.uint8), label))
    write_prototxt(f"""
layer {{ name: "data" type: "Data" top: "data" top: "label"
        data_param {{ source: "{source}" batch_size: 2 backend: LMDB }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param {{ num_output: 2 }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
""")
    return write_prototxt('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n'
                          'snapshot_prefix: "net"\n', name="solver.prototxt")


def test_a_datum_label_outside_the_classes_is_named(tmp_path, write_prototxt, netdef_cli, monkeypatch):
    """A record's label past the classes the loss scores once escaped cross-entropy as an IndexError."""
    solver = datum_solver(tmp_path, write_prototxt, [0, 2147483647])
    monkeypatch.chdir(tmp_path)
    status, _, err = netdef_cli("train", solver)
    assert status == 2 and "Traceback" not in err
    assert "a label is outside the 2 classes a SoftmaxWithLoss scores (expected labels 0 to 1, found label " \
           "2147483647)" in err


def test_a_solverstate_of_a_negative_iteration_is_refused(tmp_path, write_prototxt, netdef_cli, monkeypatch):
    """Resumed, a state at iteration -2**31 (a flipped sign) once trained for billions of iterations."""
    from netdef.caffe import proto
    solver = datum_solver(tmp_path, write_prototxt, [0, 1])
    state = tmp_path / "net_iter_5.solverstate"
    state.write_bytes(proto.message("SolverState")(iter=-2 ** 31, learned_net="net_iter_5.caffemodel")
                      .SerializeToString())
    monkeypatch.chdir(tmp_path)
    status, _, err = netdef_cli("train", solver, "--snapshot", state)
    assert status == 2 and "Traceback" not in err
    assert f"{state} is damaged: its iteration is -2147483648 (expected 0 or more)" in err


@pytest.mark.parametrize("dims, values, found", [
    ([1] * 40, 1, "found 40 dimensions"), ([-1, -1], 1, "found shape [-1, -1]"),
    ([2 ** 62, 4], 0, "holds 0 values for its shape [4611686018427387904, 4] (18446744073709551616 values)")])
def test_a_caffemodel_blob_of_an_impossible_shape_is_named(tmp_path, write_prototxt, netdef_cli, dims, values, found):
    """More dimensions than numpy holds, negative ones, or a count that wrapped around in int64 once
    escaped the weights reader as a ValueError of numpy's reshape."""
    from netdef.caffe import proto
    net = write_prototxt('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }\n'
                         'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                         "inner_product_param { num_output: 2 } }\n")
    weights = proto.message("NetParameter")(name="n")
    blob = weights.layer.add(name="ip", type="InnerProduct").blobs.add()
    blob.shape.dim.extend(dims)
    blob.data.extend([0.5] * values)
    caffemodel = tmp_path / "damaged.caffemodel"
    caffemodel.write_bytes(weights.SerializeToString())
    status, _, err = netdef_cli("test", "--model", net, "--weights", caffemodel, "--iterations", 1)
    assert status == 2 and "Traceback" not in err
    assert f"{caffemodel} is damaged: blob 0 of layer 'ip' " in err and found in err

