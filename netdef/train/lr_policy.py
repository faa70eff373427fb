"""Caffe's learning-rate policies (`SGDSolver::GetLearningRate`) as pure functions of the iteration.

`iteration` is Caffe's `iter_`: the number of completed updates, so the rate used by update number 0 is
`learning_rate(values, 0)`. Rates are computed in double precision (Caffe uses the solver's Dtype, float),
so a value may differ from Caffe's in the last float bit; the formulas and their order are Caffe's.
"""
from __future__ import annotations

import math
from typing import Iterable


def learning_rate(values: dict, iteration: int) -> float:
    """The rate Caffe uses for the update after `iteration` completed updates; `values` is a solver dict."""
    policy = values["lr_policy"]
    try:
        factor = _FACTORS[policy]
    except KeyError:
        raise ValueError(f"unknown lr_policy {policy!r} (expected one of {', '.join(_FACTORS)})") from None
    return values["base_lr"] * factor(values, iteration)


def schedule(values: dict, iterations: int | Iterable[int]) -> list[float]:
    """Rates for `iterations` (a count, meaning 0..count-1, or any iterable of iterations), for plotting."""
    if isinstance(iterations, int):
        iterations = range(iterations)
    return [learning_rate(values, iteration) for iteration in iterations]


def multistep_current_step(stepvalues: list[int], iteration: int) -> int:
    """Caffe's `current_step_` for multistep at `iteration`.

    Caffe raises current_step by at most one per iteration, when iter >= stepvalue[current_step]; replaying
    that rule, step k is taken at iteration t_k = max(stepvalue[k], t_(k-1) + 1). For increasing
    stepvalues this is simply how many of them are <= iteration.
    """
    taken, taken_at = 0, -1
    for value in stepvalues:
        taken_at = max(value, taken_at + 1)
        if taken_at > iteration:
            break
        taken += 1
    return taken


def _need(values: dict, field: str):
    value = values.get(field)
    if value is None or value == []:
        raise ValueError(f"lr_policy '{values['lr_policy']}' needs '{field}'")
    return value


def _c_pow(base: float, exponent: float) -> float:
    """C's pow: overflow gives inf and a negative base with a fractional exponent gives nan (Python raises)."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def _c_exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf


def _step(values, iteration):
    return _c_pow(_need(values, "gamma"), iteration // _need(values, "stepsize"))


def _exp(values, iteration):
    return _c_pow(_need(values, "gamma"), iteration)


def _inv(values, iteration):
    return _c_pow(1.0 + _need(values, "gamma") * iteration, -_need(values, "power"))


def _multistep(values, iteration):
    return _c_pow(_need(values, "gamma"), multistep_current_step(_need(values, "stepvalue"), iteration))


def _poly(values, iteration):
    return _c_pow(1.0 - iteration / values["max_iter"], _need(values, "power"))


def _sigmoid(values, iteration):
    return 1.0 / (1.0 + _c_exp(-_need(values, "gamma") * (iteration - _need(values, "stepsize"))))


_FACTORS = {
    "fixed": lambda values, iteration: 1.0,
    "step": _step,
    "exp": _exp,
    "inv": _inv,
    "multistep": _multistep,
    "poly": _poly,
    "sigmoid": _sigmoid,
}
