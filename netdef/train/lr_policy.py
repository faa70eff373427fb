"""Caffe's learning-rate policies (`SGDSolver::GetLearningRate`) as pure functions of the iteration.

`LR_POLICIES` is the registry: each policy's rate factor f (lr = base_lr * f(iteration)), the solver fields
it needs, and the further rules its values must follow. The solver file's `lr_policy` choices and its
checks come from here (netdef.train.config).

`iteration` is Caffe's `iter_`: the number of completed updates, so the rate used by update number 0 is
`learning_rate(config, 0)`. `config` is a SolverConfig, or anything with its attributes (base_lr,
lr_policy, gamma, power, stepsize, stepvalue, max_iter). Rates are computed in double precision (Caffe uses
the solver's Dtype, float), so a value may differ from Caffe's in the last float bit; the formulas and
their order are Caffe's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class LrPolicy:
    """One lr_policy: its factor f(config, iteration), the fields it reads, and `check(config)`, which gives
    (field path, message, expected, found) for every value the formula cannot use."""
    factor: Callable
    needs: tuple = ()
    check: Callable = lambda config: []


def learning_rate(config, iteration: int) -> float:
    """The rate Caffe uses for the update after `iteration` completed updates."""
    try:
        policy = LR_POLICIES[config.lr_policy]
    except KeyError:
        raise ValueError(f"unknown lr_policy {config.lr_policy!r} (expected one of {', '.join(LR_POLICIES)})") from None
    return config.base_lr * policy.factor(config, iteration)


def schedule(config, iterations: int | Iterable[int]) -> list[float]:
    """Rates for `iterations` (a count, meaning 0..count-1, or any iterable of iterations), for plotting."""
    if isinstance(iterations, int):
        iterations = range(iterations)
    return [learning_rate(config, iteration) for iteration in iterations]


def policy_problems(config) -> list:
    """(field path, message, expected, found) for each field the solver's lr_policy needs and lacks, and
    each value its formula cannot use (a solver file's checks; an unknown policy is the schema's)."""
    policy = LR_POLICIES.get(config.lr_policy)
    if policy is None:
        return []
    problems = []
    for field in policy.needs:
        if _missing(getattr(config, field)):
            expected = "a list of iterations" if field == "stepvalue" else f"'{field}:' (see the README's lr_policy table)"
            problems.append((("lr_policy",), f"lr_policy '{config.lr_policy}' needs '{field}'", expected, None))
    return problems + policy.check(config)


def multistep_current_step(stepvalues, iteration: int) -> int:
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


def _missing(value) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and not value)


def _need(config, field: str):
    value = getattr(config, field, None)
    if _missing(value):
        raise ValueError(f"lr_policy '{config.lr_policy}' needs '{field}'")
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


def _step(config, iteration):
    return _c_pow(_need(config, "gamma"), iteration // _need(config, "stepsize"))


def _exp(config, iteration):
    return _c_pow(_need(config, "gamma"), iteration)


def _inv(config, iteration):
    return _c_pow(1.0 + _need(config, "gamma") * iteration, -_need(config, "power"))


def _multistep(config, iteration):
    return _c_pow(_need(config, "gamma"), multistep_current_step(_need(config, "stepvalue"), iteration))


def _poly(config, iteration):
    return _c_pow(1.0 - iteration / config.max_iter, _need(config, "power"))


def _sigmoid(config, iteration):
    return 1.0 / (1.0 + _c_exp(-_need(config, "gamma") * (iteration - _need(config, "stepsize"))))


def _increasing_stepvalues(config) -> list:
    values = config.stepvalue or ()
    return [(("stepvalue", index), "multistep 'stepvalue' must increase", f"a value > {values[index - 1]}",
             str(values[index])) for index in range(1, len(values)) if values[index] <= values[index - 1]]


def _poly_max_iter(config) -> list:
    if config.max_iter is not None and config.max_iter < 1:
        return [(("max_iter",), "lr_policy 'poly' divides by max_iter", "max_iter >= 1", str(config.max_iter))]
    return []


# The registry, in the order the schema and the README list the policies.
LR_POLICIES = {
    "fixed": LrPolicy(lambda config, iteration: 1.0),
    "step": LrPolicy(_step, ("gamma", "stepsize")),
    "exp": LrPolicy(_exp, ("gamma",)),
    "inv": LrPolicy(_inv, ("gamma", "power")),
    "multistep": LrPolicy(_multistep, ("gamma", "stepvalue"), _increasing_stepvalues),
    "poly": LrPolicy(_poly, ("power",), _poly_max_iter),
    "sigmoid": LrPolicy(_sigmoid, ("gamma", "stepsize")),
}
