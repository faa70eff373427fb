"""Fixtures shared by the test modules. Keep this small: helpers one module needs live in that module."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Material too big or too foreign for the repository lives beside it, in ../shared: caffe/ (BVLC Caffe's
# prototxts and fixtures) and data/. Always reach it through SHARED (or needs_shared), never by an absolute path.
SHARED = ROOT.parent / "shared"

# The files shipped in nets/ and solvers/, listed rather than globbed: a stray YAML file dropped there does not
# become a test case. test_shipped_files_are_listed checks the lists against `git ls-files`; add a file you
# commit to its list.
SHIPPED_NETS = ["alexnet", "alexnet_1tower", "googlenet", "lenet", "lenet5_1998", "resnet18", "resnet34",
                "resnet50", "resnet101", "resnet152", "tiny_folder", "vgg11", "vgg11_lrn", "vgg13", "vgg16",
                "vgg16_c", "vgg19", "mobilenet_v2", "efficientnet_b0", "vit_tiny", "densenet121"]
SHIPPED_BLOCK_LIBRARIES = ["imagenet", "resnet", "vgg", "mobile", "vit"]
SHIPPED_SOLVERS = ["alexnet_solver", "googlenet_solver", "lenet5_1998_solver", "lenet_solver", "resnet_solver",
                   "tiny_folder_solver", "vgg_solver"]


def shipped_paths(folder: str, names) -> list:
    """ROOT/folder/NAME.yaml for each name, e.g. shipped_paths("nets", SHIPPED_NETS)."""
    return [ROOT / folder / f"{name}.yaml" for name in names]


SHIPPED_FILES = (shipped_paths("nets", SHIPPED_NETS) + shipped_paths("nets/blocks", SHIPPED_BLOCK_LIBRARIES)
                 + shipped_paths("solvers", SHIPPED_SOLVERS))


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


# ---------------------------------------------------------------- tests write only into temporary folders
# At the end of a run, files that appeared in the checkout (untracked or ignored, outside caches) fail it:
# a test wrote where it should not (use tmp_path, or monkeypatch.chdir(tmp_path) before running a command
# that writes into the working folder, e.g. `netdef train`'s default run folder runs/<solver>). Set
# NETDEF_TESTS_ALLOW_WRITES=1 to skip the check (e.g. while you or others create files in the checkout during
# a run: those count too).

STRAY_BEFORE = pytest.StashKey()  # set[str] | None: the stray files when the run started
STRAY_NEW = pytest.StashKey()  # list[str]: those that appeared during the run
CACHES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints")


def stray_files():
    """Untracked and ignored files of the checkout, caches left out; None without git."""
    try:
        result = subprocess.run(["git", "status", "--porcelain", "-z", "--ignored", "--untracked-files=all"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    found = set()
    for entry in result.stdout.split("\0"):
        if entry[:3] in ("?? ", "!! "):
            parts = Path(entry[3:]).parts
            if not any(part in CACHES or part.endswith(".egg-info") for part in parts):
                found.add(entry[3:])
    return found


def pytest_sessionstart(session):
    session.config.stash[STRAY_BEFORE] = None if os.environ.get("NETDEF_TESTS_ALLOW_WRITES") else stray_files()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(STRAY_BEFORE, None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    after = stray_files() or set()
    new = sorted(after - before)
    session.config.stash[STRAY_NEW] = new
    if new and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    new = config.stash.get(STRAY_NEW, None)
    if new:
        terminalreporter.section("files written into the checkout", sep="=", red=True, bold=True)
        terminalreporter.line(f"The run left {len(new)} new file(s) in {ROOT}; tests must write only under "
                              "tmp_path (see tests/conftest.py):")
        for path in new[:30]:
            terminalreporter.line(f"  {path}")
        if len(new) > 30:
            terminalreporter.line(f"  ... and {len(new) - 30} more")
        terminalreporter.line("(Files someone created by hand during the run count too: rerun, or set "
                              "NETDEF_TESTS_ALLOW_WRITES=1 to skip this check.)")
