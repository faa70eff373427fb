"""check_layer cases of the sequence layers (netdef/layers/recurrent.py): inputs are time-major T x N x ...;
the `cont` bottom (0 starts a sequence) is drawn as 0/1 labels. RNN and LSTM cases expose their hidden
state, so every forward pass starts from the given state (unexposed, a pass continues from the previous
pass's final state; tests/test_recurrent.py tests that)."""
from layer_case import Case

GAUSS = {"type": "gaussian", "std": 0.3}
CASES = [
    Case("Embed", {"embed_param": {"num_output": 4, "input_dim": 7, "weight_filler": GAUSS}}, [(3, 2)], labels={0: 7}),
    Case("Embed", {"embed_param": {"num_output": 3, "input_dim": 5, "bias_term": False}}, [(6,)], labels={0: 5},
         id="no_bias"),
    Case("LSTM", {"recurrent_param": {"num_output": 3, "weight_filler": GAUSS, "bias_filler": GAUSS,
                                      "expose_hidden": True}},
         [(4, 2, 5), (4, 2), (1, 2, 3), (1, 2, 3)], tops=3, labels={1: 2}),
    Case("LSTM", {"recurrent_param": {"num_output": 2, "weight_filler": GAUSS, "expose_hidden": True}},
         [(4, 2, 2, 3), (4, 2), (2, 4), (1, 2, 2), (1, 2, 2)], tops=3, labels={1: 2}, id="static"),
    Case("RNN", {"recurrent_param": {"num_output": 3, "weight_filler": GAUSS, "bias_filler": GAUSS,
                                     "expose_hidden": True}},
         [(4, 2, 5), (4, 2), (1, 2, 3)], tops=2, labels={1: 2}),
    Case("RNN", {"recurrent_param": {"num_output": 2, "weight_filler": GAUSS, "expose_hidden": True}},
         [(3, 2, 4), (3, 2), (2, 3), (1, 2, 2)], tops=2, labels={1: 2}, id="static"),
    Case("LSTMUnit", {}, [(1, 3, 2), (1, 3, 8), (1, 3)], tops=2, labels={2: 2}),
]
