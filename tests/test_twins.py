"""Compiled nets against twins: plain PyTorch modules of the same architecture, written here by hand from the
papers and reference models (torchvision is not used), given the same weights (copied by layer name). In
TEST phase at batch 1 the class scores must agree to 1e-5 (relative). float32 is enough: the twins compute
the same sums in nearly the same order, and float64 would cost VGG-16 ten times as long."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netdef

NETS = Path(__file__).resolve().parent.parent / "nets"


def lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's ACROSS_CHANNELS LRN written out: x / (k + alpha/size * sum of squares over size channels)^beta."""
    squares = F.pad(x * x, (0, 0, 0, 0, size // 2, size // 2))
    window = sum(squares[:, i:i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def max_pool(x, kernel, stride, pad=0):
    return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)  # Caffe rounds pooled sizes up


class Twin(nn.Module):
    """Submodules are registered under the net's layer names, so weights copy by name."""

    def layer(self, name, module):
        self.add_module(name, module)
        return module

    def __getitem__(self, name):
        return getattr(self, name)


class AlexNet(Twin):
    """Krizhevsky et al. 2012 as BVLC's bvlc_alexnet: groups of 2 on conv2, conv4, conv5."""

    def __init__(self):
        super().__init__()
        for name, cin, cout, k, s, p, g in [("conv1", 3, 96, 11, 4, 0, 1), ("conv2", 96, 256, 5, 1, 2, 2),
                                            ("conv3", 256, 384, 3, 1, 1, 1), ("conv4", 384, 384, 3, 1, 1, 2),
                                            ("conv5", 384, 256, 3, 1, 1, 2)]:
            self.layer(name, nn.Conv2d(cin, cout, k, s, p, groups=g))
        for name, cin, cout in [("fc6", 9216, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)]:
            self.layer(name, nn.Linear(cin, cout))

    def forward(self, x):
        x = max_pool(lrn(F.relu(self["conv1"](x))), 3, 2)
        x = max_pool(lrn(F.relu(self["conv2"](x))), 3, 2)
        x = F.relu(self["conv5"](F.relu(self["conv4"](F.relu(self["conv3"](x))))))
        x = max_pool(x, 3, 2).flatten(1)
        return self["fc8"](F.relu(self["fc7"](F.relu(self["fc6"](x)))))


class VGG16(Twin):
    """Simonyan and Zisserman 2015, configuration D."""
    STAGES = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]

    def __init__(self):
        super().__init__()
        cin = 3
        for stage, (cout, convs) in enumerate(self.STAGES, 1):
            for i in range(1, convs + 1):
                self.layer(f"conv{stage}_{i}", nn.Conv2d(cin, cout, 3, 1, 1))
                cin = cout
        for name, a, b in [("fc6", 512 * 7 * 7, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)]:
            self.layer(name, nn.Linear(a, b))

    def forward(self, x):
        for stage, (_, convs) in enumerate(self.STAGES, 1):
            for i in range(1, convs + 1):
                x = F.relu(self[f"conv{stage}_{i}"](x))
            x = F.max_pool2d(x, 2, 2)
        return self["fc8"](F.relu(self["fc7"](F.relu(self["fc6"](x.flatten(1))))))


class GoogLeNet(Twin):
    """Szegedy et al. 2015, Table 1, as BVLC's bvlc_googlenet (TEST: no auxiliary classifiers)."""
    INCEPTION = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
                 "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
                 "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
                 "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
                 "5b": (832, 384, 192, 384, 48, 128, 128)}

    def __init__(self):
        super().__init__()
        self.layer("conv1/7x7_s2", nn.Conv2d(3, 64, 7, 2, 3))
        self.layer("conv2/3x3_reduce", nn.Conv2d(64, 64, 1))
        self.layer("conv2/3x3", nn.Conv2d(64, 192, 3, 1, 1))
        for tag, (cin, c1, r3, c3, r5, c5, pp) in self.INCEPTION.items():
            prefix = f"inception_{tag}/"
            self.layer(prefix + "1x1", nn.Conv2d(cin, c1, 1))
            self.layer(prefix + "3x3_reduce", nn.Conv2d(cin, r3, 1))
            self.layer(prefix + "3x3", nn.Conv2d(r3, c3, 3, 1, 1))
            self.layer(prefix + "5x5_reduce", nn.Conv2d(cin, r5, 1))
            self.layer(prefix + "5x5", nn.Conv2d(r5, c5, 5, 1, 2))
            self.layer(prefix + "pool_proj", nn.Conv2d(cin, pp, 1))
        self.layer("loss3/classifier", nn.Linear(1024, 1000))

    def inception(self, tag, x):
        def conv(name, inp):
            return F.relu(self[f"inception_{tag}/{name}"](inp))
        return torch.cat([conv("1x1", x), conv("3x3", conv("3x3_reduce", x)), conv("5x5", conv("5x5_reduce", x)),
                          conv("pool_proj", max_pool(x, 3, 1, 1))], 1)

    def forward(self, x):
        x = lrn(max_pool(F.relu(self["conv1/7x7_s2"](x)), 3, 2))
        x = F.relu(self["conv2/3x3"](F.relu(self["conv2/3x3_reduce"](x))))
        x = max_pool(lrn(x), 3, 2)
        for tag in self.INCEPTION:
            x = self.inception(tag, x)
            if tag in ("3b", "4e"):
                x = max_pool(x, 3, 2)
        x = F.avg_pool2d(x, 7, 1)
        return self["loss3/classifier"](x.flatten(1))


class ConvBN(nn.Module):
    """Convolution without bias, batch normalisation with stored statistics, per-channel scale and bias."""

    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, affine=False)
        self.gamma = nn.Parameter(torch.ones(cout))
        self.beta = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return self.bn(self.conv(x)) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class ResNet50(Twin):
    """He et al. 2016, Table 1, bottleneck units [3, 4, 6, 3], stride on the first 1x1 (Kaiming He's models)."""
    STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]

    def __init__(self):
        super().__init__()
        self.layer("conv1", ConvBN(3, 64, 7, 2))
        self.units = []
        cin = 64
        for stage, (width, units, stride) in enumerate(self.STAGES, 2):
            for i in range(units):
                name = f"res{stage}{chr(ord('a') + i)}"
                s = stride if i == 0 else 1
                self.layer(f"{name}_branch2a", ConvBN(cin, width, 1, s))
                self.layer(f"{name}_branch2b", ConvBN(width, width, 3, 1))
                self.layer(f"{name}_branch2c", ConvBN(width, 4 * width, 1, 1))
                if i == 0:
                    self.layer(f"{name}_branch1", ConvBN(cin, 4 * width, 1, s))
                self.units.append((name, i == 0))
                cin = 4 * width
        self.layer("fc1000", nn.Linear(2048, 1000))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self["conv1"](x)), 3, 2, ceil_mode=True)
        for name, projects in self.units:
            branch = F.relu(self[f"{name}_branch2a"](x))
            branch = self[f"{name}_branch2c"](F.relu(self[f"{name}_branch2b"](branch)))
            shortcut = self[f"{name}_branch1"](x) if projects else x
            x = F.relu(shortcut + branch)
        return self["fc1000"](x.mean((2, 3)))


