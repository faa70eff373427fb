"""Caffe's update rules: CaffeUpdater against hand arithmetic, a plain-Python float64 replay of Caffe's
ApplyUpdate, torch.optim where the two agree, and bitwise-exact resume."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

import netdef
from netdef.errors import NetdefError
from netdef.train.config import SolverConfig
from netdef.train.lr_policy import learning_rate
from netdef.train.updates import HISTORY_SETS, CaffeUpdater

ROOT = Path(__file__).resolve().parent.parent
TYPES = list(HISTORY_SETS)


def solver(**fields):
    """A SolverConfig made in Python (not checked): Caffe's defaults and `fields`."""
    return SolverConfig(**fields)


def scalar_steps(values, grads_and_rates, weight=1.0):
    """Weights of a one-element parameter after each of the given (gradient, rate) updates."""
    param = torch.nn.Parameter(torch.tensor([weight], dtype=torch.float64))
    updater = CaffeUpdater([("w", param, 1.0, 1.0)], values)
    weights = []
    for iteration, (grad, rate) in enumerate(grads_and_rates):
        param.grad = torch.tensor([grad], dtype=torch.float64)
        updater.step(rate, iteration)
        weights.append(param.item())
    return weights


# One parameter w = 1, gradient 0.5: each expected value is the rule of caffe.md §c.4 worked by hand.
HAND = [
    # SGD, momentum 0.9, rates 0.1 then 0.2: v = 0.05, w = 0.95; v = 0.9*0.05 + 0.2*0.5 = 0.145, w = 0.805
    ("SGD", {"momentum": 0.9}, [0.95, 0.805]),
    # Nesterov: update = 1.9*0.05 = 0.095; then 1.9*0.145 - 0.9*0.05 = 0.2305
    ("Nesterov", {"momentum": 0.9}, [0.905, 0.905 - 0.2305]),
    # AdaGrad, delta 0, rate 0.1 then 0.2: h = 0.25, step 0.1*0.5/0.5; h = 0.5, step 0.2*0.5/sqrt(0.5)
    ("AdaGrad", {"delta": 0.0}, [0.9, 0.9 - 0.2 * 0.5 / math.sqrt(0.5)]),
    # RMSProp, decay 0.9: h = 0.025; h = 0.9*0.025 + 0.1*0.25 = 0.0475
    ("RMSProp", {"delta": 0.0, "rms_decay": 0.9},
     [1 - 0.1 * 0.5 / math.sqrt(0.025), 1 - 0.1 * 0.5 / math.sqrt(0.025) - 0.2 * 0.5 / math.sqrt(0.0475)]),
    # AdaDelta, momentum 0.9, delta 1e-6: h_g = 0.025, u = 0.5 sqrt(1e-6 / (0.025 + 1e-6)), w -= rate*u
    ("AdaDelta", {"momentum": 0.9, "delta": 1e-6}, [1 - 0.1 * 0.5 * math.sqrt(1e-6 / (0.025 + 1e-6)), None]),
    # Adam: m = 0.05, v = 0.00025, correction sqrt(1 - 0.999) / (1 - 0.9), epsilon after the plain sqrt(v)
    ("Adam", {"momentum": 0.9, "momentum2": 0.999},
     [1 - 0.1 * math.sqrt(0.001) / 0.1 * 0.05 / (math.sqrt(0.00025) + 1e-8), None]),
]


@pytest.mark.parametrize("solver_type, fields, expected", HAND, ids=[row[0] for row in HAND])
def test_hand_computed_steps(solver_type, fields, expected):
    weights = scalar_steps(solver(type=solver_type, **fields), [(0.5, 0.1), (0.5, 0.2)])
    for got, want in zip(weights, expected):
        if want is not None:
            assert got == pytest.approx(want, rel=1e-12)


