"""The layers past Caffe (netdef/layers/modern.py, attention.py, BatchNorm's scale_bias) against oracles: each
one-layer net is compiled by netdef from a real file, run in float64 and compared with a float64 formula written
from the paper or the Caffe fork that defines the layer (plain loops where the indexing is the point), or with
PyTorch's own reference (nn.MultiheadAttention). Backward: torch.autograd.gradcheck through the compiled net.
Bad fields and shapes are positioned errors of `netdef check`."""
from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

import netdef

LAYER = "layer"


def bottom_names(shapes) -> list:
    return [f"in{j}" for j in range(len(shapes))]


def write(tmp_path, layer_type, params, shapes, name=None):
    """A net file: an Input of the given shapes (none without shapes) feeding the layer, whose top is `out`."""
    bottoms = bottom_names(shapes)
    layers = [{"name": LAYER, "type": layer_type, "bottom": bottoms, "top": "out", **params}]
    if shapes:
        layers.insert(0, {"name": "input", "type": "Input", "top": bottoms,
                          "input_param": {"shape": [{"dim": list(s)} for s in shapes]}})
    path = tmp_path / f"{name or layer_type}.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "layers": layers}, sort_keys=False))
    return path


class OneLayer:
    """The net `write` writes, compiled in float64: call it with the bottoms' tensors."""

    def __init__(self, tmp_path, layer_type, params, shapes, phase="TRAIN"):
        torch.manual_seed(0)
        self.net = netdef.load_net(write(tmp_path, layer_type, params, shapes), phase=phase).double()
        self.module = self.net.get_submodule(LAYER)
        self.bottoms = bottom_names(shapes)

    def __call__(self, *xs):
        return self.net(**{self.net.input_names[b]: x for b, x in zip(self.bottoms, xs)})["out"]

    def gradcheck(self, *xs):
        """Analytic gradients of the inputs and of every learnt blob against finite differences."""
        from torch.func import functional_call
        names = [name for name, p in self.net.named_parameters() if p.requires_grad]
        blobs = tuple(self.net.get_parameter(name).detach().clone().requires_grad_(True) for name in names)
        inputs = tuple(x.detach().clone().requires_grad_(True) for x in xs)

        def function(*args):
            feed = {self.net.input_names[b]: x for b, x in zip(self.bottoms, args[:len(inputs)])}
            return functional_call(self.net, dict(zip(names, args[len(inputs):])), kwargs=feed)["out"]
        assert torch.autograd.gradcheck(function, inputs + blobs)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(got, expected, tol=1e-10):
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


# ---------------------------------------------------------------- normalisation

