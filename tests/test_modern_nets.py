"""The modern nets in nets/ — MobileNetV2, EfficientNet-B0, ViT-Tiny: their published parameter counts from
`netdef summary`, twins (plain PyTorch modules written here from the papers with torch.nn's own BatchNorm2d,
LayerNorm and MultiheadAttention, given the same weights by layer name) that agree to 1e-5, and one training
step of each shipped file through the netdef solver at a small input size."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netdef
from netdef.train.config import load_solver
from netdef.train.solver import Solver

from conftest import ROOT

NETS = ROOT / "nets"
PARAMS = {"mobilenet_v2": 3_504_872, "efficientnet_b0": 5_288_548, "vit_tiny": 5_717_416}  # torchvision's, timm's


def test_parameter_counts_are_the_published_ones(netdef_cli):
    for name, expected in PARAMS.items():
        for phase, stages in (("TRAIN", ()), ("TEST", ()), ("TEST", ("deploy",))):
            info = netdef.summarize(NETS / f"{name}.yaml", phase=phase, stages=stages)
            assert info.total_params == info.trainable_params == expected, (name, phase, stages)
        status, out, err = netdef_cli("summary", NETS / f"{name}.yaml", "--phase", "TEST", "--json")
        assert status == 0, err
        assert json.loads(out)["total_params"] == expected
    deploy = netdef.summarize(NETS / "vit_tiny.yaml", phase="TEST", stages=("deploy",))
    assert deploy.graph.inputs == ["data"] and deploy.graph.outputs == ["prob"]


# ---------------------------------------------------------------- twins

# (expansion, kernel, stride, channels in, channels out, units) per stage
MOBILENET_V2 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 3, 2, 24, 32, 3), (6, 3, 2, 32, 64, 4),
                (6, 3, 1, 64, 96, 3), (6, 3, 2, 96, 160, 3), (6, 3, 1, 160, 320, 1)]  # Sandler et al., Table 2
EFFICIENTNET_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                   (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]  # Tan and Le, Table 1


class MobileTwin(nn.Module):
    """Inverted residual units: 1x1 expansion, depthwise k x k, (squeeze-and-excitation,) linear 1x1
    projection, identity shortcut when the shape stays; convolutions without bias, each followed by an affine
    BatchNorm2d; activation ReLU6 (MobileNetV2) or SiLU with SE gates (EfficientNet-B0). Submodules are
    named as the net's layers, so that weights copy by name."""

    def __init__(self, stages, activation, se, eps):
        super().__init__()
        self.activation, self.eps, self.units = activation, eps, []
        self.conv_bn("conv1", 3, 32, 3, 2)
        for stage, (expand, k, stride, cin, cout, units) in enumerate(stages, 1):
            for i in range(1, units + 1):
                name, c_in = f"block{stage}_{i}", cin if i == 1 else cout
                hidden = c_in * expand
                if expand != 1:
                    self.conv_bn(f"{name}_expand", c_in, hidden, 1, 1)
                self.conv_bn(f"{name}_dw", hidden, hidden, k, stride if i == 1 else 1, groups=hidden)
                if se:
                    self.add_module(f"{name}_se_reduce", nn.Conv2d(hidden, max(1, c_in // 4), 1))
                    self.add_module(f"{name}_se_expand", nn.Conv2d(max(1, c_in // 4), hidden, 1))
                self.conv_bn(f"{name}_project", hidden, cout, 1, 1)
                self.units.append((name, expand != 1, se, (stride if i == 1 else 1) == 1 and c_in == cout))
        self.conv_bn("conv2", 320, 1280, 1, 1)
        self.add_module("fc", nn.Linear(1280, 1000))

    def conv_bn(self, name, cin, cout, k, stride, groups=1):
        self.add_module(name, nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(cout, eps=self.eps))

    def apply_conv(self, name, x, act=True):
        x = self.get_submodule(f"{name}_bn")(self.get_submodule(name)(x))
        return self.activation(x) if act else x

    def forward(self, x):
        x = self.apply_conv("conv1", x)
        for name, expands, se, residual in self.units:
            y = self.apply_conv(f"{name}_expand", x) if expands else x
            y = self.apply_conv(f"{name}_dw", y)
            if se:
                gate = self.get_submodule(f"{name}_se_reduce")(y.mean((2, 3), keepdim=True))
                y = y * torch.sigmoid(self.get_submodule(f"{name}_se_expand")(F.silu(gate)))
            y = self.apply_conv(f"{name}_project", y, act=False)
            x = x + y if residual else y
        return self.get_submodule("fc")(self.apply_conv("conv2", x).mean((2, 3)))


class ViTTwin(nn.Module):
    """Dosovitskiy et al.'s ViT as timm writes it: patch convolution, class token, position embedding,
    pre-norm blocks of nn.MultiheadAttention and a GELU MLP, final LayerNorm, the class token classified."""

    def __init__(self, tokens, width=192, depth=12, heads=3, mlp=768, patch=16):
        super().__init__()
        self.depth = depth
        self.add_module("patch_embed", nn.Conv2d(3, width, patch, patch))
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        for i in range(1, depth + 1):
            self.add_module(f"block{i}_norm1", nn.LayerNorm(width, eps=1e-6))
            self.add_module(f"block{i}_attn", nn.MultiheadAttention(width, heads, batch_first=True))
            self.add_module(f"block{i}_norm2", nn.LayerNorm(width, eps=1e-6))
            self.add_module(f"block{i}_fc1", nn.Linear(width, mlp))
            self.add_module(f"block{i}_fc2", nn.Linear(mlp, width))
        self.add_module("norm", nn.LayerNorm(width, eps=1e-6))
        self.add_module("head", nn.Linear(width, 1000))

    def forward(self, x):
        x = self.get_submodule("patch_embed")(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for i in range(1, self.depth + 1):
            y = self.get_submodule(f"block{i}_norm1")(x)
            x = x + self.get_submodule(f"block{i}_attn")(y, y, y, need_weights=False)[0]
            x = x + self.get_submodule(f"block{i}_fc2")(F.gelu(self.get_submodule(f"block{i}_fc1")(self.get_submodule(f"block{i}_norm2")(x))))
        return self.get_submodule("head")(self.get_submodule("norm")(x)[:, 0])


# netdef's blob names where the twin's torch.nn modules name them otherwise
TWIN_KEYS = {"mean": "running_mean", "variance": "running_var", "out_proj_weight": "out_proj.weight",
             "out_proj_bias": "out_proj.bias"}


def twin_state(net, twin) -> dict:
    """The compiled net's blobs under the twin's state_dict keys: `layer.blob`, BatchNorm's statistics
    divided by Caffe's scale factor, and a Bias layer's blob (class token, position embedding) as the twin's
    parameter of the layer's name."""
    expected, state = twin.state_dict(), {}
    blobs = net.state_dict()
    for key, value in blobs.items():
        layer, blob = key.rsplit(".", 1)
        if blob == "scale_factor":
            continue
        if blob in ("mean", "variance"):
            value = value / blobs[f"{layer}.scale_factor"]
        target = f"{layer}.{TWIN_KEYS.get(blob, blob)}"
        target = target if target in expected else layer
        state[target] = value.reshape(expected[target].shape)
    return state | {key: value for key, value in expected.items() if key.endswith("num_batches_tracked")}


def randomize(net, generator):
    """Vary what the fillers leave constant: biases, BatchNorm's and LayerNorm's scales, and BatchNorm's
    statistics (stored as Caffe stores them: sums and a scale factor)."""
    with torch.no_grad():
        for key, blob in net.state_dict().items():
            noise = torch.randn(blob.shape, generator=generator)
            if key.endswith("scale_factor"):
                blob.fill_(2.0)
            elif key.endswith("variance"):
                blob.copy_(2.0 * (0.5 + noise.abs()))
            elif blob.dim() == 1 or key.endswith(("class_token.bias", "pos_embed.bias")):
                blob.copy_(0.1 * noise + (1.0 if key.endswith("weight") else 0.0))


TWINS = [
    ("mobilenet_v2", lambda tokens: MobileTwin(MOBILENET_V2, F.relu6, se=False, eps=1e-5), 64, "fc"),
    ("efficientnet_b0", lambda tokens: MobileTwin(EFFICIENTNET_B0, F.silu, se=True, eps=1e-3), 64, "fc"),
    ("vit_tiny", lambda tokens: ViTTwin(tokens), 64, "head"),  # 4 x 4 patches + the class token
]


LABEL = 3


def scores_and_loss(net, layer, image):
    """The class scores (the output of the classifier `layer`) and the loss of the compiled net for LABEL."""
    captured = {}
    hook = net.get_submodule(layer).register_forward_hook(lambda module, args, out: captured.setdefault("scores", out))
    with torch.no_grad():
        outputs = net(data=image, label=torch.tensor([float(LABEL)]))
    hook.remove()
    (loss,) = net.loss_weights
    return captured["scores"], outputs[loss]


@pytest.mark.parametrize("name, make_twin, size, scores", TWINS, ids=[t[0] for t in TWINS])
def test_compiled_net_matches_its_twin(name, make_twin, size, scores):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    shape = (1, 3, size, size)
    net = netdef.load_net(NETS / f"{name}.yaml", phase="TEST", input_shapes={"data": shape, "label": (1,)})
    randomize(net, generator)
    net.eval()
    twin = make_twin((size // 16) ** 2 + 1).eval()
    twin.load_state_dict(twin_state(net, twin))  # strict: every twin blob comes from the net, and only from it
    info = netdef.summarize(NETS / f"{name}.yaml", phase="TEST", input_shapes={"data": shape, "label": (1,)})
    assert sum(p.numel() for p in twin.parameters()) == info.total_params

    image = torch.randn(shape, generator=generator)
    got, loss = scores_and_loss(net, scores, image)
    with torch.no_grad():
        expected = twin(image)
    assert got.shape == expected.shape == (1, 1000) and expected.std() > 1e-3  # scores that vary: a real comparison
    relative = ((got - expected).norm() / expected.norm()).item()
    assert relative < 1e-5, relative
    torch.testing.assert_close(loss, F.cross_entropy(expected, torch.tensor([LABEL])), rtol=1e-5, atol=0)


# ---------------------------------------------------------------- one training step through the solver

SMALL = {"mobilenet_v2": ("crop: 224, train_batch: 96", "crop: 64, train_batch: 2"),
         "efficientnet_b0": ("crop: 224, train_batch: 64", "crop: 64, train_batch: 2"),
         "vit_tiny": ("crop: 224, train_batch: 64", "crop: 32, train_batch: 2")}


def small_copy(tmp_path, name):
    """The shipped net and its block libraries in tmp_path, its TRAIN input made small (batch 2)."""
    (tmp_path / "blocks").mkdir(exist_ok=True)
    for library in (NETS / "blocks").glob("*.yaml"):
        (tmp_path / "blocks" / library.name).write_text(library.read_text())
    text = (NETS / f"{name}.yaml").read_text()
    large, small = SMALL[name]
    assert large in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(large, small))
    return path


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_training_step_through_the_solver(tmp_path, name):
    net_file = small_copy(tmp_path, name)
    solver_file = tmp_path / "solver.yaml"
    solver_file.write_text(f"train_net: {net_file.name}\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 4.0e-5\n"
                           "max_iter: 1\nrandom_seed: 3\ndevice: cpu\nsnapshot_prefix: snaps/step\nlog_dir: runs\n")
    solver = Solver(load_solver(solver_file))
    net = solver.train.net
    before = {key: blob.detach().clone() for key, blob in net.state_dict().items()}
    solver.step(1)
    assert solver.iter == 1
    after = net.state_dict()
    learnt = {key for key, blob in net.named_parameters() if blob.requires_grad}
    changed = {key for key in learnt if not torch.equal(before[key], after[key])}
    assert changed == learnt, f"not updated: {sorted(learnt - changed)[:5]}"
    statistics = [key for key in after if key.endswith("scale_factor")]
    assert all(after[key].item() == 1.0 for key in statistics)  # BatchNorm kept its first batch's statistics
    loss = solver.state.loss.value()
    assert math.isfinite(loss) and loss > math.log(1000) / 2  # about ln 1000 for untrained scores
