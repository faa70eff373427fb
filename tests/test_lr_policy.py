"""Caffe's learning-rate policies against values worked out by hand, and the solver checks around them."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

from netdef.errors import NetdefError
from netdef.train.lr_policy import learning_rate, multistep_current_step, schedule
from netdef.train.config import SolverConfig, load_solver

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "nets" / "lenet.yaml"


def solver(**fields):
    """A SolverConfig made in Python (not checked, so a policy may lack its fields)."""
    return SolverConfig(**{"base_lr": 0.01, "lr_policy": "fixed", "max_iter": 10000, **fields})


@pytest.mark.parametrize("policy, fields, iteration, expected", [
    ("fixed", {}, 0, 0.01),
    ("fixed", {}, 123456, 0.01),
    # LeNet: 0.01 * (1 + 1e-4 * 100) ^ -0.75 = 0.01 * 1.01 ^ -0.75
    ("inv", {"gamma": 1e-4, "power": 0.75}, 100, 0.00992565029),
    ("inv", {"gamma": 1e-4, "power": 0.75}, 0, 0.01),
    ("inv", {"gamma": 1e-4, "power": 0.75}, 10000, 0.01 / 2 ** 0.75),  # (1 + 1) ^ -0.75
    # step: gamma ^ floor(iter / stepsize)
    ("step", {"gamma": 0.1, "stepsize": 100}, 99, 0.01),
    ("step", {"gamma": 0.1, "stepsize": 100}, 100, 0.001),
    ("step", {"gamma": 0.1, "stepsize": 100}, 250, 0.0001),
    # exp: gamma ^ iter
    ("exp", {"gamma": 0.99}, 0, 0.01),
    ("exp", {"gamma": 0.99}, 2, 0.01 * 0.9801),
    # poly: (1 - iter / max_iter) ^ power
    ("poly", {"power": 2.0, "max_iter": 100}, 50, 0.01 * 0.25),
    ("poly", {"power": 0.5, "max_iter": 100}, 75, 0.01 * 0.5),
    ("poly", {"power": 2.0, "max_iter": 100}, 100, 0.0),
    # sigmoid: 1 / (1 + exp(-gamma (iter - stepsize)))
    ("sigmoid", {"gamma": -0.1, "stepsize": 50}, 50, 0.005),
    ("sigmoid", {"gamma": -0.1, "stepsize": 50}, 60, 0.01 / (1 + math.e)),
    ("sigmoid", {"gamma": 0.1, "stepsize": 50}, 40, 0.01 / (1 + math.e)),
])
def test_policy_values(policy, fields, iteration, expected):
    assert learning_rate(solver(lr_policy=policy, **fields), iteration) == pytest.approx(expected, rel=1e-8, abs=1e-15)


MULTISTEP = solver(lr_policy="multistep", gamma=0.9, stepvalue=[5000, 7000, 8000, 9000, 9500])


@pytest.mark.parametrize("iteration, expected", [
    (0, 0.01), (4999, 0.01), (5000, 0.009), (6999, 0.009), (7000, 0.0081), (7999, 0.0081),
    (8000, 0.00729), (9000, 0.006561), (9499, 0.006561), (9500, 0.0059049), (20000, 0.0059049),
])
def test_multistep_values(iteration, expected):
    assert learning_rate(MULTISTEP, iteration) == pytest.approx(expected, rel=1e-12)


def caffe_multistep_steps(stepvalues, iterations):
    """Caffe's stateful rule, run iteration by iteration as SGDSolver::GetLearningRate does."""
    current_step, steps = 0, []
    for iteration in range(iterations):
        if current_step < len(stepvalues) and iteration >= stepvalues[current_step]:
            current_step += 1
        steps.append(current_step)
    return steps


@pytest.mark.parametrize("stepvalues", [[5, 7, 8], [3, 4, 5, 6], [5, 5, 5], [9, 2, 4], [1], []])
def test_multistep_current_step_replays_caffe(stepvalues):
    """The pure function equals Caffe's at-most-one-step-per-iteration counter, even for unsorted lists
    (which load_solver rejects, but the Python API accepts)."""
    expected = caffe_multistep_steps(stepvalues, 15)
    assert [multistep_current_step(stepvalues, i) for i in range(15)] == expected


def test_schedule_takes_a_count_or_iterations():
    values = solver(lr_policy="step", gamma=0.5, stepsize=2)
    assert schedule(values, 5) == [0.01, 0.01, 0.005, 0.005, 0.0025]
    assert schedule(values, [0, 4, 8]) == [0.01, 0.0025, 0.000625]