def copy_weights(net, twin):
    """Each compiled layer's blobs into the twin's submodule of the same name. ResNet's conv/bn/scale
    triple of one layer (res2a_branch2a, bn2a_branch2a, scale2a_branch2a) fills one ConvBN."""
    copied = 0
    for name, module in net.named_children():
        blobs = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
        if not blobs:
            continue
        target, kind = _twin_target(twin, name)
        with torch.no_grad():
            if kind == "plain":
                target.weight.copy_(blobs["weight"].reshape(target.weight.shape))
                if target.bias is not None:
                    target.bias.copy_(blobs["bias"])
            elif kind == "conv":
                target.conv.weight.copy_(blobs["weight"])
            elif kind == "bn":
                factor = 1 / blobs["scale_factor"]
                target.bn.running_mean.copy_(blobs["mean"] * factor)
                target.bn.running_var.copy_(blobs["variance"] * factor)
            else:
                target.gamma.copy_(blobs["weight"])
                target.beta.copy_(blobs["bias"])
        copied += 1
    return copied


def _twin_target(twin, name):
    target = getattr(twin, name, None)
    if isinstance(target, ConvBN):
        return target, "conv"
    if target is not None:
        return target, "plain"
    for prefix, kind in (("bn", "bn"), ("scale", "scale")):
        if name.startswith(prefix):
            suffix = name[len(prefix):]
            owner = "conv1" if suffix == "_conv1" else "res" + suffix
            return getattr(twin, owner), kind
    raise KeyError(f"the twin has no layer for '{name}'")


def randomize(net, generator):
    """Weights the fillers would not vary enough: biases, Scale's gamma and beta, BatchNorm statistics
    (stored as Caffe stores them: sums and a scale factor)."""
    with torch.no_grad():
        for name, module in net.named_children():
            for blob_name, blob in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                noise = torch.randn(blob.shape, generator=generator, dtype=blob.dtype)
                if blob_name == "scale_factor":
                    blob.fill_(2.0)
                elif blob_name == "variance":
                    blob.copy_(2.0 * (0.5 + noise.abs()))
                elif blob_name == "mean":
                    blob.copy_(0.2 * noise)
                elif blob_name == "bias" or (blob_name == "weight" and blob.dim() == 1):
                    blob.copy_(0.1 * noise + (1.0 if blob_name == "weight" else 0.0))


TWINS = [("alexnet", AlexNet, (1, 3, 227, 227), "fc8"),
         ("vgg16", VGG16, (1, 3, 224, 224), "fc8"),
         ("googlenet", GoogLeNet, (1, 3, 224, 224), "loss3/classifier"),
         ("resnet50", ResNet50, (1, 3, 224, 224), "fc1000")]


@pytest.mark.parametrize("name, twin_class, shape, scores", TWINS, ids=[t[0] for t in TWINS])
def test_compiled_net_matches_its_twin(name, twin_class, shape, scores):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = netdef.load_net(NETS / f"{name}.yaml", phase="TEST", input_shapes={"data": shape, "label": shape[:1]})
    randomize(net, generator)
    net.eval()
    with torch.device("meta"):  # no time spent initialising weights that copy_weights overwrites
        twin = twin_class()
    twin = twin.to_empty(device="cpu").eval()
    assert copy_weights(net, twin) == len([m for m in net.children() if list(m.parameters()) or list(m.buffers())])
    assert sum(p.numel() for p in twin.parameters()) == netdef.summarize(NETS / f"{name}.yaml", phase="TEST").total_params

    captured = {}
    net.get_submodule(scores).register_forward_hook(lambda module, args, out: captured.setdefault("scores", out))
    image = torch.randn(shape, generator=generator) * 50
    label = torch.tensor([3.0])
    with torch.no_grad():
        outputs = net(data=image, label=label)
        expected = twin(image)
    got = captured["scores"]
    assert got.shape == expected.shape == (1, 1000)
    assert expected.abs().max() > 0
    assert ((got - expected).norm() / expected.norm()).item() < 1e-5
    (loss,) = net.loss_weights
    assert torch.allclose(outputs[loss], F.cross_entropy(expected, label.long()), rtol=1e-5)
