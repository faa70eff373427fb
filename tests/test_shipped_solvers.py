"""Every solver in solvers/ is valid and its nets infer in both phases (the tiny image-folder solver needs
generated images: tests/test_image_train.py covers it)."""
from pathlib import Path

import pytest

from netdef.cli import main

ROOT = Path(__file__).resolve().parent.parent
SOLVERS = sorted(p for p in (ROOT / "solvers").glob("*.yaml") if p.stem != "tiny_folder_solver")


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda p: p.stem)
def test_shipped_solver_checks(solver, capsys):
    assert main(["check", str(solver)]) == 0
    assert capsys.readouterr().out.startswith(f"{solver}: ok (solver ")