def test_out_of_range_powers_behave_like_c():
    """Where C's pow/exp overflow or have no real value, Caffe gets inf/nan; Python would raise."""
    assert learning_rate(solver(lr_policy="exp", gamma=2.0), 5000) == math.inf
    assert math.isnan(learning_rate(solver(lr_policy="poly", power=0.5, max_iter=10), 20))
    assert learning_rate(solver(lr_policy="sigmoid", gamma=-1.0, stepsize=0), 10000) == 0.0


def test_missing_policy_field_raises_in_the_python_api():
    with pytest.raises(ValueError, match="lr_policy 'inv' needs 'power'"):
        learning_rate(solver(lr_policy="inv", gamma=1e-4), 1)
    with pytest.raises(ValueError, match="unknown lr_policy 'cosine'"):
        learning_rate(solver(lr_policy="cosine"), 1)


# Solver-file checks: each problem is reported at the line and column of the offending value.

def write_solver(tmp_path, text):
    path = tmp_path / "solver.yaml"
    path.write_text(f"net: {LENET}\nbase_lr: 0.01\nmax_iter: 100\n" + text)
    return path


def problems_of(path):
    with pytest.raises(NetdefError) as info:
        load_solver(path)
    return [str(problem) for problem in info.value.problems]


@pytest.mark.parametrize("text, expected", [
    ("lr_policy: inv\ngamma: 0.0001\n", ":4:12: lr_policy 'inv' needs 'power'"),
    ("lr_policy: step\ngamma: 0.1\n", ":4:12: lr_policy 'step' needs 'stepsize'"),
    ("lr_policy: sigmoid\nstepsize: 10\n", ":4:12: lr_policy 'sigmoid' needs 'gamma'"),
    ("lr_policy: multistep\ngamma: 0.1\n", ":4:12: lr_policy 'multistep' needs 'stepvalue'"),
    ("lr_policy: poly\n", ":4:12: lr_policy 'poly' needs 'power'"),
    ("type: AdaGrad\nmomentum: 0.9\n", ":5:11: AdaGrad takes no momentum (expected momentum: 0, found 0.9)"),
    ("type: RMSProp\nmomentum: 0.9\n", ":5:11: RMSProp takes no momentum"),
    ("type: RMSProp\nrms_decay: 1.0\n", ":5:12: RMSProp needs rms_decay < 1"),
    ("type: Adam\nmomentum: 1.0\n", ":5:11: Adam needs momentum < 1"),
    ("type: Adam\nmomentum: 0.9\nmomentum2: 1.5\n", ":6:12: Adam needs momentum2 < 1"),
    ("lr_policy: multistep\ngamma: 0.1\nstepvalue: [50, 80, 70]\n",
     ":6:21: multistep 'stepvalue' must increase (expected a value > 80, found 70)"),
])
def test_solver_cross_field_problems(tmp_path, text, expected):
    path = write_solver(tmp_path, text)
    found = problems_of(path)
    assert any(problem.startswith(str(path) + expected) for problem in found), found


def test_rms_decay_below_zero_is_a_schema_error(tmp_path):
    found = problems_of(write_solver(tmp_path, "type: RMSProp\nrms_decay: -0.5\n"))
    assert any(":5:12:" in problem and "rms_decay" in problem for problem in found), found


def test_poly_needs_max_iter(tmp_path):
    path = tmp_path / "solver.yaml"
    path.write_text(f"net: {LENET}\nbase_lr: 0.01\nmax_iter: 0\nlr_policy: poly\npower: 1.0\n")
    assert any(problem.startswith(f"{path}:3:11: lr_policy 'poly' divides by max_iter")
               for problem in problems_of(path))


def test_cli_check_reports_solver_problem_position(tmp_path):
    path = write_solver(tmp_path, "type: Adam\nmomentum: 1.0\n")
    result = subprocess.run([sys.executable, "-m", "netdef", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{path}:5:11: Adam needs momentum < 1" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_valid_solver_loads(tmp_path):
    path = write_solver(tmp_path, "lr_policy: multistep\ngamma: 0.9\nstepvalue: [50, 70]\ntype: Adam\n"
                                  "momentum: 0.9\n")
    config = load_solver(path)
    assert learning_rate(config, 60) == pytest.approx(0.009)
