"""check_layer cases (tests/test_layers.py) of the layers past Caffe: netdef/layers/modern.py, attention.py and
BatchNorm's scale_bias."""
from __future__ import annotations

from layer_case import Case

GAUSSIAN = {"type": "gaussian", "std": 0.5}

CASES = [
    Case("BatchNorm", {"batch_norm_param": {"scale_bias": True, "scale_filler": GAUSSIAN, "bias_filler": GAUSSIAN}},
         [(4, 3, 5, 2)], id="scale_bias"),
    Case("BatchNorm", {"batch_norm_param": {"scale_bias": True}, "param": [{"lr_mult": 0}] * 3 + [{"lr_mult": 1}] * 2},
         [(3, 2)], phase="TEST", id="scale_bias_test"),
    Case("GELU", {}, [(3, 4)]),
    Case("GELU", {"gelu_param": {"approximate": "TANH"}}, [(3, 4)], id="tanh"),
    Case("SiLU", {}, [(3, 4)]),
    Case("Hardswish", {}, [(3, 4)]),
    Case("Mish", {}, [(3, 4)]),
    Case("GroupNorm", {"group_norm_param": {"num_groups": 2, "weight_filler": GAUSSIAN, "bias_filler": GAUSSIAN}},
         [(2, 6, 3, 4)]),
    Case("GroupNorm", {"group_norm_param": {"num_groups": 3, "affine": False, "eps": 1e-3}}, [(2, 3, 5)],
         id="no_affine"),
    Case("LayerNorm", {"layer_norm_param": {"weight_filler": GAUSSIAN, "bias_filler": GAUSSIAN, "eps": 1e-6}},
         [(2, 5, 8)]),
    Case("LayerNorm", {"layer_norm_param": {"axis": 1}}, [(2, 3, 4, 5)], id="axes"),
    Case("AdaptiveAvgPool", {"adaptive_avg_pool_param": {"output_size": [2, 3]}}, [(2, 3, 7, 8)]),
    Case("AdaptiveAvgPool", {"adaptive_avg_pool_param": {"output_size": 1}}, [(2, 3, 5, 5)], id="global"),
    Case("Upsample", {"upsample_param": {"scale": 2}}, [(2, 3, 4, 5)]),
    Case("Upsample", {"upsample_param": {"height": 7, "width": 3, "mode": "BILINEAR", "align_corners": True}},
         [(1, 2, 4, 5)], id="bilinear_size"),
    Case("Interp", {"interp_param": {"zoom_factor": 3}}, [(1, 2, 4, 5)]),
    Case("Interp", {"interp_param": {"shrink_factor": 2, "pad_beg": -1, "pad_end": -1}}, [(1, 2, 9, 8)], id="shrink_crop"),
    Case("ShuffleChannel", {"shuffle_channel_param": {"group": 3}}, [(2, 6, 2, 3)]),
    Case("MatMul", {}, [(2, 3, 4), (2, 4, 5)]),
    Case("MatMul", {"matmul_param": {"transpose_a": True, "transpose_b": True}}, [(2, 1, 4, 3), (3, 5, 4)],
         id="transposed_broadcast"),
    Case("MultiHeadAttention", {"multi_head_attention_param": {"num_heads": 2, "weight_filler": {"type": "xavier"},
                                                               "bias_filler": GAUSSIAN}}, [(2, 5, 8)]),
    Case("MultiHeadAttention", {"multi_head_attention_param": {"num_heads": 4, "bias_term": False, "dropout_ratio": 0.1,
                                                               "weight_filler": {"type": "xavier"}}},
         [(2, 3, 8), (2, 6, 8), (2, 6, 8)], id="cross_dropout"),
    Case("Permute", {"permute_param": {"order": [0, 2, 1]}}, [(2, 3, 4)]),
    Case("Permute", {"permute_param": {"order": [0, 3]}}, [(2, 3, 4, 5)], id="partial"),
    Case("Parameter", {"parameter_param": {"shape": {"dim": [1, 3, 4]}, "filler": GAUSSIAN}}),
    Case("Tile", {"tile_param": {"tiles": 3}}, [(2, 3, 4)]),
    Case("Tile", {"tile_param": {"axis": -1, "tiles": 2}}, [(2, 3)], id="last_axis"),
]
