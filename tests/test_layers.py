"""The layer catalogue, one layer at a time, through the whole pipeline.

`check_layer` (modelled on Keras's run_layer_test) writes a one-layer net (Input layers feeding it),
validates it against the editors' JSON Schema, infers its shapes, compiles it with netdef.api, runs a
forward pass on random input and checks that the shape rule equals the real output shapes, that the
summary's parameter count equals the module's parameters, and that one backward pass gives finite
gradients. CASES covers every registered layer type: a new layer type must add a case here
(test_every_layer_type_has_a_case fails until it does). For every case `check_contract` also checks what
the layer class declares (netdef/layers/base.py) against the built module: its blobs (names, shapes,
parameter or buffer), its label bottoms, its trainable count (parameters with lr_mult > 0), its MACs
against torch's FlopCounterMode where that counter models the cost, that `netdef time`'s Benchmark runs
it, and that the net dumped by netdef.front.expand.dump_net and read again builds the same module;
test_plain_layers_export_to_onnx exports every exportable case in one net. The oracle tests below check
Caffe's own semantics against plain-loop formulas written from Caffe's source (reference/caffe.md).
"""
from __future__ import annotations

import importlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from jsonschema import Draft202012Validator

import netdef
from layer_case import Case
from netdef.api import read_net
from netdef.build import module_name
from netdef.layers import LAYERS
from netdef.layers.base import PLAIN
from netdef.front.schema import net_schema
from netdef.tools.timing import Benchmark

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT / "data" / "mnist5k"
LAYER = "layer"
SCHEMA = Draft202012Validator(net_schema())


@dataclass
class Result:
    net: torch.nn.Module
    info: object
    inputs: dict  # bottom blob -> tensor fed
    outputs: dict  # blob -> tensor returned
    path: Path = None  # the net file

    def top(self, index=0):
        return self.outputs[self.info.row(LAYER).tops[index]]


def write_net(tmp_path, layers, name="one_layer") -> Path:
    net = {"name": name, "layers": layers}
    SCHEMA.validate(net)  # the schema editors use accepts it
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    return path


def compile_file(path, phase="TRAIN", share_with=None):
    info = netdef.summarize(path, phase=phase)
    return netdef.compile_info(info, share_with), info


def learnable_count(module: torch.nn.Module, trainable=False) -> int:
    """Parameters a module learns: a masked weight (connection_table) counts only its unmasked entries;
    with `trainable`, only those that train (requires_grad: lr_mult > 0)."""
    total = 0
    for sub in module.modules():
        for blob, tensor in sub.named_parameters(recurse=False):
            if trainable and not tensor.requires_grad:
                continue
            mask = getattr(sub, "mask", None)
            total += int((mask.expand_as(tensor) != 0).sum()) if blob == "weight" and mask is not None else tensor.numel()
    return total


def random_inputs(shapes, labels):
    tensors = []
    for j, shape in enumerate(shapes):
        if j in labels:
            tensors.append(torch.randint(0, labels[j], shape).float())
        else:
            tensors.append(torch.randn(shape, requires_grad=True))
    return tensors


def source_batch(impl):
    """What a source layer produces: DummyData's generated batch, or its reader's first batch."""
    if hasattr(impl, "batch"):
        return impl.batch()
    return impl.reader("TRAIN", 0, "cpu").next()


def check_layer(tmp_path, layer_type, params=None, input_shapes=(), *, tops=1, labels=None, phase="TRAIN",
                data=None, share_with=None, backward=True) -> Result:
    """Build, validate, infer, compile and run a one-layer net; assert shapes, parameter count, gradients."""
    torch.manual_seed(0)
    labels = labels or {}
    bottoms = [f"in{j}" for j in range(len(input_shapes))]
    top_names = [f"out{j}" for j in range(tops)]
    layers = []
    if input_shapes:
        layers.append({"name": "input", "type": "Input", "top": bottoms,
                       "input_param": {"shape": [{"dim": list(s)} for s in input_shapes]}})
    layers.append({"name": LAYER, "type": layer_type, **({"bottom": bottoms} if bottoms else {}),
                   "top": top_names, **(params or {})})
    path = write_net(tmp_path, layers)
    net, info = compile_file(path, phase, share_with)
    row = info.row(LAYER)
    spec = info.graph.layer(LAYER)

    if not spec.impl.compiled():
        fed = source_batch(spec.impl) if layer_type != "Input" else [torch.randn(s) for s in row.shapes]
        inputs = dict(zip(spec.tops, fed))
    else:
        given = data or {}
        tensors = random_inputs(input_shapes, labels)
        inputs = {b: given.get(j, t) for j, (b, t) in enumerate(zip(bottoms, tensors))}
    outputs = net(**{net.input_names[blob]: tensor for blob, tensor in inputs.items()})

    for top, shape in zip(row.tops, row.shapes):
        assert tuple(outputs[top].shape) == tuple(shape), f"{layer_type} top {top}: rule {shape}, real {tuple(outputs[top].shape)}"
    if spec.impl.compiled():
        module = net.get_submodule(module_name(LAYER))
        assert row.params == learnable_count(module), f"{layer_type}: summary {row.params} params"
        if backward:
            _check_backward(net, outputs, inputs)
    return Result(net, info, inputs, outputs, path)


def _check_backward(net, outputs, inputs):
    differentiable = [o for o in outputs.values() if o.requires_grad]
    if not differentiable:
        return
    loss = sum((o * torch.rand_like(o)).sum() for o in differentiable)
    loss.backward()
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"gradient of {name}"
    for blob, tensor in inputs.items():
        if tensor.grad is not None:
            assert torch.isfinite(tensor.grad).all(), f"gradient of input {blob}"


