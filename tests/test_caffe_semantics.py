"""Caffe semantics of existing layers, each against a plain loop written from Caffe's source: STOCHASTIC
pooling (pooling_layer.cu's StoPoolForwardTrain/Test), MAX pooling's mask top (pooling_layer.cpp),
Accuracy's per-class top (accuracy_layer.cpp), DummyData's legacy num/channels/height/width
(dummy_data_layer.cpp), ImageData with force_color/force_gray (data_transformer.cpp), and the net-level
force_backward field."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import yaml

import netdef
from test_layers import caffe_pool_size


def write_net(tmp_path, layers, name="net"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "layers": layers}, sort_keys=False))
    return path


def input_layer(shapes, tops):
    return {"name": "input", "type": "Input", "top": tops, "input_param": {"shape": [{"dim": list(s)} for s in shapes]}}


def pooling_net(tmp_path, shape, pooling_param, tops=("p",), phase="TRAIN"):
    layers = [input_layer([shape], ["x"]),
              {"name": "pool", "type": "Pooling", "bottom": "x", "top": list(tops), "pooling_param": pooling_param}]
    return netdef.load_net(write_net(tmp_path, layers), phase=phase).double()


def caffe_windows(h, w, kernel, stride, pad=0):
    """(ph, pw, hstart, hend, wstart, wend) of every output, clipped to the image as Caffe clips them."""
    oh, ow = caffe_pool_size(h, kernel, stride, pad), caffe_pool_size(w, kernel, stride, pad)
    for ph, pw in itertools.product(range(oh), range(ow)):
        hstart, wstart = ph * stride - pad, pw * stride - pad
        yield ph, pw, max(hstart, 0), min(hstart + kernel, h), max(wstart, 0), min(wstart + kernel, w)


def caffe_stochastic_train(plane, kernel, stride, uniforms):
    """StoPoolForwardTrain on one channel plane: (output, chosen flat index) per window."""
    h, w = plane.shape
    out, chosen = np.zeros(uniforms.shape), np.zeros(uniforms.shape, dtype=int)
    for ph, pw, h0, h1, w0, w1 in caffe_windows(h, w, kernel, stride):
        threshold = uniforms[ph, pw] * plane[h0:h1, w0:w1].sum()
        cumsum = 0.0
        for y, x in itertools.product(range(h0, h1), range(w0, w1)):
            cumsum += plane[y, x]
            if cumsum >= threshold:
                out[ph, pw], chosen[ph, pw] = plane[y, x], y * w + x
                break
    return out, chosen


def caffe_stochastic_test(plane, kernel, stride, out_shape):
    """StoPoolForwardTest: sum(x^2) / sum(x) per window, 0 unless the sum is positive."""
    h, w = plane.shape
    out = np.zeros(out_shape)
    for ph, pw, h0, h1, w0, w1 in caffe_windows(h, w, kernel, stride):
        window = plane[h0:h1, w0:w1]
        out[ph, pw] = (window ** 2).sum() / window.sum() if window.sum() > 0 else 0.0
    return out


# Overlapping and ceil-overhanging windows; the ReLU'd input holds zero cells and a whole zero window.
STOCHASTIC_GRID = [((7, 8), 3, 2), ((6, 6), 2, 2), ((5, 7), 3, 3), ((4, 5), 2, 1)]


def relu_input(shape, seed):
    x = np.maximum(np.random.default_rng(seed).normal(size=shape), 0)
    x[0, 0, :2, :2] = 0
    return x


@pytest.mark.parametrize("size, kernel, stride", STOCHASTIC_GRID)
def test_stochastic_pooling_train_samples_as_caffes_kernel(tmp_path, size, kernel, stride):
    """The uniform draws are Caffe's rand_idx: one per output, in the top's order, from torch's generator."""
    shape = (2, 3, *size)
    net = pooling_net(tmp_path, shape, {"pool": "STOCHASTIC", "kernel_size": kernel, "stride": stride})
    x = torch.tensor(relu_input(shape, 0), requires_grad=True)
    torch.manual_seed(5)
    out = net(x=x)["p"]
    torch.manual_seed(5)
    uniforms = torch.rand(*out.shape[:2], 1, out.shape[2] * out.shape[3], dtype=torch.float64)
    uniforms = uniforms.reshape(out.shape).numpy()
    out.backward(torch.ones_like(out))
    for n, c in itertools.product(range(shape[0]), range(shape[1])):
        expected, chosen = caffe_stochastic_train(x.detach().numpy()[n, c], kernel, stride, uniforms[n, c])
        np.testing.assert_array_equal(out.detach().numpy()[n, c], expected)
        # Caffe's StoPoolBackward: each output's gradient goes to the cell it chose.
        grad = np.bincount(chosen.ravel(), minlength=size[0] * size[1]).reshape(size)
        np.testing.assert_array_equal(x.grad.numpy()[n, c], grad)


