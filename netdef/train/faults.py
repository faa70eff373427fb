"""What the solver does when something goes wrong that would otherwise lose work silently: a loss that is
not finite (`nan_policy`), and the first layer whose output is not finite, found by running the offending
batch again with a check on every layer's output."""
from __future__ import annotations

import torch

from ..build import module_name

NAN_POLICIES = ("stop", "skip", "ignore")


def non_finite(tensors) -> bool:
    """Whether any of `tensors` holds a NaN or an infinity (one read-back)."""
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    if not tensors:
        return False
    return not bool(torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).all())


def first_non_finite_layer(phase_net, batch: dict, autocast) -> tuple:
    """Run `batch` through the compiled net again with a forward hook on every layer, in execution order:
    (layer name, layer type, whether its own parameters are non-finite) of the first layer whose output
    holds a NaN or an infinity; (None, None, False) if none does (the loss came out finite this time)."""
    found = []
    hooks = []
    for spec in phase_net.info.graph.layers:
        if not spec.impl.compiled():
            continue
        module = phase_net.net.get_submodule(module_name(spec.name))

        def hook(module, inputs, output, spec=spec):
            if not found and non_finite(output if isinstance(output, (tuple, list)) else [output]):
                found.append((spec.name, spec.type, non_finite(list(module.parameters()))))
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad(), autocast():
            phase_net.net(**batch)
    finally:
        for handle in hooks:
            handle.remove()
    return found[0] if found else (None, None, False)
