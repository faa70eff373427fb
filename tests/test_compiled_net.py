"""A compiled net is an object: it keeps its inputs, outputs, loss weights, lr multipliers and phase
through copy.deepcopy, torch.save/torch.load and DistributedDataParallel, and computes the same."""
import copy
import io

import pytest
import torch
import torch.distributed as dist

import netdef
from netdef.build import CompiledNet

from conftest import ROOT

SMALL = {"data": (2, 3, 64, 64), "label": (2,)}


def resnet50():
    torch.manual_seed(0)
    net = netdef.load_net(ROOT / "nets/resnet50.yaml", "TEST", input_shapes=SMALL)
    with torch.no_grad():  # BatchNorm statistics of a trained net (Caffe's are 0 until trained: NaN outputs)
        for name, buffer in net.named_buffers():
            buffer.uniform_(0.5, 1.5) if name.endswith(("variance", "scale_factor")) else buffer.normal_(0, 0.1)
    return net.eval()


def inputs():
    generator = torch.Generator().manual_seed(1)
    return {"data": torch.randn(SMALL["data"], generator=generator),
            "label": torch.randint(0, 1000, SMALL["label"], generator=generator)}


def same_attributes(copied, net):
    assert isinstance(copied, CompiledNet)
    for name in CompiledNet.NET_ATTRIBUTES:
        assert getattr(copied, name) == getattr(net, name), name
    assert copied.training == net.training


def same_outputs(copied, net):
    feed = inputs()
    with torch.no_grad():
        expected, found = net(**feed), copied(**feed)
    assert list(found) == list(expected) == net.outputs
    for blob in expected:
        assert torch.isfinite(expected[blob]).all()
        assert torch.equal(found[blob], expected[blob]), blob


def test_deepcopy_of_a_compiled_resnet50_keeps_what_it_knows_and_computes_the_same():
    net = resnet50()
    copied = copy.deepcopy(net)
    same_attributes(copied, net)
    assert copied.loss_weights == {"loss": 1.0} and copied.phase == "TEST"
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(copied.parameters(), net.parameters()))
    same_outputs(copied, net)


def test_torch_save_and_load_of_a_whole_compiled_resnet50():
    net = resnet50()
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    same_attributes(loaded, net)
    same_outputs(loaded, net)


@pytest.mark.parametrize("path", ["nets/lenet5_1998.yaml", "nets/lenet.yaml", "nets/googlenet.yaml"])
def test_every_module_of_a_net_pickles(path):
    """Scaled TanH, RBF and friends are plain modules (no lambdas), so a whole net pickles."""
    net = netdef.load_net(ROOT / path, "TRAIN")
    loaded = torch.load(io.BytesIO(_saved(net)), weights_only=False)
    same_attributes(loaded, net)


def _saved(net) -> bytes:
    buffer = io.BytesIO()
    torch.save(net, buffer)
    return buffer.getvalue()


def test_distributed_data_parallel_wraps_a_compiled_net(tmp_path):
    """One gloo process: DDP takes the net as it is, and the net's attributes stay reachable on .module."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        net = netdef.load_net(ROOT / "nets/lenet.yaml", "TRAIN", input_shapes={"data": (4, 1, 28, 28), "label": (4,)})
        wrapped = torch.nn.parallel.DistributedDataParallel(net)
        feed = {"data": torch.randn(4, 1, 28, 28), "label": torch.randint(0, 10, (4,))}
        loss = netdef.build.weighted_loss(wrapped(**feed), wrapped.module.loss_weights)
        loss.backward()
        assert wrapped.module.param_lr == net.param_lr
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()
