"""netdef never crashes, hangs or blows up on mutated copies of its inputs: the shipped YAML nets and solvers,
Caffe's prototxts and the binary files Caffe 1.0 wrote (../shared/caffe).

hypothesis picks, with a fixed seed, the case numbers of tools/fuzz.py's mutation engine (a case number
always gives the same mutation: `make_case(number, 20261202, ("yaml",))` reproduces a failure); each case runs
its commands in a forked process limited to 5 seconds and 1 GB. `python tools/fuzz.py --cases 20000` runs the
same engine at length.
"""
import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from conftest import SHIPPED_FILES, needs_shared
from malformed_files import fuzz_tool

HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="netdef-hypothesis-")
set_hypothesis_home_dir(HYPOTHESIS_HOME)  # its caches stay out of the checkout
atexit.register(shutil.rmtree, HYPOTHESIS_HOME, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent
fuzz = fuzz_tool()
# The seeds: conftest's list of shipped files, not tools/fuzz.py's glob (a stray YAML file in nets/ is none).
fuzz.SHIPPED = sorted(str(path.relative_to(ROOT)) for path in SHIPPED_FILES)


YAML_INPUTS = ("yaml",)  # the shipped files alone: these tests need nothing of ../shared


@pytest.fixture(scope="module")
def scratch():
    import netdef.data.images  # noqa: F401  (imported once before the forks, as tools/fuzz.py does)
    folder = fuzz.scratch_copy(YAML_INPUTS)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@seed(20261202)
@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(number=st.integers(min_value=0, max_value=2 ** 32))
def test_mutated_shipped_files_get_a_clean_answer(scratch, number):
    case = fuzz.make_case(number, seed=20261202, inputs=YAML_INPUTS)
    outcome = fuzz.run_case(case, scratch, timeout=5.0, memory=1 << 30)
    assert outcome.kind in ("clean", "accepted"), f"{case.file}: {outcome.kind} {outcome.site}\n{outcome.detail}"


def test_the_engine_finds_a_planted_crash(scratch, monkeypatch):
    """The harness itself works: a case that makes `netdef check` raise is reported as a crash."""
    case = fuzz.Case(0, "nets/lenet.yaml", "name: n\nlayers: []\n")
    monkeypatch.setattr("netdef.cli.check.check_file", lambda *args: 1 / 0)
    assert fuzz.run_case(case, scratch).kind == "crash"


CAFFE_INPUTS = ("prototxt", "binary")


@pytest.fixture(scope="module")
def caffe_scratch():
    folder = fuzz.scratch_copy(CAFFE_INPUTS)
    fuzz.warm_up(folder, CAFFE_INPUTS)  # the commands' imports once before the forks; the unmutated files pass
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_shared("caffe", "fixtures")
@seed(20261203)
@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(number=st.integers(min_value=0, max_value=2 ** 32))
def test_mutated_caffe_files_get_a_clean_answer(caffe_scratch, number):
    """Prototxt nets and solvers through `netdef check` and `import`; a .caffemodel, .solverstate,
    .binaryproto mean and LMDB of Datums through `netdef test`, `train --snapshot` and `check`."""
    case = fuzz.make_case(number, seed=20261203, inputs=CAFFE_INPUTS)
    outcome = fuzz.run_case(case, caffe_scratch, timeout=5.0, memory=1 << 30)
    assert outcome.kind in ("clean", "accepted"), f"{case.file}: {outcome.kind} {outcome.site}\n{outcome.detail}"
