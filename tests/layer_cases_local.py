"""check_layer cases (tests/test_layers.py) of LocallyConnected (netdef/layers/local.py)."""
from __future__ import annotations

from layer_case import Case

_FILLERS = {"weight_filler": {"type": "gaussian", "std": 0.1}, "bias_filler": {"type": "uniform"}}

CASES = [
    Case("LocallyConnected", {"local_param": {"num_output": 3, "kernel_size": 3, **_FILLERS}}, [(2, 2, 5, 6)],
         id="plain"),
    Case("LocallyConnected", {"local_param": {"num_output": 2, "kernel_size": 2, "stride": 2, "pad": 1,
                                              "bias_term": False, **_FILLERS}}, [(1, 3, 5, 5)], id="stride-pad"),
]
