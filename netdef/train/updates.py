"""Caffe's parameter updates (`SGDSolver::ApplyUpdate` and the solver subclasses) on torch tensors.

One `step(rate, iteration)` does, in Caffe's order: clip the gradients (global L2 norm over every learnable
gradient, on the sum of the iter_size passes), normalise by iter_size, regularise (L2 or L1, times
decay_mult), compute the update value with the solver `type`, and subtract it from the weights. Parameters
are grouped by (lr_mult, decay_mult, device, dtype) and every group is updated with `torch._foreach_*` ops;
nothing in `step` reads a tensor back to the host.

`UPDATE_RULES` is the registry of solver types: each rule's history sets, its update and the solver values
it cannot work with. The solver file's `type` choices and their checks come from here (netdef.train.config),
so this module does not import torch until the first CaffeUpdater is made: `netdef check` and
`netdef schema` read the registry and must not wait seconds for torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..errors import NetdefError, Problem

torch = None  # the torch module, bound by _import_torch() when the first CaffeUpdater is made


def _import_torch():
    global torch
    if torch is None:
        import torch as module
        torch = module


@dataclass
class _Group:
    """Parameters sharing lr_mult and decay_mult (and device and dtype), updated by one set of foreach ops."""
    lr_mult: float
    decay_mult: float
    names: list = field(default_factory=list)
    params: list = field(default_factory=list)
    history: dict = field(default_factory=dict)  # history set name -> list of tensors, parallel to params


# Update rules (caffe.md §c.4): each computes the step of one group and subtracts it from the weights.
# `t` is the 1-based number of this update (Adam's bias correction).

def _sgd(config, group, grads, local_rate, t):
    history = group.history["history"]
    torch._foreach_mul_(history, config.momentum)
    torch._foreach_add_(history, grads, alpha=local_rate)
    torch._foreach_sub_(group.params, history)


def _nesterov(config, group, grads, local_rate, t):
    momentum = config.momentum
    history = group.history["history"]
    update = torch._foreach_mul(history, -momentum)  # step back from the previous velocity ...
    torch._foreach_mul_(history, momentum)
    torch._foreach_add_(history, grads, alpha=local_rate)
    torch._foreach_add_(update, history, alpha=1.0 + momentum)  # ... then over-step the new one
    torch._foreach_sub_(group.params, update)


def _adagrad(config, group, grads, local_rate, t):
    history = group.history["history"]
    torch._foreach_addcmul_(history, grads, grads)
    _apply_scaled(group.params, grads, history, local_rate, config.delta)


def _rmsprop(config, group, grads, local_rate, t):
    rms_decay = config.rms_decay
    history = group.history["history"]
    torch._foreach_mul_(history, rms_decay)
    torch._foreach_addcmul_(history, grads, grads, value=1.0 - rms_decay)
    _apply_scaled(group.params, grads, history, local_rate, config.delta)


def _adadelta(config, group, grads, local_rate, t):
    momentum, delta = config.momentum, config.delta
    grad_history, update_history = group.history["history"], group.history["update_history"]
    torch._foreach_mul_(grad_history, momentum)
    torch._foreach_addcmul_(grad_history, grads, grads, value=1.0 - momentum)
    update = torch._foreach_add(update_history, delta)
    torch._foreach_div_(update, torch._foreach_add(grad_history, delta))
    torch._foreach_sqrt_(update)
    torch._foreach_mul_(update, grads)
    torch._foreach_mul_(update_history, momentum)
    torch._foreach_addcmul_(update_history, update, update, value=1.0 - momentum)
    torch._foreach_add_(group.params, update, alpha=-local_rate)


def _adam(config, group, grads, local_rate, t):
    beta1, beta2 = config.momentum, config.momentum2
    m, v = group.history["m"], group.history["v"]
    correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    torch._foreach_mul_(m, beta1)
    torch._foreach_add_(m, grads, alpha=1.0 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
    _apply_scaled(group.params, m, v, local_rate * correction, config.delta)


def _apply_scaled(params, numerators, squares, rate, delta):
    """w -= rate * numerator / (sqrt(squares) + delta): AdaGrad's, RMSProp's and Adam's last step."""
    denominators = torch._foreach_sqrt(squares)
    torch._foreach_add_(denominators, delta)
    torch._foreach_addcdiv_(params, numerators, denominators, value=-rate)


@dataclass(frozen=True)
class UpdateRule:
    """One solver `type`: its history sets, in the order Caffe's .solverstate stores them; `apply(config,
    group, grads, local_rate, t)`; whether it takes `momentum`; and (field, why) for the fields its
    formulas need below 1."""
    history: tuple
    apply: Callable
    takes_momentum: bool = True
    below_one: tuple = ()


UPDATE_RULES = {
    "SGD": UpdateRule(("history",), _sgd),  # velocity, learning rate inside: v = momentum v + local_rate g
    "Nesterov": UpdateRule(("history",), _nesterov),
    "AdaGrad": UpdateRule(("history",), _adagrad, takes_momentum=False),  # sum of g²
    "RMSProp": UpdateRule(("history",), _rmsprop, takes_momentum=False,  # running mean of g²
                          below_one=(("rms_decay", "the decay of the running mean of squared gradients"),)),
    "AdaDelta": UpdateRule(("history", "update_history"), _adadelta),  # running means of g² and of update²
    "Adam": UpdateRule(("m", "v"), _adam,  # first and second moments
                       below_one=(("momentum", "beta1; the bias correction divides by 1 - beta1^t"),
                                  ("momentum2", "beta2; the bias correction is sqrt(1 - beta2^t)"))),
}
HISTORY_SETS = {name: rule.history for name, rule in UPDATE_RULES.items()}


