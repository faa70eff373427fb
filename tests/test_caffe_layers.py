"""The rest of Caffe 1.0's catalogue (netdef/layers/caffe_*.py) against oracles written from Caffe's sources:
each one-layer net is compiled by netdef from a real file and run in float64; its forward is compared with a
plain loop or formula of the .cpp file, its backward with the Backward_cpu formula written out (or with
torch.autograd.gradcheck where that formula is the derivative and nothing simpler says more). Bad fields and
shapes are positioned errors of `netdef check`; the data layers read real files or arrays set from Python."""
from __future__ import annotations

import itertools
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import netdef
from netdef.api import set_input_arrays
from netdef.data.mean import read_binaryproto, write_binaryproto
from netdef.data.readers import DataFeed

LAYER = "layer"


def write_net(tmp_path, layer_type, params, shapes, tops=1, name="one"):
    """An Input of the given shapes feeding one layer whose tops are out0, out1, ..."""
    bottoms = [f"in{j}" for j in range(len(shapes))]
    layers = [{"name": "input", "type": "Input", "top": bottoms,
               "input_param": {"shape": [{"dim": list(s)} for s in shapes]}}] if shapes else []
    layers.append({"name": LAYER, "type": layer_type, **({"bottom": bottoms} if bottoms else {}),
                   "top": [f"out{j}" for j in range(tops)], **params})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "layers": layers}, sort_keys=False))
    return path


class OneLayer:
    """The compiled one-layer net in float64: `forward(*bottoms)` gives its tops, `grads(*bottoms, weights=)`
    the bottoms' gradients of sum(top * weights) (weights random unless given)."""

    def __init__(self, tmp_path, layer_type, params, shapes, tops=1, phase="TRAIN"):
        torch.manual_seed(0)
        self.path = write_net(tmp_path, layer_type, params, shapes, tops)
        self.net = netdef.load_net(self.path, phase=phase).double()
        self.bottoms, self.tops = [f"in{j}" for j in range(len(shapes))], [f"out{j}" for j in range(tops)]

    def forward(self, *xs):
        outputs = self.net(**{self.net.input_names[b]: x for b, x in zip(self.bottoms, xs)})
        values = [outputs[top] for top in self.tops]
        return values[0] if len(values) == 1 else values

    def grads(self, *xs, weights=None):
        xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in xs]
        top = self.forward(*xs)
        weights = torch.rand_like(top, dtype=torch.float64) if weights is None else weights
        (top * weights).sum().backward()
        return weights, [x.grad for x in xs]

    def gradcheck(self, *xs, wrt=(0,)):
        fixed = list(xs)

        def function(*free):
            for j, x in zip(wrt, free):
                fixed[j] = x
            return self.forward(*fixed)

        assert torch.autograd.gradcheck(function, tuple(xs[j].detach().clone().requires_grad_(True) for j in wrt))


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def labels(count, classes, seed=1):
    return torch.randint(classes, (count,), generator=torch.Generator().manual_seed(seed)).double()


def close(got, expected, tol=1e-10):
    torch.testing.assert_close(got, torch.as_tensor(expected, dtype=torch.float64), atol=tol, rtol=tol)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


# ---------------------------------------------------------------- elementwise (caffe_neuron.py)

def test_bnll_is_caffes_stable_softplus_with_a_sigmoid_gradient(tmp_path):
    layer = OneLayer(tmp_path, "BNLL", {}, [(3, 5)])
    x = randn(3, 5) * 30  # large |x|: the stable form matters
    expected = [v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v)) for v in x.flatten().tolist()]
    close(layer.forward(x).flatten(), expected, 1e-8)
    weights, (grad,) = layer.grads(x)
    expval = torch.exp(x.clamp(max=50))  # bnll_layer.cpp: kBNLL_THRESHOLD 50
    close(grad, weights * expval / (expval + 1), 1e-8)


def test_threshold_is_a_step_without_gradient(tmp_path):
    layer = OneLayer(tmp_path, "Threshold", {"threshold_param": {"threshold": 0.25}}, [(2, 3)])
    x = torch.tensor([[0.25, 0.2500001, -1.0], [3.0, 0.0, 0.24]], dtype=torch.float64)
    close(layer.forward(x), [[0, 1, 0], [1, 0, 0]])
    assert not layer.forward(x.requires_grad_(True)).requires_grad  # Caffe's Backward is not implemented


def test_clip_passes_the_gradient_inside_the_bounds_included(tmp_path):
    layer = OneLayer(tmp_path, "Clip", {"clip_param": {"min": -0.5, "max": 1}}, [(1, 6)])
    x = torch.tensor([[-2.0, -0.5, 0.3, 1.0, 1.5, 0.0]], dtype=torch.float64)
    close(layer.forward(x), [[-0.5, -0.5, 0.3, 1.0, 1.0, 0.0]])
    weights, (grad,) = layer.grads(x)
    close(grad, weights * torch.tensor([[0, 1, 1, 1, 0, 1]]))  # clip_layer.cpp: x >= min && x <= max


def test_swish_forward_and_caffes_backward_formula(tmp_path):
    beta = 1.7
    layer = OneLayer(tmp_path, "Swish", {"swish_param": {"beta": beta}}, [(4, 3)])
    x = randn(4, 3)
    y = [v * sigmoid(beta * v) for v in x.flatten().tolist()]
    close(layer.forward(x).flatten(), y)
    weights, (grad,) = layer.grads(x)
    # swish_layer.cpp: top_diff * (beta * y + sigmoid(beta x) * (1 - beta * y))
    expected = [w * (beta * t + sigmoid(beta * v) * (1 - beta * t))
                for w, v, t in zip(weights.flatten().tolist(), x.flatten().tolist(), y)]
    close(grad.flatten(), expected)


# ---------------------------------------------------------------- whole blobs (caffe_structure.py)

