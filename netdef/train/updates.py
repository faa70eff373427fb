"""Caffe's parameter updates (`SGDSolver::ApplyUpdate` and the solver subclasses) on torch tensors.

One `step(rate)` does, in Caffe's order: clip the gradients (global L2 norm over every learnable gradient,
on the sum of the iter_size passes), normalise by iter_size, regularise (L2 or L1, times decay_mult),
compute the update value with the solver `type`, and subtract it from the weights. Parameters are grouped
by (lr_mult, decay_mult, device, dtype) and every group is updated with `torch._foreach_*` ops; nothing in
`step` reads a tensor back to the host.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import NetdefError, Problem

# Caffe's history blob sets per solver type, in the order its .solverstate stores them.
HISTORY_SETS = {
    "SGD": ("history",),          # velocity, learning rate inside: v = momentum v + local_rate g
    "Nesterov": ("history",),
    "AdaGrad": ("history",),      # sum of g²
    "RMSProp": ("history",),      # running mean of g²
    "AdaDelta": ("history", "update_history"),  # running means of g² and of update²
    "Adam": ("m", "v"),           # first and second moments
}


@dataclass
class _Group:
    """Parameters sharing lr_mult and decay_mult (and device and dtype), updated by one set of foreach ops."""
    lr_mult: float
    decay_mult: float
    names: list = field(default_factory=list)
    params: list = field(default_factory=list)
    history: dict = field(default_factory=dict)  # history set name -> list of tensors, parallel to params


class CaffeUpdater:
    """Applies Caffe's update rules to `named_params`, a list of (name, parameter, lr_mult, decay_mult).

    Parameters with lr_mult 0 are frozen and skipped (in Caffe their update is multiplied by a zero rate);
    a parameter object listed twice (shared) is updated once, with its first entry's multipliers.
    `iteration` counts the updates applied (Caffe's iter_): `step` uses it for Adam's bias correction and
    increments it; `state_dict` saves it and `load_state_dict` restores it.
    """

    def __init__(self, named_params, values: dict):
        self.values = values
        self.type = values["type"]
        self.iteration = 0
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
            for set_name in HISTORY_SETS[self.type]:
                group.history.setdefault(set_name, []).append(torch.zeros_like(param))
        self._compute_update = getattr(self, "_" + self.type.lower())

    @classmethod
    def from_net(cls, net, values: dict) -> "CaffeUpdater":
        """The updater for a compiled net, whose `param_lr` maps parameter names to (lr_mult, decay_mult)."""
        return cls([(name, net.get_parameter(name), lr_mult, decay_mult)
                    for name, (lr_mult, decay_mult) in net.param_lr.items()], values)

    @property
    def params(self) -> list:
        """The learnable parameters, in update order."""
        return [param for group in self._groups.values() for param in group.params]

    def zero_grad(self) -> None:
        for group in self._groups.values():
            for param in group.params:
                param.grad = None

    @torch.no_grad()
    def step(self, rate: float) -> None:
        """One Caffe update with learning rate `rate` (from `lr_policy.learning_rate(values, self.iteration)`)."""
        values = self.values
        grads = {key: [p.grad if p.grad is not None else torch.zeros_like(p) for p in group.params]
                 for key, group in self._groups.items()}
        if values["clip_gradients"] >= 0:
            self._clip(grads, values["clip_gradients"])
        iter_size = values["iter_size"]
        for key, group in self._groups.items():
            group_grads = grads[key]
            if iter_size > 1:
                torch._foreach_mul_(group_grads, 1.0 / iter_size)
            self._regularize(group, group_grads)
            self._compute_update(group, group_grads, rate * group.lr_mult)
        self.iteration += 1

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
        local_decay = self.values["weight_decay"] * group.decay_mult
        if not local_decay:  # Caffe skips a zero decay too
            return
        if self.values["regularization_type"] == "L2":
            torch._foreach_add_(grads, group.params, alpha=local_decay)
        else:
            torch._foreach_add_(grads, torch._foreach_sign(group.params), alpha=local_decay)

    # Update rules (caffe.md §c.4): each one computes the step and subtracts it from the weights.

    def _sgd(self, group, grads, local_rate):
        history = group.history["history"]
        torch._foreach_mul_(history, self.values["momentum"])
        torch._foreach_add_(history, grads, alpha=local_rate)
        torch._foreach_sub_(group.params, history)

    def _nesterov(self, group, grads, local_rate):
        momentum = self.values["momentum"]
        history = group.history["history"]
        update = torch._foreach_mul(history, -momentum)  # step back from the previous velocity ...
        torch._foreach_mul_(history, momentum)
        torch._foreach_add_(history, grads, alpha=local_rate)
        torch._foreach_add_(update, history, alpha=1.0 + momentum)  # ... then over-step the new one
        torch._foreach_sub_(group.params, update)

    def _adagrad(self, group, grads, local_rate):
        history = group.history["history"]
        torch._foreach_addcmul_(history, grads, grads)
        self._apply_scaled(group.params, grads, history, local_rate)

    def _rmsprop(self, group, grads, local_rate):
        rms_decay = self.values["rms_decay"]
        history = group.history["history"]
        torch._foreach_mul_(history, rms_decay)
        torch._foreach_addcmul_(history, grads, grads, value=1.0 - rms_decay)
        self._apply_scaled(group.params, grads, history, local_rate)

    def _adadelta(self, group, grads, local_rate):
        momentum, delta = self.values["momentum"], self.values["delta"]
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

    def _adam(self, group, grads, local_rate):
        beta1, beta2 = self.values["momentum"], self.values["momentum2"]
        m, v = group.history["m"], group.history["v"]
        t = self.iteration + 1
        correction = math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
        self._apply_scaled(group.params, m, v, local_rate * correction)

    def _apply_scaled(self, params, numerators, squares, rate):
        """w -= rate * numerator / (sqrt(squares) + delta): AdaGrad's, RMSProp's and Adam's last step."""
        denominators = torch._foreach_sqrt(squares)
        torch._foreach_add_(denominators, self.values["delta"])
        torch._foreach_addcdiv_(params, numerators, denominators, value=-rate)

    # Snapshots

    def state_dict(self) -> dict:
        """The solver state: type, iteration and every history tensor (copies), keyed by parameter name."""
        return {"type": self.type, "iteration": self.iteration,
                "history": {set_name: {name: tensor.detach().clone()
                                       for group in self._groups.values()
                                       for name, tensor in zip(group.names, group.history[set_name])}
                            for set_name in HISTORY_SETS[self.type]}}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output; the parameter names and shapes must match this updater's."""
        if state.get("type") != self.type:
            raise NetdefError(Problem("the snapshot's solver state is for another solver type",
                                      expected=f"type {self.type}", found=f"type {state.get('type')}"))
        saved = state["history"]
        for group in self._groups.values():
            for set_name in HISTORY_SETS[self.type]:
                for name, tensor in zip(group.names, group.history[set_name]):
                    source = saved[set_name].get(name)
                    if source is None or source.shape != tensor.shape:
                        raise NetdefError(Problem(f"the snapshot's solver state does not fit parameter '{name}'",
                                                  expected=f"{set_name} of shape {list(tensor.shape)}",
                                                  found="nothing" if source is None else f"shape {list(source.shape)}"))
                    tensor.copy_(source)
        self.iteration = int(state["iteration"])
