"""check_layer cases (tests/test_layers.py) of the rest of Caffe 1.0's catalogue: netdef/layers/caffe_neuron.py,
caffe_structure.py, caffe_spatial.py, caffe_losses.py and caffe_io.py, and 3-D Convolution and Deconvolution
(tests/test_caffe_layers.py holds their oracles). The file-reading and file-writing layers get their files in a temporary folder made here: a
window file with two real images, an infogain matrix as Caffe's binaryproto, and the HDF5Output target;
MemoryData's layer ("layer", check_layer's name) is fed its arrays here, as a Python caller would."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from layer_case import Case
from netdef.data.mean import write_binaryproto
from netdef.data.memory import set_input_arrays

_FOLDER = tempfile.TemporaryDirectory(prefix="netdef_caffe_cases_")  # removed when the test process ends
FILES = Path(_FOLDER.name)


def write_window_file(folder: Path) -> Path:
    """Two real images (12 x 16 and 10 x 10) and a window file over them: foreground windows of classes 1
    and 2, background ones, and one between the thresholds (unused)."""
    for i, (height, width) in enumerate(((12, 16), (10, 10))):
        pixels = np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"window{i}.png")
    (folder / "windows.txt").write_text(
        "# 0\nwindow0.png\n3\n12\n16\n3\n1 0.9 2 1 9 8\n2 0.6 0 0 15 11\n0 0.1 5 5 12 10\n"
        "# 1\nwindow1.png\n3\n10\n10\n2\n1 0.3 1 1 3 3\n0 0.0 0 0 4 6\n")
    return folder / "windows.txt"


WINDOWS = write_window_file(FILES)
write_binaryproto((np.eye(3) + 0.5 * np.eye(3, k=1))[None], FILES / "infogain.binaryproto")  # 1 x 1 x K x K
set_input_arrays("layer", np.random.default_rng(0).normal(size=(6, 2, 3, 4)), np.arange(6) % 3)

CASES = [
    Case("BNLL", {}, [(3, 4)]),
    Case("Threshold", {"threshold_param": {"threshold": 0.2}}, [(3, 4)]),
    Case("Clip", {"clip_param": {"min": -0.5, "max": 0.7}}, [(3, 4)]),
    Case("Swish", {"swish_param": {"beta": 1.5}}, [(3, 4)]),
    Case("Crop", {"crop_param": {"offset": [1, 2]}}, [(2, 3, 7, 8), (2, 1, 4, 5)]),
    Case("Crop", {"crop_param": {"axis": 1, "offset": 1}}, [(2, 4, 6), (2, 2, 3)], id="axis1"),
    Case("Reduction", {}, [(2, 3, 4)]),
    Case("Reduction", {"reduction_param": {"operation": "SUMSQ", "axis": 1}}, [(2, 3, 4)], id="sumsq"),
    Case("Reduction", {"reduction_param": {"operation": "ASUM", "axis": 2, "coeff": -2}}, [(2, 3, 4)], id="asum"),
    Case("Reduction", {"reduction_param": {"operation": "MEAN", "axis": -1, "coeff": 0.5}}, [(2, 3, 4)], id="mean"),
    Case("MVN", {}, [(2, 3, 4, 5)]),
    Case("MVN", {"mvn_param": {"across_channels": True, "normalize_variance": False}}, [(2, 3, 4)], id="across"),
    Case("Silence", {}, [(2, 3), (4,)], tops=0),
    Case("Filter", {}, [(4, 3), (4, 2, 2), (4,)], tops=2),  # a Gaussian selector is never 0: all kept
    Case("BatchReindex", {}, [(4, 3, 2), (6,)], labels={1: 4}),
    Case("SPP", {"spp_param": {"pyramid_height": 3}}, [(2, 3, 7, 9)]),
    Case("SPP", {"spp_param": {"pyramid_height": 2, "pool": "AVE"}}, [(2, 2, 5, 6)], id="ave"),
    Case("SPP", {"spp_param": {"pyramid_height": 3, "pool": "STOCHASTIC"}}, [(2, 2, 8, 4)], id="stochastic"),
    Case("SPP", {"spp_param": {"pyramid_height": 2, "pool": "STOCHASTIC"}}, [(2, 2, 4, 6)], phase="TEST",
         id="stochastic_test"),
    Case("Im2col", {"convolution_param": {"kernel_size": 3, "stride": 2, "pad": 1}}, [(2, 3, 7, 8)]),
    Case("Im2col", {"convolution_param": {"kernel_h": 2, "kernel_w": 3, "dilation": 2}}, [(1, 2, 6, 7)], id="dilated"),
    Case("InfogainLoss", {}, [(4, 3), (4,), (3, 3)], labels={1: 3}),
    Case("InfogainLoss", {"infogain_loss_param": {"source": str(FILES / "infogain.binaryproto")},
                          "loss_param": {"ignore_label": 0}}, [(2, 3, 2, 2), (2, 1, 2, 2)], tops=2, labels={1: 3},
         id="source_prob"),
    Case("HingeLoss", {}, [(4, 5), (4,)], labels={1: 5}),
    Case("HingeLoss", {"hinge_loss_param": {"norm": "L2"}}, [(4, 5), (4,)], labels={1: 5}, id="l2"),
    Case("MultinomialLogisticLoss", {}, [(4, 5), (4,)], labels={1: 5}),
    Case("ContrastiveLoss", {}, [(4, 3), (4, 3), (4,)], labels={2: 2}),
    Case("ContrastiveLoss", {"contrastive_loss_param": {"margin": 2, "legacy_version": True}},
         [(4, 3, 1, 1), (4, 3, 1, 1), (4, 1, 1, 1)], labels={2: 2}, id="legacy"),
    Case("HDF5Output", {"hdf5_output_param": {"file_name": str(FILES / "out.h5")}}, [(3, 2, 2), (3,)], tops=0),
    Case("Convolution", {"convolution_param": {"num_output": 4, "kernel_size": [2, 3, 3], "stride": [1, 2, 2],
                                                "pad": 1, "dilation": [2, 1, 1], "group": 2,
                                                "weight_filler": {"type": "xavier"}}}, [(2, 2, 5, 7, 6)], id="3d"),
    Case("Deconvolution", {"convolution_param": {"num_output": 3, "kernel_size": 2, "stride": 2,
                                                  "weight_filler": {"type": "xavier"}}}, [(1, 2, 3, 4, 2)], id="3d"),
    Case("MemoryData", {"memory_data_param": {"batch_size": 3, "channels": 2, "height": 3, "width": 4}}, tops=2),
    Case("WindowData", {"window_data_param": {"source": str(WINDOWS), "batch_size": 4, "context_pad": 1},
                        "transform_param": {"crop_size": 6, "mirror": True, "mean_value": [100, 110, 120]}}, tops=2),
]