def test_crop_copies_the_window_at_the_offsets_and_routes_the_gradient_back(tmp_path):
    layer = OneLayer(tmp_path, "Crop", {"crop_param": {"axis": 2, "offset": [1, 3]}}, [(2, 3, 6, 8), (2, 1, 4, 4)])
    x, reference = randn(2, 3, 6, 8), randn(2, 1, 4, 4)
    top = layer.forward(x, reference)
    assert top.shape == (2, 3, 4, 4)
    for n, c, h, w in itertools.product(range(2), range(3), range(4), range(4)):
        assert top[n, c, h, w] == x[n, c, h + 1, w + 3]
    weights, (grad, grad_reference) = layer.grads(x, reference)
    expected = torch.zeros_like(x)
    for n, c, h, w in itertools.product(range(2), range(3), range(4), range(4)):
        expected[n, c, h + 1, w + 3] = weights[n, c, h, w]
    close(grad, expected)
    assert grad_reference is None  # crop_layer.cpp: no gradient to the reference bottom


def test_crop_with_one_offset_for_all_axes_from_axis_1(tmp_path):
    layer = OneLayer(tmp_path, "Crop", {"crop_param": {"axis": 1, "offset": 2}}, [(2, 5, 6), (1, 2, 3)])
    x = randn(2, 5, 6)
    close(layer.forward(x, randn(1, 2, 3)), x[:, 2:4, 2:5])


def reduction_oracle(x, operation, axis, coeff):
    rows = x.reshape(int(np.prod(x.shape[:axis], dtype=int)), -1)
    out = []
    for row in rows.tolist():
        value = {"SUM": sum(row), "ASUM": sum(abs(v) for v in row), "SUMSQ": sum(v * v for v in row),
                 "MEAN": sum(row) / len(row)}[operation]
        out.append(coeff * value)
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape[:axis])


@pytest.mark.parametrize("operation,axis", [("SUM", 0), ("ASUM", 1), ("SUMSQ", 2), ("MEAN", -1)])
def test_reduction_forward_and_caffes_backward(tmp_path, operation, axis):
    coeff = -1.5
    layer = OneLayer(tmp_path, "Reduction", {"reduction_param": {"operation": operation, "axis": axis, "coeff": coeff}},
                     [(2, 3, 4)])
    x = randn(2, 3, 4)
    canonical = axis % 3
    close(layer.forward(x), reduction_oracle(x, operation, canonical, coeff))
    weights, (grad,) = layer.grads(x)
    per_row = weights.reshape(x.shape[:canonical] + (1,) * (3 - canonical))  # reduction_layer.cpp Backward_cpu
    dim = int(np.prod(x.shape[canonical:]))
    local = {"SUM": torch.ones_like(x), "ASUM": torch.sign(x), "SUMSQ": 2 * x, "MEAN": torch.ones_like(x) / dim}
    close(grad, per_row * coeff * local[operation])


@pytest.mark.parametrize("across,variance", [(False, True), (True, True), (False, False)])
def test_mvn_normalises_each_channel_or_sample(tmp_path, across, variance):
    layer = OneLayer(tmp_path, "MVN", {"mvn_param": {"across_channels": across, "normalize_variance": variance,
                                                     "eps": 1e-3}}, [(2, 3, 2, 3)])
    x = randn(2, 3, 2, 3) * 3 + 1
    expected = torch.empty_like(x)
    groups = [(n, slice(None)) for n in range(2)] if across else [(n, c) for n in range(2) for c in range(3)]
    for n, c in groups:
        values = x[n, c]
        mean = values.mean()
        std = math.sqrt(((values - mean) ** 2).mean())  # the biased variance, as Caffe's E[x^2] - E[x]^2
        expected[n, c] = (values - mean) / (std + 1e-3) if variance else values - mean
    close(layer.forward(x), expected)
    layer.gradcheck(x)


def test_silence_swallows_its_bottoms_and_is_no_longer_taken_for_slice(tmp_path, netdef_cli):
    net = {"name": "silenced", "layers": [
        {"name": "input", "type": "Input", "top": ["data", "label"], "input_param": {"shape": [{"dim": [2, 3]}, {"dim": [2]}]}},
        {"name": "ip", "type": "InnerProduct", "bottom": "data", "top": "ip", "inner_product_param": {"num_output": 2}},
        {"name": "quiet", "type": "Silence", "bottom": ["label", "ip"]}]}
    path = tmp_path / "silenced.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    status, out, err = netdef_cli("check", path)
    assert status == 0, err
    compiled = netdef.load_net(path)
    assert compiled.outputs == []  # silenced blobs are no net outputs
    net["layers"][2]["type"] = "Silense"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    status, out, err = netdef_cli("check", path)
    assert status == 2 and "did you mean 'Silence'?" in err


def test_filter_keeps_the_selected_items_and_their_gradients(tmp_path):
    layer = OneLayer(tmp_path, "Filter", {}, [(5, 2), (5, 1, 3), (5, 1)], tops=2)
    a, b = randn(5, 2), randn(5, 1, 3, seed=1)
    selector = torch.tensor([[1.0], [0.0], [2.0], [0.0], [1.0]], dtype=torch.float64)
    kept_a, kept_b = layer.forward(a, b, selector)
    close(kept_a, a[[0, 2, 4]])
    close(kept_b, b[[0, 2, 4]])
    a_ = a.clone().requires_grad_(True)
    out_a, _ = layer.forward(a_, b, selector)
    weights = randn(3, 2, seed=2)
    (out_a * weights).sum().backward()
    expected = torch.zeros_like(a)
    for j, item in enumerate((0, 2, 4)):  # filter_layer.cpp: each kept item's gradient back in its place, 0 elsewhere
        expected[item] = weights[j]
    close(a_.grad, expected)