def rule_problems(config) -> list:
    """(field path, message, expected, found) for each solver value the update rule `config.type` cannot
    use: a momentum it does not take, a decay that makes its formulas divide by zero or go backwards."""
    rule = UPDATE_RULES.get(config.type)
    if rule is None:
        return []
    problems = []
    if not rule.takes_momentum and config.momentum:
        problems.append((("momentum",), f"{config.type} takes no momentum", "momentum: 0", str(config.momentum)))
    for name, why in rule.below_one:
        value = getattr(config, name)
        if value >= 1:
            problems.append(((name,), f"{config.type} needs {name} < 1 ({why})", f"0 <= {name} < 1", str(value)))
    return problems


class CaffeUpdater:
    """Applies Caffe's update rules to `named_params`, a list of (name, parameter, lr_mult, decay_mult), with
    the solver values of `config` (a SolverConfig: type, momentum, weight_decay, clip_gradients, ...).

    Parameters with lr_mult 0 are frozen and skipped (in Caffe their update is multiplied by a zero rate);
    a parameter object listed twice (shared) is updated once, with its first entry's multipliers. The
    updater keeps the history, not the iteration: the caller's count (TrainState.iteration) is passed to
    `step`.
    """

    def __init__(self, named_params, config):
        _import_torch()
        self.config = config
        self.type = config.type
        self.rule = UPDATE_RULES[self.type]
        self.last_grad_norm = None  # the global gradient norm of the last step when clip_gradients >= 0
        self._groups: dict = {}
        seen = set()
        for name, param, lr_mult, decay_mult in named_params:
            if lr_mult == 0 or id(param) in seen:
                continue
            seen.add(id(param))
            group = self._groups.setdefault((lr_mult, decay_mult, param.device, param.dtype),
                                            _Group(lr_mult, decay_mult))
            group.names.append(name)
            group.params.append(param)
            for set_name in self.rule.history:
                group.history.setdefault(set_name, []).append(torch.zeros_like(param))

    @classmethod
    def from_net(cls, net, config) -> "CaffeUpdater":
        """The updater for a compiled net, whose `param_lr` maps parameter names to (lr_mult, decay_mult)."""
        return cls([(name, net.get_parameter(name), lr_mult, decay_mult)
                    for name, (lr_mult, decay_mult) in net.param_lr.items()], config)

    @property
    def params(self) -> list:
        """The learnable parameters, in update order."""
        return [param for group in self._groups.values() for param in group.params]

    def zero_grad(self) -> None:
        for group in self._groups.values():
            for param in group.params:
                param.grad = None

    def step(self, rate: float, iteration: int) -> bool:
        """One Caffe update with learning rate `rate` (`lr_policy.learning_rate(config, iteration)`), after
        `iteration` updates (Caffe's iter_; Adam's bias correction uses t = iteration + 1). Returns True:
        torch's GradScaler takes that as a step taken."""
        config = self.config
        with torch.no_grad():
            grads = {key: [p.grad if p.grad is not None else torch.zeros_like(p) for p in group.params]
                     for key, group in self._groups.items()}
            if config.clip_gradients >= 0:
                self._clip(grads, config.clip_gradients)
            iter_size = config.iter_size
            for key, group in self._groups.items():
                group_grads = grads[key]
                if iter_size > 1:
                    torch._foreach_mul_(group_grads, 1.0 / iter_size)
                self._regularize(group, group_grads)
                self.rule.apply(config, group, group_grads, rate * group.lr_mult, iteration + 1)
        return True

    def _clip(self, grads: dict, clip: float) -> None:
        """Caffe's ClipGradients: scale every gradient by clip / norm when the global L2 norm exceeds clip."""
        if not grads:  # every parameter frozen
            return
        device = next(iter(grads.values()))[0].device
        group_norms = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(group_grads))).to(device)
                       for group_grads in grads.values()]
        norm = torch.linalg.vector_norm(torch.stack(group_norms))
        scale = torch.where(norm > clip, clip / norm, torch.ones_like(norm))
        for group_grads in grads.values():
            torch._foreach_mul_(group_grads, scale.to(group_grads[0].device))
        self.last_grad_norm = norm

    def _regularize(self, group: _Group, grads: list) -> None:
        local_decay = self.config.weight_decay * group.decay_mult
        if not local_decay:  # Caffe skips a zero decay too
            return
        if self.config.regularization_type == "L2":
            torch._foreach_add_(grads, group.params, alpha=local_decay)
        else:
            torch._foreach_add_(grads, torch._foreach_sign(group.params), alpha=local_decay)

    # Snapshots

    def state_dict(self) -> dict:
        """The solver history: type and every history tensor (copies), keyed by parameter name."""
        return {"type": self.type,
                "history": {set_name: {name: tensor.detach().clone()
                                       for group in self._groups.values()
                                       for name, tensor in zip(group.names, group.history[set_name])}
                            for set_name in self.rule.history}}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output; the parameter names and shapes must match this updater's."""
        if state.get("type") != self.type:
            raise NetdefError(Problem("the snapshot's solver state is for another solver type",
                                      expected=f"type {self.type}", found=f"type {state.get('type')}"))
        saved = state["history"]
        for group in self._groups.values():
            for set_name in self.rule.history:
                for name, tensor in zip(group.names, group.history[set_name]):
                    source = saved[set_name].get(name)
                    if source is None or source.shape != tensor.shape:
                        raise NetdefError(Problem(f"the snapshot's solver state does not fit parameter '{name}'",
                                                  expected=f"{set_name} of shape {list(tensor.shape)}",
                                                  found="nothing" if source is None else f"shape {list(source.shape)}"))
                    tensor.copy_(source)