def test_stochastic_pooling_picks_cells_in_proportion_to_their_activation(tmp_path):
    net = pooling_net(tmp_path, (1, 1, 2, 2), {"pool": "STOCHASTIC", "kernel_size": 2, "stride": 2})
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64).expand(20000, 1, 2, 2)
    net_many = pooling_net(tmp_path, (20000, 1, 2, 2), {"pool": "STOCHASTIC", "kernel_size": 2, "stride": 2})
    torch.manual_seed(0)
    picked = net_many(x=x.contiguous())["p"].flatten()
    frequencies = [(picked == v).double().mean().item() for v in (1, 2, 3, 4)]
    np.testing.assert_allclose(frequencies, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    assert net(x=x[:1].contiguous())["p"].item() in (1, 2, 3, 4)


@pytest.mark.parametrize("size, kernel, stride", STOCHASTIC_GRID)
def test_stochastic_pooling_test_phase_is_caffes_weighted_average(tmp_path, size, kernel, stride):
    shape = (2, 2, *size)
    net = pooling_net(tmp_path, shape, {"pool": "STOCHASTIC", "kernel_size": kernel, "stride": stride}, phase="TEST")
    x = relu_input(shape, 1)
    out = net(x=torch.tensor(x))["p"].numpy()
    for n, c in itertools.product(range(shape[0]), range(shape[1])):
        np.testing.assert_allclose(out[n, c], caffe_stochastic_test(x[n, c], kernel, stride, out.shape[2:]),
                                   rtol=1e-12, atol=1e-15)


def caffe_max_with_mask(plane, kernel, stride, pad):
    """PoolingLayer::Forward_cpu MAX with top_mask: strict > from -FLT_MAX, so the first maximum wins."""
    h, w = plane.shape
    oh, ow = caffe_pool_size(h, kernel, stride, pad), caffe_pool_size(w, kernel, stride, pad)
    out, mask = np.full((oh, ow), -np.finfo(np.float32).max), np.full((oh, ow), -1.0)
    for ph, pw, h0, h1, w0, w1 in caffe_windows(h, w, kernel, stride, pad):
        for y, x in itertools.product(range(h0, h1), range(w0, w1)):
            if plane[y, x] > out[ph, pw]:
                out[ph, pw], mask[ph, pw] = plane[y, x], y * w + x
    return out, mask


@pytest.mark.parametrize("size, kernel, stride, pad", [((7, 8), 3, 2, 1), ((6, 5), 2, 2, 0), ((5, 5), 3, 1, 2),
                                                       ((7, 7), 3, 3, 0)])
def test_max_pooling_mask_top_is_caffes_argmax(tmp_path, size, kernel, stride, pad):
    """Integer-valued input makes ties: the mask names the first maximum in row-major order, as Caffe's."""
    shape = (2, 2, *size)
    net = pooling_net(tmp_path, shape, {"pool": "MAX", "kernel_size": kernel, "stride": stride, "pad": pad},
                      tops=("p", "mask"))
    x = np.random.default_rng(2).integers(-3, 4, size=shape).astype(float)
    got = net(x=torch.tensor(x))
    for n, c in itertools.product(range(shape[0]), range(shape[1])):
        out, mask = caffe_max_with_mask(x[n, c], kernel, stride, pad)
        np.testing.assert_array_equal(got["p"].numpy()[n, c], out)
        np.testing.assert_array_equal(got["mask"].numpy()[n, c], mask)


def caffe_accuracy(scores, labels, top_k, ignore_label):
    """AccuracyLayer::Forward_cpu for N x C scores: (accuracy, per-class accuracy)."""
    classes = scores.shape[1]
    hits, samples, right = 0, np.zeros(classes), np.zeros(classes)
    count = 0
    for row, label in zip(scores, labels.astype(int)):
        if label == ignore_label:
            continue
        samples[label] += 1
        if (row >= row[label]).sum() - 1 < top_k:
            hits += 1
            right[label] += 1
        count += 1
    per_class = np.where(samples == 0, 0, right / np.maximum(samples, 1))
    return (hits / count if count else 0), per_class


@pytest.mark.parametrize("top_k, ignore_label", [(1, None), (2, 3)])
def test_accuracy_per_class_top_is_caffes(tmp_path, top_k, ignore_label):
    n, classes = 40, 5
    accuracy_param = {"top_k": top_k, **({"ignore_label": ignore_label} if ignore_label is not None else {})}
    layers = [input_layer([(n, classes), (n,)], ["scores", "label"]),
              {"name": "accuracy", "type": "Accuracy", "bottom": ["scores", "label"], "top": ["accuracy", "per_class"],
               "accuracy_param": accuracy_param}]
    net = netdef.load_net(write_net(tmp_path, layers), phase="TEST")
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(n, classes)).astype(np.float32)
    labels = rng.integers(0, classes - 1, size=n).astype(np.float32)  # the last class has no sample: 0
    got = net(scores=torch.tensor(scores), label=torch.tensor(labels))
    accuracy, per_class = caffe_accuracy(scores, labels, top_k, ignore_label)
    assert got["per_class"].shape == (classes,) and per_class[-1] == 0
    np.testing.assert_allclose(got["accuracy"].item(), accuracy, rtol=1e-6)
    np.testing.assert_allclose(got["per_class"].numpy(), per_class, rtol=1e-6)


