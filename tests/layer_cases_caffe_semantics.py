"""check_layer cases of the Caffe semantics added to existing layers (tests/test_caffe_semantics.py holds their
oracles): STOCHASTIC pooling in both phases, MAX pooling's mask top, Accuracy's per-class top and
DummyData's legacy num/channels/height/width."""
from layer_case import Case

CASES = [
    Case("Pooling", {"pooling_param": {"pool": "STOCHASTIC", "kernel_size": 3, "stride": 2}}, [(2, 3, 7, 8)],
         id="stochastic"),
    Case("Pooling", {"pooling_param": {"pool": "STOCHASTIC", "kernel_size": 2, "stride": 2}}, [(2, 3, 5, 6)],
         phase="TEST", id="stochastic_test"),
    Case("Pooling", {"pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 2, "pad": 1}}, [(2, 3, 7, 8)],
         tops=2, id="mask"),
    Case("Accuracy", {"accuracy_param": {"top_k": 2, "ignore_label": 1}}, [(8, 4), (8,)], tops=2, labels={1: 4},
         id="per_class"),
    Case("DummyData", {"dummy_data_param": {"num": 2, "channels": [3, 1], "height": 4, "width": [5, 1]}}, tops=2,
         id="legacy"),
]
