"""check_layer cases (tests/test_layers.py) of Caffe's Python layer (netdef/layers/python_layer.py): it wraps
a layer class named by module and class, here built-in ones importable from sys.path, so that the harness
checks the wrapper (fields from param_str, blobs, shapes, backward, export) against what it wraps."""
from __future__ import annotations

from layer_case import Case

CASES = [
    Case("Python", {"python_param": {"module": "netdef.layers.neuron", "layer": "ReLU",
                                     "param_str": "negative_slope: 0.1"}}, [(2, 3, 4)], id="relu"),
    Case("Python", {"python_param": {"module": "netdef.layers.neuron", "layer": "PReLU",
                                     "param_str": "{channel_shared: false, filler: {type: gaussian, std: 0.5}}"}},
         [(2, 3, 5, 5)], id="prelu"),
]