@pytest.mark.parametrize("pooling_param, tops, message", [
    ({"pool": "STOCHASTIC", "kernel_size": 2, "pad": 1}, ["p"], "padding is implemented only for MAX and AVE"),
    ({"pool": "AVE", "kernel_size": 2}, ["p", "mask"], "only MAX pooling gives a second (mask) top"),
])
def test_pooling_refuses_what_caffe_refuses(tmp_path, netdef_cli, pooling_param, tops, message):
    path = write_net(tmp_path, [input_layer([(1, 1, 4, 4)], ["x"]),
                                {"name": "pool", "type": "Pooling", "bottom": "x", "top": tops,
                                 "pooling_param": pooling_param}])
    status, _, err = netdef_cli("check", path)
    assert status == 2 and message in err and f"{path}:" in err


def dummy_net(tmp_path, dummy_data_param, tops):
    return write_net(tmp_path, [{"name": "dummy", "type": "DummyData", "top": tops,
                                 "dummy_data_param": dummy_data_param}])


def test_dummy_data_legacy_dimensions_give_num_channels_height_width(tmp_path):
    """dummy_data_layer.cpp: each legacy field once for all tops or once per top; top i is 4-D."""
    param = {"num": 5, "channels": [3, 1], "height": [4, 1], "width": 6,
             "data_filler": [{"type": "constant", "value": 2}, {"type": "gaussian"}]}
    info = netdef.summarize(dummy_net(tmp_path, param, ["data", "label"]))
    assert info.blob_shapes["data"] == (5, 3, 4, 6) and info.blob_shapes["label"] == (5, 1, 1, 6)
    batch = info.graph.layer("dummy").impl.batch()
    assert batch[0].shape == (5, 3, 4, 6) and torch.all(batch[0] == 2) and batch[1].shape == (5, 1, 1, 6)


@pytest.mark.parametrize("param, message", [
    ({"num": 2, "channels": 1, "height": 2, "width": 2, "shape": {"dim": [2, 1]}}, "'shape' or the legacy"),
    ({"num": [2, 3, 4], "channels": 1, "height": 2, "width": 2}, "give 'num' once for all tops or once per top"),
    ({"num": 2, "channels": 1, "height": 2}, "give 'width' once for all tops or once per top"),
])
def test_dummy_data_legacy_dimensions_are_checked_as_caffe_does(tmp_path, netdef_cli, param, message):
    status, _, err = netdef_cli("check", dummy_net(tmp_path, param, ["a", "b"]))
    assert status == 2 and message in err


def test_force_backward_is_accepted_and_gradients_reach_the_inputs(tmp_path, netdef_cli):
    """Caffe's force_backward makes every layer compute its backward (to get the data's gradient); netdef
    accepts the field, and autograd gives the gradient of any input that requires it, with or without."""
    layers = [input_layer([(2, 3), (2,)], ["x", "label"]),
              {"name": "ip", "type": "InnerProduct", "bottom": "x", "top": "y",
               "inner_product_param": {"num_output": 4, "weight_filler": {"type": "gaussian"}}},
              {"name": "loss", "type": "SoftmaxWithLoss", "bottom": ["y", "label"], "top": "loss"}]
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"name": "net", "force_backward": True, "layers": layers}, sort_keys=False))
    assert netdef_cli("check", path)[0] == 0
    net = netdef.load_net(path)
    x = torch.randn(2, 3, requires_grad=True)
    net(x=x, label=torch.tensor([0.0, 3.0]))["loss"].backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    path.write_text(path.read_text().replace("force_backward: true", "force_backward: yes please"))
    status, _, err = netdef_cli("check", path)
    assert status == 2 and "force_backward" in err and f"{path}:" in err


@pytest.mark.parametrize("is_color", [True, False])
def test_image_data_decodes_as_is_color_says_whatever_force_color_or_force_gray(tmp_path, is_color):
    """Caffe's DataTransformer reads force_color/force_gray only when decoding an encoded Datum; ImageData
    decodes each file with OpenCV as is_color says, so the two change nothing there."""
    from PIL import Image
    for i in range(2):
        pixels = np.random.default_rng(i).integers(0, 256, (5, 6, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    (tmp_path / "list.txt").write_text("0.png 0\n1.png 1\n")
    batches = []
    for transform_param in ({}, {"force_gray": True}, {"force_color": True}):
        layers = [{"name": "data", "type": "ImageData", "top": ["data", "label"], "transform_param": transform_param,
                   "image_data_param": {"source": "list.txt", "batch_size": 2, "is_color": is_color}}]
        info = netdef.summarize(write_net(tmp_path, layers))
        batches.append(info.graph.layer("data").impl.reader("TEST", 0, "cpu").next()[0])
    assert batches[0].shape == (2, 3 if is_color else 1, 5, 6)
    for batch in batches[1:]:
        torch.testing.assert_close(batch, batches[0], rtol=0, atol=0)
