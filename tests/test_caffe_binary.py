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