def reference_steps(values, params, grads_per_step, rates):
    """Caffe's ApplyUpdate replayed element by element in Python floats.

    params: name -> (weights, lr_mult, decay_mult) for the learnable parameters. Returns the weights after
    each step."""
    weights = {name: list(w) for name, (w, _, _) in params.items()}
    first = {name: [0.0] * len(w) for name, w in weights.items()}
    second = {name: [0.0] * len(w) for name, w in weights.items()}
    momentum, delta = values.momentum, values.delta
    history = []
    for step, (grads, rate) in enumerate(zip(grads_per_step, rates)):
        grads = {name: list(grads[name]) for name in params}
        norm = math.sqrt(sum(g * g for gs in grads.values() for g in gs))
        if 0 <= values.clip_gradients < norm:
            grads = {name: [g * values.clip_gradients / norm for g in gs] for name, gs in grads.items()}
        for name, (_, lr_mult, decay_mult) in params.items():
            w, h, h2 = weights[name], first[name], second[name]
            local_rate, local_decay = rate * lr_mult, values.weight_decay * decay_mult
            for i in range(len(w)):
                g = grads[name][i] / values.iter_size
                if values.regularization_type == "L2":
                    g += local_decay * w[i]
                else:
                    g += local_decay * ((w[i] > 0) - (w[i] < 0))
                kind = values.type
                if kind == "SGD":
                    h[i] = momentum * h[i] + local_rate * g
                    w[i] -= h[i]
                elif kind == "Nesterov":
                    previous = h[i]
                    h[i] = momentum * h[i] + local_rate * g
                    w[i] -= (1 + momentum) * h[i] - momentum * previous
                elif kind == "AdaGrad":
                    h[i] += g * g
                    w[i] -= local_rate * g / (math.sqrt(h[i]) + delta)
                elif kind == "RMSProp":
                    h[i] = values.rms_decay * h[i] + (1 - values.rms_decay) * g * g
                    w[i] -= local_rate * g / (math.sqrt(h[i]) + delta)
                elif kind == "AdaDelta":
                    h[i] = momentum * h[i] + (1 - momentum) * g * g
                    u = g * math.sqrt((h2[i] + delta) / (h[i] + delta))
                    h2[i] = momentum * h2[i] + (1 - momentum) * u * u
                    w[i] -= local_rate * u
                else:  # Adam, t = iteration + 1
                    beta1, beta2, t = momentum, values.momentum2, step + 1
                    h[i] = beta1 * h[i] + (1 - beta1) * g
                    h2[i] = beta2 * h2[i] + (1 - beta2) * g * g
                    correction = math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                    w[i] -= local_rate * correction * h[i] / (math.sqrt(h2[i]) + delta)
        history.append({name: list(w) for name, w in weights.items()})
    return history


TINY = {"a": ([0.5, -1.0, 2.0], 1.0, 1.0), "b": ([0.3, 0.0, -0.7, 1.2], 2.0, 0.5)}
# Gradients summed over iter_size = 2 passes. Step 1's global norm sqrt(19.16) = 4.38 is clipped to 3;
# step 2's sqrt(8.15) = 2.85 is not.
TINY_GRADS = [{"a": [0.8, -2.4, 1.6], "b": [1.0, -0.4, 3.0, 0.2]},
              {"a": [-0.2, 0.6, 1.0], "b": [0.5, 0.5, -1.5, 2.0]}]
TINY_RATES = [0.1, 0.05]  # a changing rate shows where Caffe keeps it (inside the history)
TYPE_FIELDS = {"SGD": {"momentum": 0.9}, "Nesterov": {"momentum": 0.9}, "AdaGrad": {},
               "RMSProp": {"rms_decay": 0.98}, "AdaDelta": {"momentum": 0.95, "delta": 1e-6},
               "Adam": {"momentum": 0.9, "momentum2": 0.999}}


@pytest.mark.parametrize("regularization", ["L2", "L1"])
@pytest.mark.parametrize("solver_type", TYPES)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_two_steps_match_caffe_replay(solver_type, regularization, dtype, tolerance):
    values = solver(type=solver_type, regularization_type=regularization, weight_decay=0.1, iter_size=2,
                    clip_gradients=3.0, **TYPE_FIELDS[solver_type])
    params = {name: torch.nn.Parameter(torch.tensor(w, dtype=dtype)) for name, (w, _, _) in TINY.items()}
    frozen = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=dtype), requires_grad=False)
    named = [(name, params[name], lr_mult, decay_mult) for name, (_, lr_mult, decay_mult) in TINY.items()]
    named += [("frozen", frozen, 0.0, 1.0), ("a_shared", params["a"], 5.0, 5.0)]  # skipped; 'a' once
    updater = CaffeUpdater(named, values)
    expected = reference_steps(values, TINY, TINY_GRADS, TINY_RATES)
    for iteration, (grads, rate, want) in enumerate(zip(TINY_GRADS, TINY_RATES, expected)):
        for name, param in params.items():
            param.grad = torch.tensor(grads[name], dtype=dtype)
        updater.step(rate, iteration)
        for name, param in params.items():
            assert param.tolist() == pytest.approx(want[name], rel=tolerance, abs=tolerance), name
    assert frozen.tolist() == [1.0, 2.0]
    assert "iteration" not in updater.state_dict()  # the caller counts the iterations (TrainState)
    assert updater.last_grad_norm.item() == pytest.approx(math.sqrt(8.15), rel=1e-6)