def test_batch_norm_scale_bias_is_caffes_statistics_then_an_affine_part(tmp_path):
    params = {"batch_norm_param": {"scale_bias": True, "scale_filler": {"type": "gaussian"},
                                   "bias_filler": {"type": "gaussian"}, "moving_average_fraction": 0.9}}
    layer = OneLayer(tmp_path, "BatchNorm", params, [(4, 3, 2, 5)])
    x = randn(4, 3, 2, 5)
    gamma, beta = layer.module.weight.detach(), layer.module.bias.detach()
    mean = x.mean((0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    close(layer(x), normalised * gamma.view(1, 3, 1, 1) + beta.view(1, 3, 1, 1))
    # Caffe's three statistics blobs come first, kept as Caffe keeps them: sums with a scale factor of 1
    assert [name for name, _ in layer.module.named_buffers()] == ["mean", "variance", "scale_factor"]
    m = x.numel() / 3
    close(layer.module.variance, var.flatten() * m / (m - 1))
    layer.gradcheck(x)


def test_batch_norm_scale_bias_tests_with_stored_statistics(tmp_path):
    layer = OneLayer(tmp_path, "BatchNorm", {"batch_norm_param": {"scale_bias": True, "eps": 1e-3}}, [(2, 3)], "TEST")
    mean, var, gamma, beta = (torch.tensor(v, dtype=torch.float64) for v in
                              ([1.0, -2.0, 0.5], [2.0, 0.5, 1.0], [0.5, 2.0, -1.0], [0.1, 0.2, 0.3]))
    with torch.no_grad():  # Caffe stores sums and the factor they are divided by
        layer.module.mean.copy_(mean * 4)
        layer.module.variance.copy_(var * 4)
        layer.module.scale_factor.fill_(4)
        layer.module.weight.copy_(gamma)
        layer.module.bias.copy_(beta)
    x = randn(2, 3)
    close(layer(x), (x - mean) / torch.sqrt(var + 1e-3) * gamma + beta)


def test_batch_norm_scale_bias_blobs_follow_caffes_three(tmp_path):
    """Blobs 3 and 4 (scale, bias) learn with their own param entries; the statistics may not."""
    params = {"batch_norm_param": {"scale_bias": True},
              "param": [{"lr_mult": 0}] * 3 + [{"lr_mult": 1, "decay_mult": 0}, {"lr_mult": 2, "decay_mult": 0}]}
    info = netdef.summarize(write(tmp_path, "BatchNorm", params, [(2, 4, 3, 3)]))
    row = info.row(LAYER)
    assert [(b.name, b.learnable, b.param_index) for b in row.blobs] == [
        ("mean", False, 0), ("variance", False, 1), ("scale_factor", False, 2), ("weight", True, 3), ("bias", True, 4)]
    assert row.params == 8


def group_norm_oracle(x, groups, gamma, beta, eps):
    n, c = x.shape[:2]
    out = torch.empty_like(x)
    size = c // groups
    for i, g in itertools.product(range(n), range(groups)):
        part = x[i, g * size:(g + 1) * size]
        mean = part.mean()
        var = ((part - mean) ** 2).mean()
        out[i, g * size:(g + 1) * size] = (part - mean) / math.sqrt(var + eps)
    view = [1, c] + [1] * (x.dim() - 2)
    return out * gamma.view(view) + beta.view(view)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_group_norm_normalises_each_group_of_each_sample(tmp_path, phase):
    params = {"group_norm_param": {"num_groups": 3, "eps": 1e-4, "weight_filler": {"type": "gaussian"},
                                   "bias_filler": {"type": "gaussian"}}}
    layer = OneLayer(tmp_path, "GroupNorm", params, [(2, 6, 3, 2)], phase)
    x = randn(2, 6, 3, 2) * 3 + 1
    expected = group_norm_oracle(x, 3, layer.module.weight.detach(), layer.module.bias.detach(), 1e-4)
    close(layer(x), expected)
    layer.gradcheck(x)


def test_layer_norm_normalises_the_axes_from_axis_on(tmp_path):
    params = {"layer_norm_param": {"axis": 2, "eps": 1e-6, "weight_filler": {"type": "gaussian"},
                                   "bias_filler": {"type": "gaussian"}}}
    layer = OneLayer(tmp_path, "LayerNorm", params, [(2, 3, 4, 5)])
    assert layer.module.weight.shape == (4, 5)
    x = randn(2, 3, 4, 5)
    mean = x.mean((2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((2, 3), keepdim=True)
    close(layer(x), (x - mean) / torch.sqrt(var + 1e-6) * layer.module.weight + layer.module.bias)
    layer.gradcheck(x)


def test_layer_norm_without_affine_learns_nothing(tmp_path):
    layer = OneLayer(tmp_path, "LayerNorm", {"layer_norm_param": {"affine": False}}, [(2, 7)])
    x = randn(2, 7)
    close(layer(x), (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, correction=0, keepdim=True) + 1e-5))
    assert not list(layer.net.parameters())


# ---------------------------------------------------------------- activations

ACTIVATIONS = {
    "GELU": ({}, lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
    "GELU-tanh": ({"gelu_param": {"approximate": "TANH"}},
                  lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "SiLU": ({}, lambda x: x / (1 + torch.exp(-x))),
    "Hardswish": ({}, lambda x: x * torch.clamp(x + 3, 0, 6) / 6),
    "Mish": ({}, lambda x: x * torch.tanh(torch.log1p(torch.exp(x)))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_formula(tmp_path, name):
    params, formula = ACTIVATIONS[name]
    layer = OneLayer(tmp_path, name.split("-")[0], params, [(3, 40)])
    x = torch.linspace(-6, 6, 120, dtype=torch.float64).reshape(3, 40) + 0.013  # off Hardswish's kinks at -3 and 3
    close(layer(x), formula(x))
    layer.gradcheck(x[:, ::7])  # a few points: gradcheck is quadratic in the input size


# ---------------------------------------------------------------- resampling

def adaptive_average(x, out_h, out_w):
    """Cell (i, j) averages rows floor(i H / oh) .. ceil((i + 1) H / oh) - 1, likewise columns."""
    h, w = x.shape[2:]
    out = torch.empty(*x.shape[:2], out_h, out_w, dtype=x.dtype)
    for i, j in itertools.product(range(out_h), range(out_w)):
        rows = slice(i * h // out_h, -(-(i + 1) * h // out_h))
        cols = slice(j * w // out_w, -(-(j + 1) * w // out_w))
        out[:, :, i, j] = x[:, :, rows, cols].mean((2, 3))
    return out


def test_adaptive_avg_pool_windows_overlap_as_pytorchs(tmp_path):
    layer = OneLayer(tmp_path, "AdaptiveAvgPool", {"adaptive_avg_pool_param": {"output_size": [3, 4]}}, [(2, 2, 7, 10)])
    x = randn(2, 2, 7, 10)
    close(layer(x), adaptive_average(x, 3, 4))
    layer.gradcheck(x[:1, :1])


def bilinear_corners(x, out_h, out_w):
    """Bilinear interpolation mapping corner pixels onto corner pixels (DeepLab's caffe_cpu_interp2)."""
    h, w = x.shape[2:]
    out = torch.empty(*x.shape[:2], out_h, out_w, dtype=x.dtype)
    for i, j in itertools.product(range(out_h), range(out_w)):
        y = i * (h - 1) / (out_h - 1) if out_h > 1 else 0.0
        z = j * (w - 1) / (out_w - 1) if out_w > 1 else 0.0
        y0, z0 = int(y), int(z)
        y1, z1 = min(y0 + 1, h - 1), min(z0 + 1, w - 1)
        dy, dz = y - y0, z - z0
        out[:, :, i, j] = ((1 - dy) * ((1 - dz) * x[:, :, y0, z0] + dz * x[:, :, y0, z1])
                           + dy * ((1 - dz) * x[:, :, y1, z0] + dz * x[:, :, y1, z1]))
    return out


def test_upsample_nearest_repeats_each_pixel(tmp_path):
    layer = OneLayer(tmp_path, "Upsample", {"upsample_param": {"scale": 2}}, [(1, 2, 3, 4)])
    x = randn(1, 2, 3, 4)
    close(layer(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_upsample_bilinear_with_corners_to_a_size(tmp_path):
    params = {"upsample_param": {"height": 7, "width": 5, "mode": "BILINEAR", "align_corners": True}}
    layer = OneLayer(tmp_path, "Upsample", params, [(1, 2, 4, 3)])
    x = randn(1, 2, 4, 3)
    close(layer(x), bilinear_corners(x, 7, 5))
    layer.gradcheck(x)


def test_upsample_bilinear_half_pixel_is_pytorchs(tmp_path):
    layer = OneLayer(tmp_path, "Upsample", {"upsample_param": {"scale": 1.5, "mode": "BILINEAR"}}, [(1, 1, 4, 6)])
    x = randn(1, 1, 4, 6)
    assert layer(x).shape == (1, 1, 6, 9)
    close(layer(x), F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=False))


@pytest.mark.parametrize("params, size, expected", [
    ({"zoom_factor": 4}, (5, 3), (17, 9)),  # H + (H - 1)(zoom - 1), DeepLab's upsampling of its scores
    ({"shrink_factor": 2}, (9, 8), (5, 4)),  # (H - 1) / shrink + 1
    ({"shrink_factor": 2, "zoom_factor": 3}, (9, 8), (13, 10)),
    ({"zoom_factor": 2, "pad_beg": -1, "pad_end": -1}, (6, 7), (7, 9)),  # crops a pixel on each side first
    ({"height": 5, "width": 2}, (3, 3), (5, 2)),
], ids=["zoom", "shrink", "shrink_zoom", "crop_zoom", "size"])
def test_interp_sizes_and_values_are_deeplabs(tmp_path, params, size, expected):
    layer = OneLayer(tmp_path, "Interp", {"interp_param": params}, [(1, 2, *size)])
    x = randn(1, 2, *size)
    crop = -params.get("pad_beg", 0)
    cropped = x[:, :, crop:size[0] - crop, crop:size[1] - crop]
    got = layer(x)
    assert got.shape[2:] == expected
    close(got, bilinear_corners(cropped, *expected))


def test_interp_backward(tmp_path):
    layer = OneLayer(tmp_path, "Interp", {"interp_param": {"zoom_factor": 2, "pad_beg": -1}}, [(1, 1, 4, 4)])
    layer.gradcheck(randn(1, 1, 4, 4))


def test_shuffle_channel_interleaves_the_groups(tmp_path):
    layer = OneLayer(tmp_path, "ShuffleChannel", {"shuffle_channel_param": {"group": 3}}, [(2, 6, 2, 2)])
    x = randn(2, 6, 2, 2)
    per_group = 2
    expected = torch.stack([x[:, j * per_group + k] for k in range(per_group) for j in range(3)], 1)
    close(layer(x), expected)
    layer.gradcheck(x[:, :, :1, :1])


# ---------------------------------------------------------------- tokens

def test_matmul_transposes_and_broadcasts(tmp_path):
    layer = OneLayer(tmp_path, "MatMul", {"matmul_param": {"transpose_a": True, "transpose_b": True}},
                     [(2, 1, 4, 3), (3, 5, 4)])
    a, b = randn(2, 1, 4, 3), randn(3, 5, 4, seed=1)
    expected = torch.zeros(2, 3, 3, 5, dtype=torch.float64)
    for n, c, i, j in itertools.product(range(2), range(3), range(3), range(5)):
        expected[n, c, i, j] = sum(a[n, 0, k, i] * b[c, j, k] for k in range(4))
    close(layer(a, b), expected)
    layer.gradcheck(a, b)
    assert netdef.summarize(write(tmp_path, "MatMul", {}, [(2, 3, 4), (4, 5)])).row(LAYER).macs == 3 * 5 * 4


def reference_attention(layer, embed, heads, query, key, value):
    """PyTorch's nn.MultiheadAttention holding the layer's blobs."""
    reference = torch.nn.MultiheadAttention(embed, heads, batch_first=True, dtype=torch.float64)
    reference.load_state_dict({"in_proj_weight": layer.module.in_proj_weight, "in_proj_bias": layer.module.in_proj_bias,
                               "out_proj.weight": layer.module.out_proj_weight,
                               "out_proj.bias": layer.module.out_proj_bias})
    return reference(query, key, value, need_weights=False)[0]


def test_self_attention_is_pytorchs_multihead_attention(tmp_path):
    params = {"multi_head_attention_param": {"num_heads": 3, "weight_filler": {"type": "xavier"},
                                             "bias_filler": {"type": "gaussian"}}}
    layer = OneLayer(tmp_path, "MultiHeadAttention", params, [(2, 5, 6)])
    x = randn(2, 5, 6)
    close(layer(x), reference_attention(layer, 6, 3, x, x, x))
    layer.gradcheck(x[:, :3])


def test_cross_attention_reads_key_and_value_bottoms(tmp_path):
    params = {"multi_head_attention_param": {"num_heads": 2, "weight_filler": {"type": "xavier"},
                                             "bias_filler": {"type": "gaussian"}}}
    layer = OneLayer(tmp_path, "MultiHeadAttention", params, [(2, 3, 4), (2, 6, 4), (2, 6, 4)])
    query, key, value = randn(2, 3, 4), randn(2, 6, 4, seed=1), randn(2, 6, 4, seed=2)
    close(layer(query, key, value), reference_attention(layer, 4, 2, query, key, value))


def test_attention_per_head_formula_and_macs(tmp_path):
    """softmax(q k^T / sqrt(d)) v per head of d = E / h columns, written out; MACs per sample:
    projections 4 L E^2 and the two products 2 L^2 E."""
    params = {"multi_head_attention_param": {"num_heads": 2, "bias_term": False, "weight_filler": {"type": "xavier"}}}
    layer = OneLayer(tmp_path, "MultiHeadAttention", params, [(1, 4, 6)])
    x = randn(1, 4, 6)[0]
    w_q, w_k, w_v = layer.module.in_proj_weight.detach().chunk(3)
    heads = []
    for h in range(2):
        cols = slice(3 * h, 3 * h + 3)
        q, k, v = x @ w_q[cols].T, x @ w_k[cols].T, x @ w_v[cols].T
        heads.append(torch.softmax(q @ k.T / math.sqrt(3), -1) @ v)
    close(layer(x[None])[0], torch.cat(heads, 1) @ layer.module.out_proj_weight.detach().T)
    row = netdef.summarize(write(tmp_path, "MultiHeadAttention", params, [(3, 4, 6)])).row(LAYER)
    assert row.macs == 4 * 4 * 6 * 6 + 2 * 4 * 4 * 6 and row.params == 4 * 6 * 6


def test_permute_reorders_axes_and_keeps_the_rest(tmp_path):
    layer = OneLayer(tmp_path, "Permute", {"permute_param": {"order": [0, 3]}}, [(2, 3, 4, 5)])
    x = randn(2, 3, 4, 5)
    close(layer(x), torch.from_numpy(x.numpy().transpose(0, 3, 1, 2)))
    layer.gradcheck(x)


def test_parameter_is_a_learnt_top(tmp_path):
    layer = OneLayer(tmp_path, "Parameter", {"parameter_param": {"shape": {"dim": [2, 3]}, "filler": {"type": "gaussian"}}},
                     [])
    out = layer()
    close(out, layer.module.weight.detach())
    (out * torch.arange(6.0, dtype=torch.float64).reshape(2, 3)).sum().backward()
    close(layer.module.weight.grad, torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
    with torch.no_grad():
        out.mul_(0)  # a layer working in place on the top leaves the blob alone
    assert layer.module.weight.abs().sum() > 0
    caffe_default = OneLayer(tmp_path, "Parameter", {"parameter_param": {"shape": {"dim": [4]}}}, [])
    assert (caffe_default() == 0).all()


def test_tile_concatenates_copies_along_the_axis(tmp_path):
    layer = OneLayer(tmp_path, "Tile", {"tile_param": {"axis": 1, "tiles": 3}}, [(2, 2, 3)])
    x = randn(2, 2, 3)
    expected = torch.cat([x, x, x], 1)
    close(layer(x), expected)
    layer.gradcheck(x)


# ---------------------------------------------------------------- bad input: positioned errors of `netdef check`

BAD = [
    ("GroupNorm", {"group_norm_param": {"num_groups": 4}}, [(2, 6, 3, 3)], "cannot be split into 'num_groups' groups"),
    ("LayerNorm", {"layer_norm_param": {"axis": 0}}, [(2, 6)], "would normalise across the batch"),
    ("MultiHeadAttention", {"multi_head_attention_param": {"num_heads": 4}}, [(2, 5, 6)],
     "cannot be split into 'num_heads' heads"),
    ("MultiHeadAttention", {"multi_head_attention_param": {"num_heads": 1}}, [(2, 5, 6), (2, 5, 4)],
     "query, key and value do not fit"),
    ("MatMul", {}, [(2, 3, 4), (2, 5, 6)], "inner sizes of the product differ"),
    ("MatMul", {}, [(2, 3, 4), (3, 4, 5)], "do not broadcast"),
    ("Upsample", {"upsample_param": {"scale": 2, "height": 4}}, [(1, 1, 2, 2)], "give either 'scale' or both"),
    ("Upsample", {"upsample_param": {"scale": 2, "align_corners": True}}, [(1, 1, 2, 2)], "applies to BILINEAR only"),
    ("Upsample", {"upsample_param": {"scale": 1e308}}, [(1, 1, 2, 2)], "not a finite number"),
    ("Upsample", {"upsample_param": {"scale": float("inf")}}, [(1, 1, 2, 2)], "not a finite number"),
    ("Interp", {"interp_param": {"pad_beg": 1, "zoom_factor": 2}}, [(1, 1, 2, 2)], "pad_beg"),
    ("Interp", {"interp_param": {}}, [(1, 1, 2, 2)], "give either 'zoom_factor' and/or 'shrink_factor'"),
    ("Interp", {"interp_param": {"shrink_factor": 4, "pad_beg": -2, "pad_end": -2}}, [(1, 1, 4, 4)], "empty output"),
    ("Permute", {"permute_param": {"order": [0, 2, 2]}}, [(1, 2, 3)], "names an axis twice"),
    ("Permute", {"permute_param": {"order": [0, 3]}}, [(1, 2, 3)], "an axis the bottom does not have"),
    ("ShuffleChannel", {"shuffle_channel_param": {"group": 4}}, [(1, 6, 2, 2)], "cannot be split into 'group'"),
    ("AdaptiveAvgPool", {"adaptive_avg_pool_param": {"output_size": [1, 2, 3]}}, [(1, 1, 4, 4)], "too many values"),
    ("BatchNorm", {"batch_norm_param": {"scale_bias": True}, "param": [{"lr_mult": 1}]}, [(2, 3)], "cannot be learnt"),
    ("Parameter", {"parameter_param": {"shape": {"dim": []}}}, [], "needs a shape"),
    ("Tile", {"tile_param": {"axis": 3, "tiles": 2}}, [(2, 3)], "'axis' is out of range"),
]


def test_bad_fields_and_shapes_are_positioned_errors(tmp_path):
    """One real `netdef check` process over every bad file: exit 2, each problem at FILE:LINE:COL with its
    message, no traceback."""
    paths = [write(tmp_path, layer_type, params, shapes, f"bad{i}") for i, (layer_type, params, shapes, _) in enumerate(BAD)]
    result = subprocess.run([sys.executable, "-m", "netdef", "check", *map(str, paths)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for path, (layer_type, _, _, message) in zip(paths, BAD):
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"{path}:")]
        assert any(message in line for line in lines), f"{layer_type}: {message!r} not in {lines}"
