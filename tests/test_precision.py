"""`precision: bf16` on the CPU and `compile: true`: LeNet trained through the Solver against fp32 eager."""
from __future__ import annotations

import pytest
import torch

from netdef.train.config import load_solver
from netdef.train.solver import Solver
from solver_helpers import REPO, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def lenet_solver(**changes) -> Solver:
    config = load_solver(REPO / "solvers" / "lenet_solver.yaml").replace(
        display=0, test_interval=0, snapshot=0, snapshot_after_train=False, device="cpu", **changes)
    return Solver(config)


def losses(solver: Solver, iterations: int) -> list:
    seen = []
    for _ in range(iterations):
        solver.step(1)
        seen.append(solver.state.loss.value())
    return seen


def test_bf16_runs_the_forward_passes_in_bf16_and_trains_fp32_weights_as_fp32_does():
    conv_dtypes = []
    bf16 = lenet_solver(precision="bf16")
    bf16.train.net.conv1.register_forward_hook(lambda module, inputs, output: conv_dtypes.append(output.dtype))
    fp32 = lenet_solver()
    low, full = losses(bf16, 30), losses(fp32, 30)
    assert set(conv_dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in bf16.state.updater.params)
    assert low[-1] < 0.5 * low[0]  # it learns
    assert low == pytest.approx(full, rel=0.05)  # as fp32 does, within bf16's 8-bit mantissa
    assert low != full


@pytest.mark.slow
def test_compile_trains_as_eager_does():
    """torch.compile of the training passes (inductor compiles LeNet in about 30 s on a busy 2-core CPU)."""
    compiled, eager = lenet_solver(compile=True), lenet_solver()
    assert losses(compiled, 10) == pytest.approx(losses(eager, 10), abs=1e-5)
    assert compiled.forward.compiled is not None  # it did compile: no fallback
    for a, b in zip(compiled.state.updater.params, eager.state.updater.params):
        assert torch.allclose(a, b, atol=1e-5)