def test_missing_gradient_counts_as_zero():
    """Caffe clears every diff, so a parameter no loss reaches still decays and keeps its momentum."""
    values = solver(momentum=0.9, weight_decay=0.1)
    assert scalar_steps(values, [(0.5, 0.1), (0.0, 0.1)]) == pytest.approx(
        [1 - 0.1 * 0.6, 1 - 0.06 - (0.9 * 0.06 + 0.1 * 0.1 * 0.94)], rel=1e-12)
    param = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    updater = CaffeUpdater([("w", param, 1.0, 1.0)], values)
    param.grad = torch.tensor([0.5], dtype=torch.float64)
    updater.step(0.1, 0)
    updater.zero_grad()
    assert param.grad is None
    updater.step(0.1, 1)
    assert param.item() == pytest.approx(1 - 0.06 - (0.9 * 0.06 + 0.1 * 0.1 * 0.94), rel=1e-12)


def test_clipping_zero_gradients_gives_no_nan():
    param = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    updater = CaffeUpdater([("w", param, 1.0, 1.0)], solver(clip_gradients=0.0, weight_decay=0.5))
    param.grad = torch.zeros(2)
    updater.step(0.1, 0)
    assert param.tolist() == pytest.approx([0.95, -0.95])


# Where Caffe and torch.optim agree: constant rate, lr_mult = decay_mult = 1, L2, no clipping.
def torch_optimizer(values, params, rate):
    momentum, delta, decay = values.momentum, values.delta, values.weight_decay
    return {"SGD": lambda: torch.optim.SGD(params, lr=rate, momentum=momentum, weight_decay=decay),
            "Nesterov": lambda: torch.optim.SGD(params, lr=rate, momentum=momentum, weight_decay=decay,
                                                nesterov=True),
            "AdaGrad": lambda: torch.optim.Adagrad(params, lr=rate, weight_decay=decay, eps=delta),
            "RMSProp": lambda: torch.optim.RMSprop(params, lr=rate, alpha=values.rms_decay, weight_decay=decay,
                                                   eps=delta),
            "AdaDelta": lambda: torch.optim.Adadelta(params, lr=rate, rho=momentum, weight_decay=decay, eps=delta),
            "Adam": lambda: torch.optim.Adam(params, lr=rate, betas=(momentum, values.momentum2),
                                             weight_decay=decay, eps=delta),
            }[values.type]()