@pytest.fixture(scope="session")
def data_files(tmp_path_factory):
    """Small real files for the file-reading source layers: an image list (Caffe's ImageData) and an
    HDF5 file list whose datasets are named after the tops (out0, out1)."""
    import h5py
    import numpy as np
    from PIL import Image
    folder = tmp_path_factory.mktemp("data_files")
    (folder / "images").mkdir()
    lines = []
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (7, 9, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i}.png")
        lines.append(f"{i}.png {i % 2}")
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    with h5py.File(folder / "rows.h5", "w") as rows:
        rows["out0"] = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
        rows["out1"] = np.arange(5)
    (folder / "h5files.txt").write_text("rows.h5\n")
    return folder


def with_files(value, folder):
    """A case's parameters with "{files}" replaced by the data_files folder."""
    if isinstance(value, dict):
        return {k: with_files(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [with_files(v, folder) for v in value]
    return value.replace("{files}", str(folder)) if isinstance(value, str) else value


XAVIER = {"type": "xavier"}
CASES = [
    Case("AbsVal", {}, [(2, 3, 4)]),
    Case("Accuracy", {"accuracy_param": {"top_k": 2}}, [(6, 5), (6,)], labels={1: 5}),
    Case("Accuracy", {"accuracy_param": {"axis": 1, "ignore_label": 0}}, [(2, 4, 3), (2, 3)], labels={1: 4}, id="spatial"),
    Case("ArgMax", {"argmax_param": {"top_k": 2, "out_max_val": True}}, [(3, 4, 5)]),
    Case("ArgMax", {"argmax_param": {"top_k": 3, "axis": -1}}, [(3, 4, 5)], id="axis"),
    Case("BatchNorm", {}, [(4, 3, 5, 7)]),
    Case("BatchNorm", {}, [(5, 3)], phase="TEST", id="2d_test"),
    Case("BatchNorm", {"param": [{"lr_mult": 0}] * 3}, [(2, 3, 4)], id="caffe_param"),
    Case("Bias", {"bias_param": {"axis": 1, "num_axes": 2, "filler": {"type": "gaussian"}}}, [(2, 3, 4, 5)]),
    Case("Bias", {"bias_param": {"axis": 2}}, [(2, 3, 4, 5), (4, 5)], id="bottom"),
    Case("Concat", {"concat_param": {"axis": 2}}, [(2, 3, 4), (2, 3, 1), (2, 3, 5)]),
    Case("Concat", {"concat_param": {"concat_dim": 0}}, [(2, 3), (5, 3)], id="concat_dim"),
    Case("Convolution", {"convolution_param": {"num_output": 4, "kernel_size": 3, "stride": 2, "pad": 1, "dilation": 2,
                                                "group": 2, "weight_filler": XAVIER}}, [(2, 4, 7, 9)]),
    Case("Convolution", {"convolution_param": {"num_output": 3, "kernel_h": 3, "kernel_w": 2, "stride_h": 2, "pad_w": 1,
                                                "bias_term": False, "weight_filler": XAVIER}}, [(1, 2, 7, 9)], id="hw"),
    Case("Convolution", {"convolution_param": {"num_output": 2, "kernel_size": [3, 1], "stride": [1, 2],
                                                "weight_filler": XAVIER}}, [(2, 3, 5, 7), (2, 3, 5, 7)], tops=2,
         id="two_bottoms"),
    Case("Convolution", {"convolution_param": {"num_output": 4, "kernel_size": 3, "weight_filler": XAVIER,
                                                "connection_table": [[0, 1], [1, 2], [0, 2], [0, 1, 2]]}},
         [(2, 3, 7, 9)], id="connection_table"),
    Case("Data", {"data_param": {"source": str(MNIST), "batch_size": 3, "split": "t10k"},
                  "transform_param": {"scale": 0.00390625, "crop_size": 24}}, tops=2),
    Case("Deconvolution", {"convolution_param": {"num_output": 4, "kernel_size": 3, "stride": 2, "pad": 1, "group": 2,
                                                  "dilation": 2, "weight_filler": XAVIER}}, [(2, 2, 5, 7)]),
    Case("Deconvolution", {"convolution_param": {"num_output": 3, "group": 3, "kernel_size": 4, "stride": 2, "pad": 1,
                                                  "bias_term": False, "weight_filler": {"type": "bilinear"}},
                           "param": [{"lr_mult": 0, "decay_mult": 0}]}, [(1, 3, 4, 5)], id="bilinear_upsample"),
    Case("Dropout", {"dropout_param": {"dropout_ratio": 0.3}}, [(4, 6)]),
    Case("DummyData", {"dummy_data_param": {"shape": [{"dim": [2, 3]}, {"dim": [4]}],
                                            "data_filler": [{"type": "constant", "value": 2}, {"type": "gaussian"}]}},
         tops=2),
    Case("ELU", {"elu_param": {"alpha": 0.5}}, [(3, 4)]),
    Case("Eltwise", {"eltwise_param": {"operation": "SUM", "coeff": [1, -0.5, 2]}}, [(2, 3, 4)] * 3),
    Case("Eltwise", {"eltwise_param": {"operation": "PROD"}}, [(2, 3)] * 2, id="prod"),
    Case("Eltwise", {"eltwise_param": {"operation": "MAX"}}, [(2, 3)] * 3, id="max"),
    Case("EuclideanLoss", {}, [(4, 3, 2), (4, 6)]),
    Case("Exp", {"exp_param": {"base": 2, "scale": 0.5, "shift": -1}}, [(3, 4)]),
    Case("Flatten", {"flatten_param": {"axis": 1, "end_axis": -2}}, [(2, 3, 4, 5)]),
    Case("HDF5Data", {"hdf5_data_param": {"source": "{files}/h5files.txt", "batch_size": 2}}, tops=2),
    Case("ImageData", {"image_data_param": {"source": "{files}/images.txt", "root_folder": "{files}/images",
                                            "batch_size": 2}, "transform_param": {"crop_size": 5, "mirror": True}},
         tops=2),
    Case("InnerProduct", {"inner_product_param": {"num_output": 5, "weight_filler": XAVIER}}, [(2, 3, 4, 5)]),
    Case("InnerProduct", {"inner_product_param": {"num_output": 6, "axis": 2, "transpose": True, "bias_term": False,
                                                  "weight_filler": XAVIER}}, [(2, 3, 4, 5)], id="axis_transpose"),
    Case("InnerProduct", {"inner_product_param": {"num_output": 2}, "param": [{"lr_mult": 0}, {"lr_mult": 2}]},
         [(3, 4)], id="frozen_weight"),
    Case("Input", {"input_param": {"shape": {"dim": [2, 3, 5]}}}, tops=2),
    Case("LRN", {"lrn_param": {"local_size": 3, "alpha": 0.5, "beta": 0.75, "k": 2}}, [(2, 5, 3, 4)]),
    Case("LRN", {"lrn_param": {"local_size": 3, "norm_region": "WITHIN_CHANNEL"}}, [(2, 2, 5, 6)], id="within"),
    Case("Log", {"log_param": {"base": 10, "scale": 2, "shift": 7}}, [(3, 4)]),
    Case("PReLU", {}, [(2, 3, 4)]),
    Case("PReLU", {"prelu_param": {"channel_shared": True}}, [(2, 3, 4)], id="shared"),
    Case("Pooling", {"pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 2}}, [(2, 3, 7, 10)]),
    Case("Pooling", {"pooling_param": {"pool": "AVE", "kernel_size": 3, "stride": 2, "pad": 1}}, [(2, 3, 7, 10)],
         id="ave_pad"),
    Case("Pooling", {"pooling_param": {"pool": "MAX", "kernel_h": 2, "kernel_w": 3, "stride_h": 3, "stride_w": 2,
                                       "pad_h": 1, "round_mode": "FLOOR"}}, [(1, 2, 8, 9)], id="hw_floor"),
    Case("Pooling", {"pooling_param": {"pool": "AVE", "global_pooling": True}}, [(2, 3, 5, 7)], id="global"),
    Case("Power", {"power_param": {"power": 2, "scale": 0.5, "shift": 3}}, [(3, 4)]),
    Case("RBF", {"rbf_param": {"num_output": 4, "weight_filler": {"type": "gaussian"}}}, [(2, 3, 5)]),
    Case("RBFLoss", {"rbf_loss_param": {"j": 1.0}}, [(4, 5), (4,)], labels={1: 5}),
    Case("ReLU", {"relu_param": {"negative_slope": 0.1}}, [(3, 4)]),
    Case("Reshape", {"reshape_param": {"shape": {"dim": [0, -1, 2]}}}, [(2, 3, 4)]),
    Case("Reshape", {"reshape_param": {"shape": {"dim": [-1]}}}, [(2, 3, 4)], id="batch_axis"),
    Case("Reshape", {"reshape_param": {"shape": {"dim": [2, 2]}, "axis": 1, "num_axes": 1}}, [(3, 4, 5)], id="span"),
    Case("Scale", {"scale_param": {"bias_term": True, "filler": {"type": "uniform"}}}, [(2, 3, 4, 5)]),
    Case("Scale", {"scale_param": {"axis": 0, "num_axes": 0}}, [(2, 3)], id="scalar"),
    Case("Scale", {"scale_param": {"axis": 1, "bias_term": True}}, [(2, 3, 4), (3, 4)], id="bottom"),
    Case("Scale", {"scale_param": {"axis": 0, "bias_term": True}, "param": [{"lr_mult": 0}]}, [(2, 3, 4), (2, 3)],
         id="bottom_frozen_bias"),  # with a scale bottom, the bias is blob 0: the one param entry freezes it
    Case("Sigmoid", {}, [(3, 4)]),
    Case("SigmoidCrossEntropyLoss", {"loss_param": {"ignore_label": -1}}, [(4, 3, 2), (4, 6)]),
    Case("Slice", {"slice_param": {"axis": 1, "slice_point": [1, 4]}}, [(2, 6, 3)], tops=3),
    Case("Slice", {"slice_param": {"slice_dim": 0}}, [(4, 3)], tops=2, id="equal"),
    Case("Softmax", {"softmax_param": {"axis": 2}}, [(2, 3, 4)]),
    Case("SoftmaxWithLoss", {}, [(4, 5), (4,)], labels={1: 5}),
    Case("Subsampling", {"subsampling_param": {"kernel_size": 2}}, [(2, 3, 7, 9)]),
    Case("Subsampling", {"subsampling_param": {"kernel_size": 3, "stride": 2, "bias_term": False}}, [(1, 2, 7, 8)],
         id="overlapping"),
    Case("SoftmaxWithLoss", {"loss_param": {"ignore_label": 1, "normalization": "FULL"}, "loss_weight": [1, 0.5]},
         [(2, 3, 4, 5), (2, 1, 4, 5)], tops=2, labels={1: 3}, id="spatial_prob"),
    Case("Split", {}, [(2, 3)], tops=3),
    Case("TanH", {}, [(3, 4)]),
    Case("TanH", {"tanh_param": {"scale_in": 0.6667, "scale_out": 1.7159}}, [(3, 4)], id="lecun"),
]


# Each area of the catalogue may keep its cases in tests/layer_cases_<area>.py (a list CASES of Case); they
# run here with the rest, so every case gets the same contract checks.
for _module in sorted(Path(__file__).parent.glob("layer_cases_*.py")):
    CASES += importlib.import_module(_module.stem).CASES


def test_every_layer_type_has_a_case():
    missing = sorted(set(LAYERS) - {case.type for case in CASES})
    assert not missing, ("add a check_layer case to tests/test_layers.py CASES (or a tests/layer_cases_<area>.py "
                         f"CASES list) for: {', '.join(missing)}")


CASE_IDS = [f"{c.type}-{c.id}" if c.id else c.type for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_layer(tmp_path, data_files, case):
    result = check_layer(tmp_path, case.type, with_files(case.params, data_files), case.inputs, tops=case.tops,
                         labels=case.labels, phase=case.phase)
    check_contract(tmp_path, case, result)


# ---------------------------------------------------------------- what each class declares, against the module

# torch's FlopCounterMode counts matrix products and convolutions (2 FLOPs per MAC) and no pointwise,
# pooling or reduction op. So its figure is the whole cost only for layers made of those, the types below;
# for them the summary's MACs must equal half its FLOPs. Every other layer must show it no FLOP at all
# (a product or convolution inside another layer would be a cost its class does not count); their MACs
# (Scale, Eltwise, RBF, Subsampling, EuclideanLoss: one per multiply) are checked by the oracle tests.
FLOP_COUNTED = {"Convolution", "Deconvolution", "InnerProduct", "LocallyConnected", "LSTM", "RNN", "MatMul", "MultiHeadAttention"}


def check_contract(tmp_path, case, result):
    net, info = result.net, result.info
    spec, row = info.graph.layer(LAYER), info.row(LAYER)
    impl = spec.impl
    assert impl.label_classes(row.in_shapes) == case.labels, f"{case.type}: label bottoms and classes"
    assert [blob.name for blob in row.blobs] == list(impl.param_names())
    assert [blob.param_index for blob in row.blobs] == list(range(len(row.blobs)))
    if impl.compiled():
        module = net.get_submodule(module_name(LAYER))
        _check_blobs(case, module, row)
        assert row.trainable == learnable_count(module, trainable=True), f"{case.type}: summary {row.trainable} trainable"
        _check_flops(case, net, result.inputs, row)
    bench = Benchmark(net, info)
    bench.iteration()
    assert all(len(layer.forward) == len(layer.backward) == 1 for layer in bench.layers.values())
    _check_reload(tmp_path, case, result)


def _check_blobs(case, module, row):
    """Each BlobSpec is the module attribute it names, of its shape: a parameter when learnt, else a
    buffer; and the module learns nothing else."""
    for blob in row.blobs:
        tensor = getattr(module, blob.name)
        assert tuple(tensor.shape) == blob.shape, f"{case.type}.{blob.name}"
        assert isinstance(tensor, torch.nn.Parameter) == blob.learnable, f"{case.type}.{blob.name}"
    assert {name for name, _ in module.named_parameters()} <= {blob.name for blob in row.blobs if blob.learnable}


def _check_flops(case, net, inputs, row):
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        net(**{net.input_names[blob]: tensor.detach() for blob, tensor in inputs.items()})
    flops = counter.get_total_flops()
    if case.type not in FLOP_COUNTED:
        assert flops == 0, f"{case.type}: FlopCounterMode sees {flops} FLOPs that the layer does not count"
        return
    macs = flops // 2
    table = case.params.get("convolution_param", {}).get("connection_table")
    if table:  # the counter sees the dense convolution; the layer counts only the table's connections
        macs = macs * sum(len(r) for r in table) // (len(table) * row.in_shapes[0][1])
    assert row.macs is not None and row.macs * row.batch == macs, f"{case.type}: {row.macs} x {row.batch} MACs"


def _check_reload(tmp_path, case, result):
    """The expanded net as dump_net writes it, read again, builds the same module, computing the same."""
    again_path = tmp_path / "reloaded.yaml"
    again_path.write_text(read_net(result.path).yaml())
    again = netdef.load_net(again_path, phase=case.phase)
    ours = {k: tuple(v.shape) for k, v in result.net.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in again.state_dict().items()} == ours
    again.load_state_dict(result.net.state_dict())
    outputs = []
    for net in (result.net, again):
        torch.manual_seed(1)  # dropout draws the same mask in both
        outputs.append(net(**{net.input_names[blob]: tensor.detach() for blob, tensor in result.inputs.items()}))
    assert outputs[0].keys() == outputs[1].keys()
    for blob in outputs[0]:
        torch.testing.assert_close(outputs[0][blob], outputs[1][blob], equal_nan=True)


# ---------------------------------------------------------------- spatial layers against Caffe's loops

def caffe_pool_size(size, kernel, stride, pad, ceil=True):
    """Caffe's PoolingLayer::Reshape."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def window_outside(size, kernel, stride, pad):
    """Caffe's degenerate case: without padding nothing clamps a last window that starts past the input."""
    return (caffe_pool_size(size, kernel, stride, pad) - 1) * stride - pad >= size


def caffe_pool(x, kernel, stride, pad, pool):
    """Caffe's PoolingLayer::Forward_cpu for one (N, C, H, W) tensor, as plain loops."""
    n, c, h, w = x.shape
    oh, ow = caffe_pool_size(h, kernel, stride, pad), caffe_pool_size(w, kernel, stride, pad)
    out = torch.zeros(n, c, oh, ow, dtype=torch.float64)
    for i, j in itertools.product(range(oh), range(ow)):
        hstart, wstart = i * stride - pad, j * stride - pad
        hend, wend = min(hstart + kernel, h + pad), min(wstart + kernel, w + pad)
        pool_size = (hend - hstart) * (wend - wstart)  # counted before clipping to the image
        hstart, wstart, hend, wend = max(hstart, 0), max(wstart, 0), min(hend, h), min(wend, w)
        window = x[:, :, hstart:hend, wstart:wend].double()
        out[:, :, i, j] = window.amax((2, 3)) if pool == "MAX" else window.sum((2, 3)) / pool_size
    return out


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_matches_caffe_loops(tmp_path, pool):
    """Output sizes (ceil, the last-window clamp with padding) and values (AVE's divisor counts padding but
    not the ceil overhang) over a grid of odd sizes, kernels, strides and pads."""
    grid = [(size, k, s, p) for size in (4, 5, 7) for k in (2, 3) for s in (1, 2, 3) for p in range(k)
            if not window_outside(size, k, s, p) and not window_outside(size + 1, k, s, p)]
    shapes = [(1, 2, size, size + 1) for size, *_ in grid]
    layers = [{"name": "input", "type": "Input", "top": [f"x{i}" for i in range(len(grid))],
               "input_param": {"shape": [{"dim": list(s)} for s in shapes]}}]
    layers += [{"name": f"pool{i}", "type": "Pooling", "bottom": f"x{i}", "top": f"p{i}",
                "pooling_param": {"pool": pool, "kernel_size": k, "stride": s, "pad": p}}
               for i, (_, k, s, p) in enumerate(grid)]
    net, info = compile_file(write_net(tmp_path, layers))
    xs = {f"x{i}": torch.randn(shape) for i, shape in enumerate(shapes)}
    outputs = net(**xs)
    clamped = 0
    for i, (size, k, s, p) in enumerate(grid):
        expected = caffe_pool(xs[f"x{i}"], k, s, p, pool)
        assert info.blob_shapes[f"p{i}"] == tuple(expected.shape), (size, k, s, p)
        torch.testing.assert_close(outputs[f"p{i}"].double(), expected, atol=1e-6, rtol=1e-6)
        clamped += caffe_pool_size(size, k, s, p) < -(-(size + 2 * p - k) // s) + 1
    assert clamped, "the grid must exercise Caffe's last-window clamp"


def test_pooling_window_wholly_outside_the_input_is_refused(tmp_path):
    assert window_outside(6, 2, 3, 0)
    layers = [{"name": "input", "type": "Input", "top": "x", "input_param": {"shape": {"dim": [1, 1, 6, 6]}}},
              {"name": "pool", "type": "Pooling", "bottom": "x", "top": "p",
               "pooling_param": {"kernel_size": 2, "stride": 3}}]
    with pytest.raises(netdef.NetdefError, match="wholly outside the input.*kernel 2, stride 3 over size 6"):
        netdef.summarize(write_net(tmp_path, layers))


def caffe_lrn_across(x, n, alpha, beta, k):
    c = x.shape[1]
    scale = torch.full_like(x, k, dtype=torch.float64)
    for ch in range(c):
        for other in range(max(0, ch - n // 2), min(c, ch + n // 2 + 1)):
            scale[:, ch] += alpha / n * x[:, other].double() ** 2
    return x.double() * scale ** -beta


def caffe_lrn_within(x, n, alpha, beta):
    _, _, h, w = x.shape
    pad = (n - 1) // 2
    out = torch.empty_like(x, dtype=torch.float64)
    for i, j in itertools.product(range(h), range(w)):
        window = x[:, :, max(0, i - pad):i - pad + n, max(0, j - pad):j - pad + n].double()
        out[:, :, i, j] = x[:, :, i, j].double() * (1 + alpha / n ** 2 * (window ** 2).sum((2, 3))) ** -beta
    return out


def test_lrn_across_and_within_channels_match_caffe(tmp_path):
    across = check_layer(tmp_path, "LRN", {"lrn_param": {"local_size": 5, "alpha": 0.3, "beta": 0.75, "k": 2}},
                         [(2, 7, 3, 4)])
    x = across.inputs["in0"].detach()
    torch.testing.assert_close(across.top().double(), caffe_lrn_across(x, 5, 0.3, 0.75, 2))
    within = check_layer(tmp_path, "LRN", {"lrn_param": {"local_size": 3, "alpha": 0.4, "beta": 0.6,
                                                          "norm_region": "WITHIN_CHANNEL"}}, [(2, 2, 5, 6)])
    x = within.inputs["in0"].detach()
    torch.testing.assert_close(within.top().double(), caffe_lrn_within(x, 3, 0.4, 0.6))


# ---------------------------------------------------------------- normalisation and affine layers

def test_batchnorm_keeps_caffe_statistics_and_uses_them_in_test(tmp_path):
    fraction, eps, shape = 0.9, 1e-4, (4, 3, 2, 5)
    params = {"batch_norm_param": {"moving_average_fraction": fraction, "eps": eps}}
    train = check_layer(tmp_path, "BatchNorm", params, [shape])
    module = train.net.get_submodule(LAYER)
    s, mean_sum, var_sum = 0.0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    m = shape[0] * shape[2] * shape[3]
    for step in range(4):
        x = train.inputs["in0"].detach() if step == 0 else torch.randn(shape) * (step + 1) + step
        out = train.top() if step == 0 else train.net(in0=x)["out0"]
        mu, var = x.double().mean((0, 2, 3)), x.double().var((0, 2, 3), unbiased=False)
        expected = (x.double() - mu[None, :, None, None]) / (var[None, :, None, None] + eps).sqrt()
        torch.testing.assert_close(out.detach().double(), expected, atol=1e-5, rtol=1e-5)
        s, mean_sum, var_sum = fraction * s + 1, fraction * mean_sum + mu, fraction * var_sum + m / (m - 1) * var
    torch.testing.assert_close(module.scale_factor.double(), torch.tensor([s], dtype=torch.float64))
    torch.testing.assert_close(module.mean.double(), mean_sum)
    torch.testing.assert_close(module.variance.double(), var_sum)

    test = check_layer(tmp_path, "BatchNorm", params, [shape], phase="TEST", share_with=train.net)
    x = test.inputs["in0"].detach().double()
    expected = (x - (mean_sum / s)[None, :, None, None]) / ((var_sum / s)[None, :, None, None] + eps).sqrt()
    torch.testing.assert_close(test.top().double(), expected, atol=1e-5, rtol=1e-5)
    assert test.net.get_submodule(LAYER).mean is module.mean, "TEST shares the TRAIN net's statistics"

    fresh = check_layer(tmp_path, "BatchNorm", {"batch_norm_param": {"use_global_stats": True, "eps": eps}}, [shape])
    # Nothing stored yet (s == 0): Caffe's global statistics are zero.
    torch.testing.assert_close(fresh.top(), fresh.inputs["in0"].detach() / math.sqrt(eps))


def test_scale_and_bias_span_axis_and_num_axes(tmp_path):
    scale = check_layer(tmp_path, "Scale", {"scale_param": {"axis": 1, "num_axes": 2, "bias_term": True,
                                                            "filler": {"type": "gaussian"},
                                                            "bias_filler": {"type": "gaussian"}}}, [(2, 3, 4, 5)])
    module = scale.net.get_submodule(LAYER)
    assert module.weight.shape == (3, 4) and module.bias.shape == (3, 4)
    x = scale.inputs["in0"].detach()
    torch.testing.assert_close(scale.top(), x * module.weight[None, :, :, None] + module.bias[None, :, :, None])

    to_end = check_layer(tmp_path, "Scale", {"scale_param": {"axis": -2, "num_axes": -1,
                                                             "filler": {"type": "uniform"}}}, [(2, 3, 4, 5)])
    gamma = to_end.net.get_submodule(LAYER).weight
    assert gamma.shape == (4, 5)
    torch.testing.assert_close(to_end.top(), to_end.inputs["in0"].detach() * gamma)

    two = check_layer(tmp_path, "Scale", {"scale_param": {"axis": 0}}, [(2, 3, 4), (2, 3)])
    torch.testing.assert_close(two.top(), two.inputs["in0"].detach() * two.inputs["in1"].detach()[:, :, None])

    bias = check_layer(tmp_path, "Bias", {"bias_param": {"axis": 2, "num_axes": 1, "filler": {"type": "gaussian"}}},
                       [(2, 3, 4, 5)])
    beta = bias.net.get_submodule(LAYER).bias
    assert beta.shape == (4,)
    torch.testing.assert_close(bias.top(), bias.inputs["in0"].detach() + beta[:, None])


# ---------------------------------------------------------------- structure layers

def test_eltwise_coefficients_product_and_max(tmp_path):
    shapes = [(2, 3, 4)] * 3
    summed = check_layer(tmp_path, "Eltwise", {"eltwise_param": {"coeff": [1, -0.5, 2]}}, shapes)
    a, b, c = (summed.inputs[f"in{j}"].detach() for j in range(3))
    torch.testing.assert_close(summed.top(), a - 0.5 * b + 2 * c)
    prod = check_layer(tmp_path, "Eltwise", {"eltwise_param": {"operation": "PROD"}}, shapes)
    a, b, c = (prod.inputs[f"in{j}"].detach() for j in range(3))
    torch.testing.assert_close(prod.top(), a * b * c)
    biggest = check_layer(tmp_path, "Eltwise", {"eltwise_param": {"operation": "MAX"}}, shapes)
    a, b, c = (biggest.inputs[f"in{j}"].detach() for j in range(3))
    torch.testing.assert_close(biggest.top(), torch.maximum(torch.maximum(a, b), c))


def test_slice_concat_flatten_reshape_values(tmp_path):
    sliced = check_layer(tmp_path, "Slice", {"slice_param": {"axis": -1, "slice_point": [2, 3]}}, [(2, 3, 5)], tops=3)
    x = sliced.inputs["in0"].detach()
    for j, (lo, hi) in enumerate([(0, 2), (2, 3), (3, 5)]):
        torch.testing.assert_close(sliced.top(j), x[..., lo:hi])
    joined = check_layer(tmp_path, "Concat", {"concat_param": {"axis": 0}}, [(1, 3), (2, 3)])
    torch.testing.assert_close(joined.top(), torch.cat([joined.inputs["in0"], joined.inputs["in1"]]).detach())
    flat = check_layer(tmp_path, "Flatten", {"flatten_param": {"axis": 2}}, [(2, 3, 4, 5)])
    assert flat.top().shape == (2, 3, 20)
    torch.testing.assert_close(flat.top(), flat.inputs["in0"].detach().reshape(2, 3, 20))
    reshaped = check_layer(tmp_path, "Reshape", {"reshape_param": {"shape": {"dim": [0, -1, 3, 0]}}}, [(2, 6, 5, 4)])
    assert reshaped.top().shape == (2, 10, 3, 4), "0 copies the input axis at the same position"
    torch.testing.assert_close(reshaped.top(), reshaped.inputs["in0"].detach().reshape(2, 10, 3, 4))


# ---------------------------------------------------------------- losses and metrics

def caffe_softmax_loss(scores, labels, normalization, ignore_label=None):
    """SoftmaxWithLossLayer::Forward_cpu: -sum log p[label] over non-ignored positions / normalizer."""
    n, c = scores.shape[:2]
    probs = torch.softmax(scores.double(), 1).reshape(n, c, -1)
    labels = labels.reshape(n, -1).long()
    total, valid = 0.0, 0
    for i, j in itertools.product(range(n), range(labels.shape[1])):
        label = int(labels[i, j])
        if label == ignore_label:
            continue
        total -= math.log(max(probs[i, label, j].item(), 1e-37))
        valid += 1
    divisor = {"FULL": labels.numel(), "VALID": valid, "BATCH_SIZE": n, "NONE": 1}[normalization]
    return total / max(divisor, 1)


@pytest.mark.parametrize("normalization", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_softmax_loss_normalization_and_ignore_label(tmp_path, normalization):
    params = {"loss_param": {"ignore_label": 2, "normalization": normalization}}
    result = check_layer(tmp_path, "SoftmaxWithLoss", params, [(3, 4, 2, 3), (3, 1, 2, 3)], labels={1: 4})
    scores, labels = result.inputs["in0"].detach(), result.inputs["in1"]
    assert (labels == 2).any() and (labels != 2).any()
    expected = caffe_softmax_loss(scores, labels, normalization, ignore_label=2)
    assert result.top().item() == pytest.approx(expected, rel=1e-5)


def test_softmax_loss_deprecated_normalize_and_all_ignored(tmp_path):
    batch = check_layer(tmp_path, "SoftmaxWithLoss", {"loss_param": {"normalize": False}}, [(4, 3, 5), (4, 5)],
                        labels={1: 3})
    scores, labels = batch.inputs["in0"].detach(), batch.inputs["in1"]
    assert batch.top().item() == pytest.approx(caffe_softmax_loss(scores, labels, "BATCH_SIZE"), rel=1e-5)
    ignored = check_layer(tmp_path, "SoftmaxWithLoss", {"loss_param": {"ignore_label": 0}}, [(2, 3), (2,)],
                          data={1: torch.zeros(2)})
    assert ignored.top().item() == 0.0, "Caffe divides by max(1, valid count): no valid label gives 0, not NaN"


@pytest.mark.parametrize("loss_param, divisor", [({}, "batch"), ({"normalization": "VALID"}, "valid"),
                                                 ({"normalize": True}, "valid"), ({"normalization": "FULL"}, "all")])
def test_sigmoid_cross_entropy_loss_matches_caffe(tmp_path, loss_param, divisor):
    targets = torch.tensor([[1.0, 0.0, -1.0], [0.25, -1.0, 1.0]])
    result = check_layer(tmp_path, "SigmoidCrossEntropyLoss", {"loss_param": {"ignore_label": -1, **loss_param}},
                         [(2, 3), (2, 3)], data={1: targets})
    scores = result.inputs["in0"].detach().double()
    total = 0.0
    for x, t in zip(scores.flatten().tolist(), targets.flatten().tolist()):
        if t != -1:
            p = 1 / (1 + math.exp(-x))
            total -= t * math.log(p) + (1 - t) * math.log(1 - p)
    expected = total / {"batch": 2, "valid": 4, "all": 6}[divisor]
    assert result.top().item() == pytest.approx(expected, rel=1e-5)


def test_accuracy_top_k_and_ignore_label(tmp_path):
    params = {"accuracy_param": {"top_k": 2, "ignore_label": 3}}
    result = check_layer(tmp_path, "Accuracy", params, [(40, 5), (40,)], labels={1: 5})
    scores, labels = result.inputs["in0"].detach(), result.inputs["in1"].long()
    hits = valid = 0
    for row, label in zip(scores, labels):
        if label == 3:
            continue
        valid += 1
        hits += int((row > row[label]).sum()) < 2  # Caffe counts strictly better scores
    assert 0 < hits < valid
    assert result.top().item() == pytest.approx(hits / valid)


def test_argmax_indices_and_values(tmp_path):
    flat = check_layer(tmp_path, "ArgMax", {"argmax_param": {"top_k": 2, "out_max_val": True}}, [(3, 2, 4)])
    x = flat.inputs["in0"].detach().reshape(3, 8)
    for i in range(3):
        order = sorted(range(8), key=lambda j: -x[i, j].item())[:2]
        assert flat.top()[i, 0].tolist() == order and flat.top()[i, 1].tolist() == [x[i, j].item() for j in order]
    along = check_layer(tmp_path, "ArgMax", {"argmax_param": {"axis": 1}}, [(3, 5, 2)])
    torch.testing.assert_close(along.top(), along.inputs["in0"].detach().argmax(1, keepdim=True).float())


def test_euclidean_loss(tmp_path):
    result = check_layer(tmp_path, "EuclideanLoss", {}, [(4, 6), (4, 6)])
    a, b = result.inputs["in0"].detach(), result.inputs["in1"].detach()
    assert result.top().item() == pytest.approx(((a - b) ** 2).sum().item() / 8, rel=1e-6)


# ---------------------------------------------------------------- neurons

@pytest.mark.parametrize("layer_type, params, formula", [
    ("Power", {"power": 3, "scale": 0.5, "shift": 2}, lambda x: (2 + 0.5 * x) ** 3),
    ("Exp", {"base": 3, "scale": 0.5, "shift": -1}, lambda x: 3 ** (-1 + 0.5 * x)),
    ("Exp", {"scale": 2}, lambda x: math.e ** (2 * x)),
    ("Log", {"base": 2, "scale": 3, "shift": 10}, lambda x: torch.log2(10 + 3 * x)),
    ("Log", {}, torch.log),
    ("ELU", {"alpha": 0.7}, lambda x: torch.where(x > 0, x, 0.7 * (torch.exp(x) - 1))),
    ("ReLU", {"negative_slope": 0.2}, lambda x: torch.where(x > 0, x, 0.2 * x)),
    ("TanH", {"scale_in": 0.6667, "scale_out": 1.7159}, lambda x: 1.7159 * torch.tanh(0.6667 * x)),
    ("AbsVal", None, torch.abs),
    ("Sigmoid", None, lambda x: 1 / (1 + torch.exp(-x))),
])
def test_elementwise_formulas(tmp_path, layer_type, params, formula):
    block = {f"{layer_type.lower()}_param": params} if params else {}
    data = {0: torch.rand(3, 4) + 0.5} if layer_type == "Log" else None
    result = check_layer(tmp_path, layer_type, block, [(3, 4)], data=data)
    x = result.inputs["in0"].detach()
    torch.testing.assert_close(result.top(), formula(x).float(), atol=1e-5, rtol=1e-5)


def test_prelu_per_channel_and_shared(tmp_path):
    per_channel = check_layer(tmp_path, "PReLU", {"prelu_param": {"filler": {"type": "uniform"}}}, [(2, 3, 4)])
    slopes = per_channel.net.get_submodule(LAYER).weight
    assert slopes.shape == (3,)
    x = per_channel.inputs["in0"].detach()
    torch.testing.assert_close(per_channel.top(), torch.where(x > 0, x, slopes[:, None] * x))
    shared = check_layer(tmp_path, "PReLU", {"prelu_param": {"channel_shared": True}}, [(2, 3, 4)])
    assert shared.info.row(LAYER).params == 1
    x = shared.inputs["in0"].detach()
    torch.testing.assert_close(shared.top(), torch.where(x > 0, x, 0.25 * x))  # Caffe's default slope


def test_dropout_scales_in_train_and_passes_through_in_test(tmp_path):
    params = {"dropout_param": {"dropout_ratio": 0.25}}
    train = check_layer(tmp_path, "Dropout", params, [(200, 50)], data={0: torch.ones(200, 50)})
    out = train.top()
    kept = out != 0
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.75))
    assert 0.72 < kept.float().mean().item() < 0.78
    test = check_layer(tmp_path, "Dropout", params, [(200, 50)], phase="TEST")
    torch.testing.assert_close(test.top(), test.inputs["in0"].detach())


# ---------------------------------------------------------------- fillers

def weight_of(tmp_path, layer_type, block, filler, shape, num_output):
    params = {block: {"num_output": num_output, "bias_term": False, **({"weight_filler": filler} if filler else {}),
                      **({"kernel_size": 3} if block == "convolution_param" else {})}}
    result = check_layer(tmp_path, layer_type, params, [shape], backward=False)
    return result.net.get_submodule(LAYER).weight.detach()


def test_fillers_follow_caffe(tmp_path):
    xavier = weight_of(tmp_path, "Convolution", "convolution_param", {"type": "xavier"}, (1, 8, 5, 5), 64)
    bound = math.sqrt(3 / (8 * 3 * 3))  # fan_in = count / num_output
    assert xavier.abs().max() <= bound and xavier.abs().max() > 0.98 * bound
    fan_out = weight_of(tmp_path, "InnerProduct", "inner_product_param",
                        {"type": "xavier", "variance_norm": "FAN_OUT"}, (2, 300), 40)
    assert fan_out.abs().max() <= math.sqrt(3 / 40) and fan_out.abs().max() > 0.98 * math.sqrt(3 / 40)

    msra = weight_of(tmp_path, "InnerProduct", "inner_product_param", {"type": "msra"}, (2, 200), 300)
    assert msra.mean().abs() < 0.01 and msra.std().item() == pytest.approx(math.sqrt(2 / 200), rel=0.03)

    unitball = weight_of(tmp_path, "InnerProduct", "inner_product_param", {"type": "positive_unitball"}, (2, 7), 5)
    assert (unitball >= 0).all()
    torch.testing.assert_close(unitball.sum(1), torch.ones(5))

    constant = weight_of(tmp_path, "InnerProduct", "inner_product_param", {"type": "constant", "value": 0.3}, (2, 4), 3)
    torch.testing.assert_close(constant, torch.full((3, 4), 0.3))
    default = weight_of(tmp_path, "InnerProduct", "inner_product_param", None, (2, 4), 3)
    assert (default == 0).all(), "an absent filler is Caffe's constant 0"

    for size in (3, 4):
        params = {"convolution_param": {"num_output": 2, "group": 2, "kernel_size": size, "stride": 2,
                                        "bias_term": False, "weight_filler": {"type": "bilinear"}}}
        bilinear = check_layer(tmp_path, "Deconvolution", params, [(1, 2, 3, 3)]).net.get_submodule(LAYER).weight
        f = math.ceil(size / 2)
        c = (2 * f - 1 - f % 2) / (2 * f)
        for i in range(bilinear[0, 0].numel()):
            x, y = i % size, (i // size) % size
            expected = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
            assert bilinear[:, :, y, x].detach().allclose(torch.tensor(expected))


def exportable_cases():
    return [(case_id, case) for case_id, case in zip(CASE_IDS, CASES)
            if LAYERS[case.type].role == PLAIN and LAYERS[case.type].exportable]


def cases_net(tmp_path, cases, name) -> Path:
    """One net of many cases side by side: one Input layer feeding every case's layer (c<i>)."""
    tops, shapes, layers = [], [], []
    for i, (_, case) in enumerate(cases):
        bottoms = [f"c{i}_in{j}" for j in range(len(case.inputs))]
        tops += bottoms
        shapes += [{"dim": list(s)} for s in case.inputs]
        layers.append({"name": f"c{i}", "type": case.type, "bottom": bottoms,
                       "top": [f"c{i}_out{j}" for j in range(case.tops)], **case.params})
    return write_net(tmp_path, [{"name": "input", "type": "Input", "top": tops, "input_param": {"shape": shapes}}]
                     + layers, name)


def export_and_compare(tmp_path, net_file):
    """Exports the net's deploy form and runs it in onnxruntime: the outputs equal netdef's."""
    import numpy as np
    import onnxruntime as ort

    from netdef.tools.export import deploy_net, example_inputs, export_onnx
    model = tmp_path / f"{net_file.stem}.onnx"
    torch.manual_seed(0)
    export_onnx(net_file, model)
    torch.manual_seed(0)  # the same fillers' weights as the exported ones
    net, graph, info = deploy_net(net_file)
    inputs = example_inputs(graph, info)
    with torch.no_grad():
        expected = net(**{net.input_names[b]: t for b, t in inputs.items()})
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {net.input_names[b]: t.numpy() for b, t in inputs.items()})
    for blob, value in zip(graph.outputs, outputs):
        np.testing.assert_allclose(value, expected[blob].numpy(), rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=blob)


def test_plain_layers_export_to_onnx(tmp_path):
    """Every case of a type whose class says it exports (plain layers, Layer.exportable) exports to ONNX in
    one net and runs in onnxruntime as in netdef; if that fails, each case alone names the culprits."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    cases = exportable_cases()
    assert len(cases) > 40
    try:
        export_and_compare(tmp_path, cases_net(tmp_path, cases, "all_plain"))
    except Exception:  # noqa: BLE001  (find which cases fail, one by one)
        failed = []
        for i, (case_id, case) in enumerate(cases):
            try:
                export_and_compare(tmp_path, cases_net(tmp_path, [(case_id, case)], f"case{i}"))
            except Exception as exc:  # noqa: BLE001
                failed.append(f"{case_id}: {next((line for line in str(exc).splitlines() if line.strip()), repr(exc))}")
        pytest.fail("cases that do not export: " + "; ".join(failed) if failed else "only the combined net fails")
