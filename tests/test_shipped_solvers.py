"""Every solver in solvers/ is valid and its nets infer in both phases (the tiny image-folder solver needs
generated images: tests/test_image_train.py covers it)."""
import pytest

from netdef.cli import main

from conftest import SHIPPED_SOLVERS, shipped_paths

SOLVERS = shipped_paths("solvers", [name for name in SHIPPED_SOLVERS if name != "tiny_folder_solver"])


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda p: p.stem)
def test_shipped_solver_checks(solver, capsys):
    assert main(["check", str(solver)]) == 0
    assert capsys.readouterr().out.startswith(f"{solver}: ok (solver ")
