"""LocallyConnected (netdef/layers/local.py) against a float64 loop written from its definition: every
output position (i, j) of map o sums its own kernel times its own input window, plus its own bias."""
from __future__ import annotations

import pytest
import torch
import yaml

import netdef
from netdef.build import module_name


def _loop(x, weight, bias, kernel, stride, pad):
    n, channels = x.shape[:2]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    out_h = (x.shape[2] + 2 * pad - kernel) // stride + 1
    out_w = (x.shape[3] + 2 * pad - kernel) // stride + 1
    num_output = weight.shape[1]
    out = torch.zeros(n, num_output, out_h, out_w, dtype=torch.float64)
    for b in range(n):
        for o in range(num_output):
            for i in range(out_h):
                for j in range(out_w):
                    own_kernel = weight[i * out_w + j, o].reshape(channels, kernel, kernel)
                    window = padded[b, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
                    out[b, o, i, j] = (own_kernel * window).sum() + (bias[o, i, j] if bias is not None else 0.0)
    return out


def _compiled(tmp_path, shape, local_param):
    net = {"name": "local", "layers": [
        {"name": "input", "type": "Input", "top": ["x"], "input_param": {"shape": [{"dim": list(shape)}]}},
        {"name": "local", "type": "LocallyConnected", "bottom": ["x"], "top": ["y"],
         "local_param": {**local_param, "weight_filler": {"type": "gaussian", "std": 0.5},
                         "bias_filler": {"type": "uniform", "min": -1, "max": 1}}}]}
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    info = netdef.summarize(path)
    return netdef.compile_info(info).double(), info


@pytest.mark.parametrize("shape, local_param", [
    ((2, 3, 6, 5), {"num_output": 4, "kernel_size": 3}),
    ((1, 2, 7, 7), {"num_output": 3, "kernel_size": 2, "stride": 2, "pad": 1}),
    ((2, 1, 5, 5), {"num_output": 2, "kernel_size": 3, "stride": 1, "pad": 1, "bias_term": False}),
])
def test_matches_the_loop_oracle(tmp_path, shape, local_param):
    torch.manual_seed(0)
    net, info = _compiled(tmp_path, shape, local_param)
    module = net.get_submodule(module_name("local"))
    x = torch.randn(shape, dtype=torch.float64)
    expected = _loop(x, module.weight, module.bias, local_param["kernel_size"], local_param.get("stride", 1),
                     local_param.get("pad", 0))
    torch.testing.assert_close(net(x=x)["y"], expected)
    row = info.row("local")
    assert tuple(row.shapes[0]) == tuple(expected.shape)
    assert row.macs == expected[0].numel() * shape[1] * local_param["kernel_size"] ** 2  # per sample


def test_every_position_has_its_own_kernel(tmp_path):
    """Unshared: a change to one position's kernel changes that output value only."""
    net, _ = _compiled(tmp_path, (1, 1, 4, 4), {"num_output": 1, "kernel_size": 2})
    module = net.get_submodule(module_name("local"))
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    before = net(x=x)["y"].detach().clone()
    with torch.no_grad():
        module.weight[4] += 1.0  # position (1, 1) of the 3 x 3 output
    changed = (net(x=x)["y"] != before).nonzero().tolist()
    assert changed == [[0, 0, 1, 1]]
