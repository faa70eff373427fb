"""Fixtures shared by the test modules. Keep this small: helpers one module needs live in that module."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Material too big or too foreign for the repository lives beside it, in ../shared: caffe/ (BVLC Caffe's
# prototxts and fixtures) and data/. Always reach it through SHARED (or needs_shared), never by an absolute path.
SHARED = ROOT.parent / "shared"

def needs_shared(*parts: str):
    """A skipif mark for tests that read SHARED/parts (e.g. needs_shared("caffe"))."""
    path = SHARED.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is missing: the shared material (caffe/, data/) "
                                                        "belongs in a folder 'shared' beside the repository")


@pytest.fixture
def netdef_cli(capsys):
    """Run `netdef ARGS...` in-process; returns (exit status, stdout, stderr)."""
    from netdef.cli import main

    def run(*args):
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors and --version
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err
    return run


@pytest.fixture
def netdef_subprocess():
    """Run `python -m netdef ARGS...` as a real process from the repository root."""
    def run(*args, cwd=ROOT):
        return subprocess.run([sys.executable, "-m", "netdef", *map(str, args)], cwd=cwd,
                              capture_output=True, text=True, timeout=120)
    return run


@pytest.fixture
def write_yaml(tmp_path):
    """Write dedented YAML text to a file under tmp_path; returns its path."""
    def write(text, name="net.yaml"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path
    return write