def run_both(values, rates, grad_scale=1.0):
    """Weights after the same random gradients through CaffeUpdater and the matching torch.optim."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(50, generator=generator, dtype=torch.float64)
    grads = [torch.randn(50, generator=generator, dtype=torch.float64) * grad_scale for _ in rates]
    caffe_param, torch_param = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    updater = CaffeUpdater([("w", caffe_param, 1.0, 1.0)], values)
    optimizer = torch_optimizer(values, [torch_param], rates[0])
    for iteration, (grad, rate) in enumerate(zip(grads, rates)):
        caffe_param.grad, torch_param.grad = grad.clone(), grad.clone()
        updater.step(rate, iteration)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.step()
    return caffe_param.detach(), torch_param.detach()


@pytest.mark.parametrize("solver_type", TYPES)
def test_constant_rate_agrees_with_torch_optim(solver_type):
    fields = dict(TYPE_FIELDS[solver_type])
    if solver_type == "Adam":
        fields["delta"] = 0.0  # the one place the formulas differ at a constant rate: where epsilon goes
    caffe, reference = run_both(solver(type=solver_type, weight_decay=0.01, **fields), [0.05] * 5)
    torch.testing.assert_close(caffe, reference, rtol=1e-10, atol=1e-12)


def test_where_caffe_and_torch_optim_differ():
    # SGD: Caffe's velocity holds lr * g, so the old velocity keeps its old rate after a change.
    caffe, reference = run_both(solver(momentum=0.9, weight_decay=0.01), [0.1, 0.1, 0.01, 0.01])
    assert (caffe - reference).abs().max() > 1e-3
    # Adam: Caffe adds delta to sqrt(v), torch adds eps to sqrt(v / (1 - beta2^t)); tiny gradients show it.
    values = solver(type="Adam", momentum=0.9, momentum2=0.999, delta=1e-8)
    caffe, reference = run_both(values, [0.01] * 3, grad_scale=1e-7)
    assert (caffe - reference).abs().max() > 0.01  # of about 0.03 travelled in 3 steps of rate 0.01


# Snapshots: a resumed run continues bitwise identically.

def lenet_with_updater(values):
    torch.manual_seed(1)
    net = netdef.load_net(ROOT / "nets" / "lenet.yaml", phase="TRAIN")
    return net, CaffeUpdater.from_net(net, values)


def fake_gradients(net, step):
    generator = torch.Generator().manual_seed(100 + step)
    for _, param in net.named_parameters():
        if param.requires_grad:
            param.grad = torch.randn(param.shape, generator=generator) * 0.1


@pytest.mark.parametrize("solver_type", TYPES)
def test_state_dict_round_trip_is_bitwise(tmp_path, solver_type):
    values = solver(type=solver_type, weight_decay=5e-4, clip_gradients=10.0, iter_size=2,
                    lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75, **TYPE_FIELDS[solver_type])
    net, updater = lenet_with_updater(values)
    snapshot = tmp_path / "snap.pt"
    for step in range(4):
        if step == 2:
            torch.save({"net": net.state_dict(), "solver": updater.state_dict(), "iteration": step}, snapshot)
        fake_gradients(net, step)
        updater.step(learning_rate(values, step), step)
    resumed_net, resumed = lenet_with_updater(values)
    saved = torch.load(snapshot)
    resumed_net.load_state_dict(saved["net"])
    resumed.load_state_dict(saved["solver"])
    assert saved["iteration"] == 2  # the iteration is the caller's (a snapshot's TrainState), not the updater's
    for step in range(saved["iteration"], 4):
        fake_gradients(resumed_net, step)
        resumed.step(learning_rate(values, step), step)
    for (name, param), (_, other) in zip(net.named_parameters(), resumed_net.named_parameters()):
        assert torch.equal(param, other), name
    for set_name, tensors in updater.state_dict()["history"].items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, resumed.state_dict()["history"][set_name][name]), (set_name, name)


def test_state_dict_holds_copies_named_by_parameter():
    net, updater = lenet_with_updater(solver(type="AdaDelta", momentum=0.95))
    state = updater.state_dict()
    assert sorted(state["history"]) == ["history", "update_history"]
    assert sorted(state["history"]["history"]) == sorted(net.param_lr)
    fake_gradients(net, 0)
    updater.step(1.0, 0)
    assert not state["history"]["history"]["conv1.weight"].any()  # unchanged by the later step


def test_load_state_dict_rejects_other_solver_or_shapes():
    _, sgd = lenet_with_updater(solver(momentum=0.9))
    _, adam = lenet_with_updater(solver(type="Adam", momentum=0.9))
    with pytest.raises(NetdefError, match="another solver type .*expected type Adam, found type SGD"):
        adam.load_state_dict(sgd.state_dict())
    state = sgd.state_dict()
    state["history"]["history"]["ip2.bias"] = torch.zeros(3)
    with pytest.raises(NetdefError, match="does not fit parameter 'ip2.bias'.*found shape \\[3\\]"):
        sgd.load_state_dict(state)


def test_benchmark_tool_checks_agreement_with_torch_sgd(capsys):
    """tools/bench_updates.py first verifies that CaffeUpdater and torch.optim.SGD give the same LeNet
    weights at a constant rate (exit 1 otherwise), then times both."""
    spec = importlib.util.spec_from_file_location("bench_updates", ROOT / "tools" / "bench_updates.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--iterations", "2", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "431,080 values on cpu" in out
    assert "time ratio CaffeUpdater / torch.optim:" in out
