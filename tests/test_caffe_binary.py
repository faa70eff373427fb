"""Caffe's binary files against the files real BVLC Caffe 1.0 wrote (../shared/caffe/fixtures): .caffemodel
weights in `netdef test`, `train --weights` and `export`, .solverstate resumes, LMDB and LevelDB Datum data,
.binaryproto means, and tools/convert_imageset.py and tools/compute_image_mean.py writing them."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, SHARED, needs_shared
from netdef.caffe import proto
from netdef.caffe.caffemodel import read_caffemodel
from netdef.caffe.prototxt import load_prototxt

FIXTURES = SHARED / "caffe" / "fixtures"
pytestmark = needs_shared("caffe", "fixtures")
CAFFEMODEL = FIXTURES / "lenet_iter_1000.caffemodel"
SOLVERSTATE = FIXTURES / "lenet_iter_1000.solverstate"


def caffe_log_outputs(log: str) -> dict:
    """The test outputs Caffe's `caffe test` log printed at its end: {blob: printed text}."""
    return dict(re.findall(r"caffe\.cpp:\d+\] (\w+) = (\S+)", log))


def lenet_net(tmp_path, **data_param) -> "Path":
    """Caffe's LeNet train/test net as a netdef file whose Data layers read the fixture LMDBs (the prototxt
    names them relative to where Caffe ran), `data_param` overriding fields of both."""
    net = load_prototxt(FIXTURES / "lenet_train_test.prototxt")
    for layer in net["layers"]:
        if "data_param" in layer:
            layer["data_param"]["source"] = str(FIXTURES / layer["data_param"]["source"])
            layer["data_param"].update(data_param)
    path = tmp_path / "lenet_train_test.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False), encoding="utf-8")
    return path


def test_caffemodel_blobs_are_caffes_layers():
    blobs = read_caffemodel(CAFFEMODEL)
    assert {name: [tuple(t.shape) for t in tensors] for name, tensors in blobs.items()} == {
        "conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
        "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}
    raw = proto.parse("NetParameter", CAFFEMODEL.read_bytes())
    conv1 = next(layer for layer in raw.layer if layer.name == "conv1")
    assert blobs["conv1"][0].flatten()[:5].tolist() == list(conv1.blobs[0].data[:5])


def test_netdef_test_with_caffes_weights_gives_caffes_log(tmp_path, netdef_cli):
    """`caffe test -iterations 10` on these weights printed accuracy = 0.962, loss = 0.148251."""
    status, out, err = netdef_cli("test", "--model", lenet_net(tmp_path), "--weights", CAFFEMODEL,
                                  "--iterations", 10)
    assert status == 0, err
    caffe = (FIXTURES / "test_iter_1000.log").read_text()
    expected = caffe_log_outputs(caffe)
    assert expected == {"accuracy": "0.962", "loss": "0.148251"}
    assert re.search(r"^accuracy = (\S+)$", out, re.M).group(1) == expected["accuracy"]
    assert re.search(r"^loss = (\S+) ", out, re.M).group(1) == expected["loss"]
    # every batch as Caffe printed it: accuracies exactly, losses to the last printed digit's rounding
    # (float32 sums in another order)
    caffe_batches = re.findall(r"\] Batch (\d+), (\w+) = (\S+)", caffe)
    ours = re.findall(r"^Batch (\d+), (\w+) = (\S+)$", out, re.M)
    assert [row[:2] for row in ours] == [row[:2] for row in caffe_batches] and len(ours) == 20
    for (_, blob, value), (_, _, caffe_value) in zip(ours, caffe_batches):
        assert float(value) == (float(caffe_value) if blob == "accuracy" else pytest.approx(float(caffe_value), rel=1e-5))
    assert "Not every blob" not in out


def lenet_solver(tmp_path, net, **fields):
    """Caffe's LeNet solver as a netdef file training `net`, with `fields` changed."""
    from netdef.caffe.prototxt import parse_prototxt
    solver = parse_prototxt((FIXTURES / "lenet_solver.prototxt").read_text())
    solver.pop("solver_mode")  # Caffe's CPU/GPU switch: netdef's `device`
    solver.update(net=net.name, **fields)
    path = tmp_path / "lenet_solver.yaml"
    path.write_text(yaml.safe_dump(solver), encoding="utf-8")
    return path


def test_solverstate_resume_restores_caffes_iteration_and_history(tmp_path):
    from netdef.train.config import load_solver
    from netdef.train.solver import Solver
    solver = Solver(load_solver(lenet_solver(tmp_path, lenet_net(tmp_path))))
    solver.restore(SOLVERSTATE)
    assert solver.iter == 1000
    state = proto.parse("SolverState", SOLVERSTATE.read_bytes())
    history = solver.state.updater.state_dict()["history"]["history"]
    order = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "ip1.weight", "ip1.bias", "ip2.weight",
             "ip2.bias"]  # Caffe's learnable_params_: layer order, each layer's blob order
    assert sorted(history) == sorted(order)
    for name, blob in zip(order, state.history):
        assert history[name].flatten().tolist() == list(blob.data), name
    weights = read_caffemodel(FIXTURES / state.learned_net)
    assert torch.equal(solver.train.net.get_parameter("ip2.weight"), weights["ip2"][0])


def test_train_resumes_a_solverstate_at_iteration_1000(tmp_path, netdef_subprocess):
    """Caffe's own log at iteration 1000: the test net's accuracy = 0.962, loss = 0.148251, lr = 0.00931012."""
    solver = lenet_solver(tmp_path, lenet_net(tmp_path), max_iter=1010, test_interval=10, display=5,
                          snapshot=0)
    run = netdef_subprocess("train", solver, "--snapshot", SOLVERSTATE, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    log = run.stdout + run.stderr
    assert f"Restoring previous solver status from {SOLVERSTATE}" in log
    assert "Restored Caffe's solver state: iteration 1000, 8 history blobs" in log
    at_1000 = log[log.index("Iteration 1000, Testing net (#0)"):]
    assert "Test net output #0: accuracy = 0.962" in at_1000 and "loss = 0.148251 (* 1 = 0.148251 loss)" in at_1000
    assert "Iteration 1000, lr = 0.00931012" in log
    assert "Iteration 1005" in log and "Iteration 1010, Testing net (#0)" in log
    assert (tmp_path / "lenet_iter_1010.pt").is_file()


def test_train_from_caffes_lmdb_data(tmp_path, netdef_subprocess):
    """A fresh LeNet run on Caffe's LMDBs: the loss falls from ln(10) within a few iterations."""
    solver = lenet_solver(tmp_path, lenet_net(tmp_path), max_iter=30, test_interval=30, test_iter=2, display=10,
                          snapshot=0, random_seed=1)
    run = netdef_subprocess("train", solver, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    losses = [float(v) for v in re.findall(r"Iteration \d+ .*loss = (\S+)", run.stdout)]
    assert losses[0] > 2.0 and losses[-1] < 1.5, run.stdout
    accuracy = float(re.findall(r"Test net output #0: accuracy = (\S+)", run.stdout)[-1])
    assert accuracy > 0.5