def test_batch_reindex_gathers_and_adds_the_gradients_of_repeated_items(tmp_path):
    layer = OneLayer(tmp_path, "BatchReindex", {}, [(3, 2, 2), (5,)])
    x = randn(3, 2, 2)
    index = torch.tensor([2, 0, 2, 1, 2], dtype=torch.float64)
    top = layer.forward(x, index)
    for i, j in enumerate((2, 0, 2, 1, 2)):
        close(top[i], x[j])
    weights, (grad, _) = layer.grads(x, index)
    expected = torch.zeros_like(x)
    for i, j in enumerate((2, 0, 2, 1, 2)):
        expected[j] += weights[i]
    close(grad, expected)


# ---------------------------------------------------------------- spatial (caffe_spatial.py)

def caffe_pool_loop(x, kernel, pad, pool):
    """Caffe's PoolingLayer::Forward_cpu with stride = kernel (as SPP sets it), square per axis (kh, kw)."""
    (kh, kw), (ph, pw) = kernel, pad
    n_, c_, height, width = x.shape
    oh = math.ceil((height + 2 * ph - kh) / kh) + 1
    ow = math.ceil((width + 2 * pw - kw) / kw) + 1
    oh -= 1 if ph and (oh - 1) * kh >= height + ph else 0
    ow -= 1 if pw and (ow - 1) * kw >= width + pw else 0
    out = torch.zeros(n_, c_, oh, ow, dtype=x.dtype)
    for n, c, i, j in itertools.product(range(n_), range(c_), range(oh), range(ow)):
        hstart, wstart = i * kh - ph, j * kw - pw
        hend, wend = min(hstart + kh, height + ph), min(wstart + kw, width + pw)
        size = (hend - hstart) * (wend - wstart)  # AVE's divisor counts padding, not the overhang
        window = x[n, c, max(hstart, 0):min(hend, height), max(wstart, 0):min(wend, width)]
        out[n, c, i, j] = window.max() if pool == "MAX" else window.sum() / size
    return out


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_is_caffes_pooling_per_level_flattened_and_joined(tmp_path, pool):
    height, width = 7, 9
    layer = OneLayer(tmp_path, "SPP", {"spp_param": {"pyramid_height": 3, "pool": pool}}, [(2, 2, height, width)])
    x = randn(2, 2, height, width)
    levels = []
    for level in range(3):  # spp_layer.cpp: GetPoolingParam
        bins = 2 ** level
        kernel = (math.ceil(height / bins), math.ceil(width / bins))
        pad = ((kernel[0] * bins - height + 1) // 2, (kernel[1] * bins - width + 1) // 2)
        levels.append(caffe_pool_loop(x, kernel, pad, pool).flatten(1))
    expected = torch.cat(levels, 1)
    assert expected.shape == (2, 2 * (1 + 4 + 16))
    close(layer.forward(x), expected)
    layer.gradcheck(x[:1])


def test_spp_stochastic_tests_with_the_activation_weighted_average_of_each_bin(tmp_path):
    layer = OneLayer(tmp_path, "SPP", {"spp_param": {"pyramid_height": 2, "pool": "STOCHASTIC"}}, [(1, 2, 4, 6)],
                     phase="TEST")
    x = torch.rand(1, 2, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = []
    for bins in (1, 2):  # pooling_layer.cu StoPoolForwardTest: sum(x^2) / sum(x) over each unpadded window
        kh, kw = 4 // bins, 6 // bins
        expected += [(x[0, c, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw] ** 2).sum() /
                     x[0, c, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw].sum()
                     for c in range(2) for i in range(bins) for j in range(bins)]
    got = layer.forward(x)
    close(got[0, :2], expected[:2])  # level 0: one bin per channel
    close(got[0, 2:], expected[2:])  # level 1: channel-major, then bins row by row


def test_spp_refuses_an_input_smaller_than_its_finest_bins(tmp_path, netdef_cli):
    path = write_net(tmp_path, "SPP", {"spp_param": {"pyramid_height": 3}}, [(1, 1, 3, 8)])
    status, _, err = netdef_cli("check", path)
    assert status == 2 and "too small for 4 x 4 pyramid bins" in err and f"{path}:" in err


def im2col_loop(x, kernel, stride, pad, dilation):
    """Caffe's im2col_cpu: row (c kh + i) kw + j of the column buffer is input channel c read at kernel cell
    (i, j) for every output position; cells outside the image are 0."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation
    n_, c_, height, width = x.shape
    oh = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    out = torch.zeros(n_, c_ * kh * kw, oh, ow, dtype=x.dtype)
    for n, c, i, j, y, z in itertools.product(range(n_), range(c_), range(kh), range(kw), range(oh), range(ow)):
        row, col = y * sh - ph + i * dh, z * sw - pw + j * dw
        if 0 <= row < height and 0 <= col < width:
            out[n, (c * kh + i) * kw + j, y, z] = x[n, c, row, col]
    return out


@pytest.mark.parametrize("params,geometry", [
    ({"kernel_size": 3, "stride": 2, "pad": 1}, ((3, 3), (2, 2), (1, 1), (1, 1))),
    ({"kernel_h": 2, "kernel_w": 3, "stride_w": 2, "dilation": 2, "pad_h": 1}, ((2, 3), (1, 2), (1, 0), (2, 2))),
])
def test_im2col_is_caffes_column_buffer(tmp_path, params, geometry):
    layer = OneLayer(tmp_path, "Im2col", {"convolution_param": params}, [(2, 2, 6, 7)])
    x = randn(2, 2, 6, 7)
    close(layer.forward(x), im2col_loop(x, *geometry))
    layer.gradcheck(x[:1])  # col2im: each cell's gradient sums over the patches it appears in


# ---------------------------------------------------------------- losses (caffe_losses.py)

def test_hinge_loss_l1_and_l2_against_caffes_loops(tmp_path):
    scores, target = randn(4, 3), labels(4, 3)
    for norm in ("L1", "L2"):
        layer = OneLayer(tmp_path, "HingeLoss", {"hinge_loss_param": {"norm": norm}}, [(4, 3), (4,)])
        diff = scores.clone()
        for n in range(4):  # hinge_loss_layer.cpp: negate the true class, then max(0, 1 + diff)
            diff[n, int(target[n])] *= -1
        margins = (1 + diff).clamp(min=0)
        close(layer.forward(scores, target), (margins.sum() if norm == "L1" else (margins ** 2).sum()) / 4)
        _, (grad, _) = layer.grads(scores, target, weights=torch.tensor(1.0, dtype=torch.float64))
        expected = torch.sign(margins) if norm == "L1" else 2 * margins
        for n in range(4):
            expected[n, int(target[n])] *= -1
        close(grad, expected / 4)


def test_multinomial_logistic_loss_clamps_like_caffe_forward_and_backward(tmp_path):
    layer = OneLayer(tmp_path, "MultinomialLogisticLoss", {}, [(3, 4), (3,)])
    probabilities = torch.softmax(randn(3, 4), 1)
    probabilities[2, 1] = 0.0  # clamped to kLOG_THRESHOLD 1e-20
    target = torch.tensor([0.0, 3.0, 1.0], dtype=torch.float64)
    picked = [max(probabilities[n, int(target[n])].item(), 1e-20) for n in range(3)]
    close(layer.forward(probabilities, target), -sum(math.log(p) for p in picked) / 3)
    _, (grad, _) = layer.grads(probabilities, target, weights=torch.tensor(1.0, dtype=torch.float64))
    expected = torch.zeros_like(probabilities)
    for n in range(3):  # multinomial_logistic_loss_layer.cpp: -1 / (N max(p, 1e-20)) at the label, clamped one too
        expected[n, int(target[n])] = -1 / (3 * picked[n])
    close(grad, expected)


def infogain_oracle(scores, target, matrix, ignore=None, normalization="VALID"):
    """infogain_loss_layer.cpp: softmax over axis 1, -sum_l H[label, l] log(max(p_l, 1e-20)) per position."""
    prob = torch.softmax(scores, 1)
    n_, classes = scores.shape[:2]
    positions = list(itertools.product(range(n_), *[range(s) for s in scores.shape[2:]]))
    loss, count = 0.0, 0
    for n, *rest in positions:
        label = int(target[(n, 0, *rest)] if target.dim() > 1 else target[n])
        if label == ignore:
            continue
        loss -= sum(matrix[label, k].item() * math.log(max(prob[(n, k, *rest)].item(), 1e-20)) for k in range(classes))
        count += 1
    divisor = {"VALID": count, "FULL": len(positions), "BATCH_SIZE": n_, "NONE": 1}[normalization]
    return loss / max(1, divisor)


def test_infogain_loss_with_a_matrix_bottom_and_caffes_backward(tmp_path):
    layer = OneLayer(tmp_path, "InfogainLoss", {"loss_param": {"normalization": "BATCH_SIZE"}}, [(4, 3), (4,), (3, 3)])
    scores, target = randn(4, 3), labels(4, 3)
    matrix = torch.tensor([[1.0, 0.2, 0.0], [0.5, 2.0, 0.1], [0.0, 0.3, 1.0]], dtype=torch.float64)
    close(layer.forward(scores, target, matrix), infogain_oracle(scores, target, matrix, normalization="BATCH_SIZE"))
    _, (grad, _, _) = layer.grads(scores, target, matrix, weights=torch.tensor(1.0, dtype=torch.float64))
    prob = torch.softmax(scores, 1)
    rows = matrix[target.long()]
    close(grad, (prob * rows.sum(1, keepdim=True) - rows) / 4)  # Backward_cpu: p * sum_rows_H[label] - H[label]


def test_infogain_loss_reads_its_matrix_from_a_binaryproto_and_ignores_a_label(tmp_path):
    matrix = np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.3, 0.0, 1.5]])
    write_binaryproto(matrix[None], tmp_path / "H.binaryproto")  # as Caffe users store H: a 1 x 1 x K x K blob
    np.testing.assert_array_equal(read_binaryproto(tmp_path / "H.binaryproto"), matrix[None, None].astype(np.float32))
    params = {"infogain_loss_param": {"source": "H.binaryproto"}, "loss_param": {"ignore_label": 2}}
    layer = OneLayer(tmp_path, "InfogainLoss", params, [(2, 3, 2, 2), (2, 1, 2, 2)], tops=2)
    scores = randn(2, 3, 2, 2)
    target = torch.tensor([[[[0, 2], [1, 1]]], [[[2, 0], [1, 0]]]], dtype=torch.float64)
    loss, prob = layer.forward(scores, target)
    close(loss, infogain_oracle(scores, target, torch.tensor(matrix, dtype=torch.float32).double(), ignore=2), 1e-7)
    close(prob, torch.softmax(scores, 1))


def test_infogain_loss_without_a_matrix_is_a_positioned_error(tmp_path, netdef_cli):
    path = write_net(tmp_path, "InfogainLoss", {}, [(4, 3), (4,)])
    status, _, err = netdef_cli("check", path)
    assert status == 2 and "third bottom or from 'source'" in err
    path = write_net(tmp_path, "InfogainLoss", {"infogain_loss_param": {"source": "missing.binaryproto"}}, [(4, 3), (4,)])
    status, _, err = netdef_cli("check", path)
    assert status == 2 and "cannot read the infogain matrix" in err and f"{path}:" in err


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss_forward_and_caffes_backward_loops(tmp_path, legacy):
    margin = 1.5
    layer = OneLayer(tmp_path, "ContrastiveLoss", {"contrastive_loss_param": {"margin": margin, "legacy_version": legacy}},
                     [(5, 3, 1, 1), (5, 3, 1, 1), (5, 1, 1, 1)])
    a, b = randn(5, 3, 1, 1) * 0.6, randn(5, 3, 1, 1, seed=1) * 0.6
    b[3] = a[3] + 2  # a dissimilar pair beyond the margin: no loss, no gradient
    similar = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64).reshape(5, 1, 1, 1)
    loss, grad_a, grad_b = 0.0, torch.zeros_like(a), torch.zeros_like(b)
    for i in range(5):  # contrastive_loss_layer.cpp Forward_cpu and Backward_cpu, top diff 1
        diff = (a[i] - b[i]).flatten()
        dist_sq = float((diff * diff).sum())
        if similar[i]:
            loss += dist_sq
            g = diff / 5
        elif legacy:
            loss += max(margin - dist_sq, 0)
            g = -diff / 5 if margin - dist_sq > 0 else 0 * diff
        else:
            dist = math.sqrt(dist_sq)
            loss += max(margin - dist, 0) ** 2
            g = -(margin - dist) / (dist + 1e-4) * diff / 5 if margin - dist > 0 else 0 * diff
        grad_a[i], grad_b[i] = g.reshape(3, 1, 1), -g.reshape(3, 1, 1)
    close(layer.forward(a, b, similar), loss / 10)
    _, (got_a, got_b, got_similar) = layer.grads(a, b, similar, weights=torch.tensor(1.0, dtype=torch.float64))
    close(got_a, grad_a)
    close(got_b, grad_b)
    assert got_similar is None


# ---------------------------------------------------------------- input and output (caffe_io.py)

def test_hdf5_output_appends_every_pass_to_data_and_label(tmp_path):
    layer = OneLayer(tmp_path, "HDF5Output", {"hdf5_output_param": {"file_name": "written.h5"}}, [(2, 3), (2,)],
                     tops=0)
    batches = [(randn(2, 3, seed=s), labels(2, 5, seed=s)) for s in range(3)]
    for data, label in batches:
        layer.net(**{layer.net.input_names["in0"]: data, layer.net.input_names["in1"]: label})
    with h5py.File(tmp_path / "written.h5", "r") as file:
        np.testing.assert_allclose(file["data"][:], torch.cat([d for d, _ in batches]).float().numpy())
        np.testing.assert_allclose(file["label"][:], torch.cat([lab for _, lab in batches]).float().numpy())


def memory_net(tmp_path, name="fed"):
    net = {"name": "memory", "layers": [
        {"name": name, "type": "MemoryData", "top": ["data", "label"],
         "memory_data_param": {"batch_size": 2, "channels": 1, "height": 2, "width": 3}},
        {"name": "ip", "type": "InnerProduct", "bottom": "data", "top": "ip",
         "inner_product_param": {"num_output": 3, "weight_filler": {"type": "xavier"}}},
        {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["ip", "label"], "top": "loss"}]}
    path = tmp_path / "memory.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    return path


def test_memory_data_serves_the_arrays_set_from_python_in_order(tmp_path):
    data = np.arange(36, dtype=np.float64).reshape(6, 1, 2, 3)
    set_input_arrays("fed", data, np.array([0, 1, 2, 0, 1, 2]))
    net = netdef.read_net(memory_net(tmp_path))
    model = net.compile("TRAIN")
    feed = DataFeed(net.graph("TRAIN"), model.input_names, "TRAIN", 0, "cpu")
    served = [feed.next() for _ in range(4)]  # three batches, then the first again (memory_data_layer.cpp)
    for i, batch in enumerate(served):
        rows = slice(2 * (i % 3), 2 * (i % 3) + 2)
        np.testing.assert_array_equal(batch[model.input_names["data"]].numpy(), data[rows])
        np.testing.assert_array_equal(batch[model.input_names["label"]].numpy(), [0, 1, 2, 0, 1, 2][rows])
    assert torch.isfinite(model(**served[0])["loss"])
    set_input_arrays("fed", data[:5], np.zeros(5))
    with pytest.raises(netdef.NetdefError, match="multiple of 'batch_size'"):
        DataFeed(net.graph("TRAIN"), model.input_names, "TRAIN", 0, "cpu")


def test_a_net_fed_from_python_trains_with_netdefs_solver(tmp_path, netdef_cli, monkeypatch):
    """The arrays set from Python feed `netdef train` run in the same process (the CLI's `main`): two
    separable classes, learnt."""
    monkeypatch.chdir(tmp_path)  # the run folder (runs/solver) goes where the command runs
    rng = np.random.default_rng(0)
    target = np.arange(48) % 2
    data = rng.normal(0, 0.3, (48, 1, 2, 3)) + target.reshape(-1, 1, 1, 1) * 2 - 1
    set_input_arrays("fed", data, target)
    memory_net(tmp_path)
    (tmp_path / "solver.yaml").write_text(yaml.safe_dump({"net": "memory.yaml", "base_lr": 0.1, "lr_policy": "fixed",
                                                          "display": 5, "max_iter": 30, "random_seed": 1,
                                                          "snapshot_prefix": str(tmp_path / "snapshots" / "fed")}))
    status, out, err = netdef_cli("train", tmp_path / "solver.yaml", "--device", "cpu")
    assert status == 0, err
    losses = [float(v) for v in re.findall(r"Iteration \d+.*, loss = ([\d.e+-]+)", out + err)]
    assert len(losses) >= 5 and losses[-1] < 0.3 * losses[0], losses


def test_memory_data_without_arrays_is_a_clear_error(tmp_path):
    net = netdef.read_net(memory_net(tmp_path, name="never_fed"))
    model = net.compile("TRAIN")
    with pytest.raises(netdef.NetdefError, match=r"set_input_arrays\('never_fed'"):
        DataFeed(net.graph("TRAIN"), model.input_names, "TRAIN", 0, "cpu")


def bilinear_loop(region, out_h, out_w):
    """OpenCV's INTER_LINEAR (half-pixel centres, edges clamped) of a C x H x W array, then rounded to uint8."""
    channels, height, width = region.shape
    out = np.zeros((channels, out_h, out_w))
    for i, j in itertools.product(range(out_h), range(out_w)):
        y = max((i + 0.5) * height / out_h - 0.5, 0)
        x = max((j + 0.5) * width / out_w - 0.5, 0)
        y0, x0 = min(int(y), height - 1), min(int(x), width - 1)
        y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
        dy, dx = y - y0, x - x0
        out[:, i, j] = ((1 - dy) * (1 - dx) * region[:, y0, x0] + (1 - dy) * dx * region[:, y0, x1]
                        + dy * (1 - dx) * region[:, y1, x0] + dy * dx * region[:, y1, x1])
    return np.clip(np.round(out), 0, 255)


def window_net(tmp_path, window_params, transform):
    from layer_cases_caffe import write_window_file
    source = write_window_file(tmp_path)
    net = {"name": "windows", "layers": [
        {"name": "windows", "type": "WindowData", "top": ["data", "label"],
         "window_data_param": {"source": source.name, **window_params}, "transform_param": transform}]}
    path = tmp_path / "windows.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    return netdef.read_net(path)


def test_window_data_warps_background_then_foreground_windows(tmp_path):
    from PIL import Image
    net = window_net(tmp_path, {"batch_size": 8, "fg_fraction": 0.5, "scale": 0.5},
                     {"crop_size": 5, "mean_value": [10, 20, 30]})
    assert net.info().row("windows").shapes == [(8, 3, 5, 5), (8,)]
    reader = net.graph().layer("windows").impl.reader("TRAIN", 0, "cpu")
    data, label = reader.next()
    # window_data_layer.cpp: batch_size - int(batch_size * fg_fraction) background windows (label 0) first
    assert label[:4].tolist() == [0] * 4 and all(v in (1, 2) for v in label[4:].tolist())
    image = np.asarray(Image.open(tmp_path / "window0.png").convert("RGB"))[..., ::-1].transpose(2, 0, 1)  # BGR
    foreground = {1: (2, 1, 9, 8), 2: (0, 0, 15, 11)}
    mean = np.array([10, 20, 30]).reshape(3, 1, 1)
    for item in range(4, 8):
        x1, y1, x2, y2 = foreground[int(label[item])]
        expected = (bilinear_loop(image[:, y1:y2 + 1, x1:x2 + 1].astype(float), 5, 5) - mean) * 0.5
        np.testing.assert_allclose(data[item].numpy(), expected, atol=0.5 + 1e-6)  # OpenCV's fixed point: +-1 level
    state = reader.state_dict()
    again = reader.next()
    reader.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(again, reader.next()))  # a resumed run draws the same windows


def test_window_data_subtracts_the_central_crop_of_a_mean_file(tmp_path):
    """As R-CNN's PASCAL fine-tuning net: transform_param's mean_file (an 8 x 8 mean image here), whose
    central crop_size square is subtracted at each warped pixel's place."""
    mean = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    write_binaryproto(mean, tmp_path / "mean.binaryproto")
    net = window_net(tmp_path, {"batch_size": 4, "fg_fraction": 0.5}, {"crop_size": 6, "mean_file": "mean.binaryproto"})
    plain = window_net(tmp_path, {"batch_size": 4, "fg_fraction": 0.5}, {"crop_size": 6})
    data, _ = net.graph().layer("windows").impl.reader("TRAIN", 3, "cpu").next()
    unchanged, _ = plain.graph().layer("windows").impl.reader("TRAIN", 3, "cpu").next()  # the same windows drawn
    np.testing.assert_allclose(data.numpy(), unchanged.numpy() - mean[None, :, 1:7, 1:7])  # mean_off (8 - 6) / 2


def test_window_data_context_pad_leaves_the_border_outside_the_image_zero(tmp_path):
    from netdef.data.windows import warp_window
    image = np.full((3, 10, 10), 200, dtype=np.uint8)
    warped, (top, left) = warp_window(image, (0, 0, 4, 4), crop_size=10, context_pad=2, square=False, mirror=False)
    # window_data_layer.cpp: the box 0..4 grown by 10 / 6 about its centre 2.5 spans round(-1.67) = -2 to
    # round(6.67) = 7, 10 pixels at scale 1: the 2 pixels past the top-left corner stay 0 in the crop
    assert (top, left) == (2, 2) and warped.shape[1:] == (8, 8)
    assert (warped == 200).all()


def test_window_file_errors_name_the_line(tmp_path, netdef_cli):
    (tmp_path / "windows.txt").write_text("# 0\nimg.png\n3\n10\n10\n1\n0 0.9 1 1 4 4\n")
    net = {"name": "w", "layers": [{"name": "w", "type": "WindowData", "top": ["data", "label"],
                                    "window_data_param": {"source": "windows.txt", "batch_size": 2},
                                    "transform_param": {"crop_size": 4}}]}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    status, _, err = netdef_cli("check", path)
    assert status == 2 and f"{tmp_path / 'windows.txt'}:7:1" in err and "needs a class > 0" in err


def test_crop_past_the_bottom_is_a_positioned_error(tmp_path, netdef_cli):
    path = write_net(tmp_path, "Crop", {"crop_param": {"offset": [3, 0]}}, [(1, 1, 5, 5), (1, 1, 3, 3)])
    status, _, err = netdef_cli("check", path)
    assert status == 2 and "runs past the first bottom" in err and "offset + 3 <= 5" in err


# ---------------------------------------------------------------- whole nets through `netdef train`

UNET = Path(__file__).resolve().parent.parent / "examples" / "unet"


def train_log(result) -> tuple:
    """(training losses, test outputs {name: [values]}) of a `netdef train` run."""
    log = result.stdout + result.stderr
    losses = [float(v) for v in re.findall(r"Iteration \d+.*, loss = ([\d.e+-]+)", log)]
    tests: dict = {}
    for name, value in re.findall(r"Test net output #\d+: (\w+) = ([\d.e+-]+)", log):
        tests.setdefault(name, []).append(float(value))
    return losses, tests


def test_the_paper_style_unet_trains_on_generated_masks(tmp_path, netdef_subprocess):
    """examples/unet as shipped: unpadded convolutions, Deconvolution up, Crop of the contracting path and of
    the masks; `netdef train` on make_data.py's masks: the loss falls and the test accuracy per pixel rises
    well above the background's share."""
    for name in ("unet.yaml", "unet_solver.yaml"):
        shutil.copy(UNET / name, tmp_path / name)
    subprocess.run([sys.executable, str(UNET / "make_data.py"), str(tmp_path / "data")], check=True,
                   capture_output=True, timeout=60)
    result = netdef_subprocess("train", tmp_path / "unet_solver.yaml", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    losses, tests = train_log(result)
    assert len(losses) >= 8 and losses[-1] < 0.5 * losses[0], losses
    assert len(tests["accuracy"]) == 2 and tests["accuracy"][1] > max(0.9, tests["accuracy"][0] + 0.1), tests


def write_pairs(folder: Path, count=128, seed=0) -> Path:
    """Pairs of 8 x 8 pictures, each a horizontal or a vertical bar at a random place in noise, as Caffe's
    siamese example stores them: pair_data N x 2 x 8 x 8 (the two pictures as channels) and sim (1: same
    orientation)."""
    rng = np.random.default_rng(seed)

    def picture(vertical):
        image = rng.normal(0, 0.2, (8, 8))
        where = rng.integers(1, 7)
        if vertical:
            image[:, where] += 1
        else:
            image[where, :] += 1
        return image

    kinds = rng.integers(0, 2, (count, 2))
    pairs = np.array([[picture(a), picture(b)] for a, b in kinds], dtype=np.float32)
    with h5py.File(folder / "pairs.h5", "w") as file:
        file["pair_data"] = pairs
        file["sim"] = (kinds[:, 0] == kinds[:, 1]).astype(np.float32)
    (folder / "pairs.txt").write_text("pairs.h5\n")
    return folder / "pairs.txt"


def tower(suffix, bottom):
    """One branch of the siamese net; both branches name their blobs alike, so they share them."""
    def shared(name):
        return [{"name": f"{name}_w"}, {"name": f"{name}_b"}]
    return [
        {"name": f"conv{suffix}", "type": "Convolution", "bottom": bottom, "top": f"conv{suffix}", "param": shared("conv"),
         "convolution_param": {"num_output": 4, "kernel_size": 3, "weight_filler": {"type": "xavier"}}},
        {"name": f"relu{suffix}", "type": "ReLU", "bottom": f"conv{suffix}", "top": f"conv{suffix}"},
        {"name": f"feat{suffix}", "type": "InnerProduct", "bottom": f"conv{suffix}", "top": f"feat{suffix}",
         "param": shared("feat"), "inner_product_param": {"num_output": 2, "weight_filler": {"type": "xavier"}}}]


def test_a_siamese_net_with_contrastive_loss_trains(tmp_path, netdef_subprocess):
    """Caffe's mnist_siamese form: the pair sliced into two pictures, two towers sharing their blobs by name,
    ContrastiveLoss on the two features; `netdef train` builds it, the towers share one set of weights, and
    the loss falls."""
    write_pairs(tmp_path)
    net = {"name": "siamese", "layers": [
        {"name": "pairs", "type": "HDF5Data", "top": ["pair_data", "sim"],
         "hdf5_data_param": {"source": "pairs.txt", "batch_size": 16, "shuffle": True}},
        {"name": "slice_pair", "type": "Slice", "bottom": "pair_data", "top": ["data", "data_p"],
         "slice_param": {"slice_dim": 1, "slice_point": 1}},
        *tower("", "data"), *tower("_p", "data_p"),
        {"name": "loss", "type": "ContrastiveLoss", "bottom": ["feat", "feat_p", "sim"], "top": "loss",
         "contrastive_loss_param": {"margin": 1}}]}
    (tmp_path / "siamese.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
    (tmp_path / "solver.yaml").write_text(yaml.safe_dump({
        "net": "siamese.yaml", "base_lr": 0.05, "lr_policy": "fixed", "momentum": 0.9, "display": 5, "max_iter": 60, "random_seed": 1,
        "snapshot_prefix": "snapshots/siamese"}))
    info = netdef.summarize(tmp_path / "siamese.yaml")
    assert info.row("conv_p").params == 0 and info.row("feat_p").params == 0  # counted once, by the first tower
    result = netdef_subprocess("train", tmp_path / "solver.yaml", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    losses, _ = train_log(result)
    assert len(losses) >= 10 and np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2]), losses


# ---------------------------------------------------------------- N-D (3-D) convolution (vision.py)

def conv3d_loop(x, weight, bias, stride, pad, dilation, group):
    """Caffe's N-D convolution (im2col_nd then a product per group), written as the sum it computes."""
    n_, channels, *sizes = x.shape
    outputs, per_group, *kernel = weight.shape
    out_sizes = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for size, k, s, p, d in zip(sizes, kernel, stride, pad, dilation)]
    out = torch.zeros(n_, outputs, *out_sizes, dtype=x.dtype)
    for n, o, *position in itertools.product(range(n_), range(outputs), *map(range, out_sizes)):
        total = bias[o].item()
        first = o // (outputs // group) * per_group
        for c, *cell in itertools.product(range(per_group), *map(range, kernel)):
            at = [q * s - p + k * d for q, s, p, k, d in zip(position, stride, pad, cell, dilation)]
            if all(0 <= a < size for a, size in zip(at, sizes)):
                total += weight[(o, c, *cell)].item() * x[(n, first + c, *at)].item()
        out[(n, o, *position)] = total
    return out


def test_3d_convolution_is_caffes_nd_sum_per_axis(tmp_path):
    params = {"convolution_param": {"num_output": 4, "kernel_size": [2, 3, 2], "stride": [1, 2, 1], "pad": [1, 0, 1],
                                    "dilation": [2, 1, 1], "group": 2, "weight_filler": {"type": "gaussian"},
                                    "bias_filler": {"type": "gaussian"}}}
    layer = OneLayer(tmp_path, "Convolution", params, [(1, 4, 4, 5, 3)])
    module = layer.net.get_submodule(LAYER)
    assert module.weight.shape == (4, 2, 2, 3, 2)  # Caffe's blob: num_output x C/group x kernel per axis
    x = randn(1, 4, 4, 5, 3)
    close(layer.forward(x), conv3d_loop(x, module.weight, module.bias, (1, 2, 1), (1, 0, 1), (2, 1, 1), 2))
    assert netdef.summarize(layer.path).row(LAYER).shapes == [(1, 4, 4, 2, 4)]
    layer.gradcheck(x)


def test_3d_deconvolution_scatters_each_input_through_the_kernel(tmp_path):
    params = {"convolution_param": {"num_output": 2, "kernel_size": 2, "stride": [2, 1, 2], "pad": [0, 1, 0],
                                    "weight_filler": {"type": "gaussian"}, "bias_filler": {"type": "gaussian"}}}
    layer = OneLayer(tmp_path, "Deconvolution", params, [(1, 3, 2, 3, 2)])
    module = layer.net.get_submodule(LAYER)
    assert module.weight.shape == (3, 2, 2, 2, 2)  # Caffe's layout: C_in x num_output x kernel per axis
    x = randn(1, 3, 2, 3, 2)
    stride, pad = (2, 1, 2), (0, 1, 0)
    sizes = [s * (n - 1) + 2 - 2 * p for n, s, p in zip((2, 3, 2), stride, pad)]
    expected = module.bias.detach().reshape(1, 2, 1, 1, 1).expand(1, 2, *sizes).clone()
    for c, o, *position in itertools.product(range(3), range(2), range(2), range(3), range(2)):
        for cell in itertools.product(range(2), repeat=3):  # deconv_layer.cpp: col2im of W^T x
            at = [q * s - p + k for q, s, p, k in zip(position, stride, pad, cell)]
            if all(0 <= a < size for a, size in zip(at, sizes)):
                expected[(0, o, *at)] += module.weight[(c, o, *cell)].item() * x[(0, c, *position)].item()
    close(layer.forward(x), expected)
    layer.gradcheck(x)


@pytest.mark.parametrize("params,message", [
    ({"kernel_size": [3, 3]}, "'kernel_size' needs one value, or one per spatial axis"),
    ({"kernel_size": 3, "pad_h": 1}, "'pad_h' is for 2-D convolutions"),
])
def test_3d_convolution_fields_that_do_not_fit_are_positioned_errors(tmp_path, netdef_cli, params, message):
    path = write_net(tmp_path, "Convolution", {"convolution_param": {"num_output": 2, **params}}, [(1, 1, 4, 4, 4)])
    status, _, err = netdef_cli("check", path)
    assert status == 2 and message in err and f"{path}:" in err


def test_an_rcnn_style_net_fine_tunes_on_window_data(tmp_path, netdef_subprocess):
    """R-CNN's fine-tuning form: WindowData (warped windows, background and foreground) into a small
    classifier, trained by `netdef train` with a snapshot; resuming from it runs the remaining iterations."""
    from layer_cases_caffe import write_window_file
    write_window_file(tmp_path)
    net = {"name": "rcnn", "layers": [
        {"name": "data", "type": "WindowData", "top": ["data", "label"],
         "window_data_param": {"source": "windows.txt", "batch_size": 8, "context_pad": 1, "scale": 0.0039},
         "transform_param": {"crop_size": 8, "mirror": True, "mean_value": [128]}},
        {"name": "conv", "type": "Convolution", "bottom": "data", "top": "conv",
         "convolution_param": {"num_output": 4, "kernel_size": 3, "weight_filler": {"type": "xavier"}}},
        {"name": "cls", "type": "InnerProduct", "bottom": "conv", "top": "cls",
         "inner_product_param": {"num_output": 3, "weight_filler": {"type": "xavier"}}},
        {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["cls", "label"], "top": "loss"}]}
    (tmp_path / "rcnn.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
    (tmp_path / "solver.yaml").write_text(yaml.safe_dump({
        "net": "rcnn.yaml", "base_lr": 0.01, "lr_policy": "fixed", "display": 2, "max_iter": 6, "random_seed": 1,
        "snapshot": 3, "snapshot_prefix": "snapshots/rcnn"}))
    result = netdef_subprocess("train", tmp_path / "solver.yaml", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    losses, _ = train_log(result)
    assert len(losses) >= 3 and all(math.isfinite(v) for v in losses)
    snapshot = next((tmp_path / "snapshots").glob("rcnn_iter_3*"))
    resumed = netdef_subprocess("train", tmp_path / "solver.yaml", "--snapshot", snapshot, "--device", "cpu",
                                "--overwrite", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    # the resumed run draws the windows the first run drew after iteration 3: the same losses
    assert train_log(resumed)[0][-1] == pytest.approx(losses[-1], rel=1e-5)
