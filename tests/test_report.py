"""netdef report: one self-contained page of a run (or two side by side), opened in headless Chromium as
the drawing is: no console messages, the curves, figures, snapshots, summary, drawing and configs there."""
import importlib.util
import re
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED, needs_shared
from runs_helpers import logged_test_outputs, train_tiny

_spec = importlib.util.spec_from_file_location("screenshot_html", ROOT / "tools" / "screenshot_html.py")
screenshot_html = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot_html)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    first = train_tiny(tmp_path_factory.mktemp("a"))
    second = train_tiny(tmp_path_factory.mktemp("b"), base_lr=0.05)
    return first, second


@pytest.fixture
def chromium():
    if screenshot_html.find_chromium() is None:
        pytest.skip("no chromium on PATH: .ci/run installs Debian's chromium (apt-get install chromium) as root")


def report(*args):
    result = subprocess.run([sys.executable, "-m", "netdef", "report", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_report_of_a_run_folder_holds_everything(two_runs, tmp_path):
    (folder, terminal), _ = two_runs
    page = tmp_path / "report.html"
    report(folder, "-o", page)
    text = page.read_text()
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", text)  # self-contained: nothing from the network
    final_accuracy = logged_test_outputs(terminal.read_text(), "accuracy")[-1][1]
    assert f"<td>test/accuracy</td><td>20</td><td>{final_accuracy:.6g}</td>" in text
    assert "snaps/tiny_iter_10.pt" in text and "snaps/tiny_iter_20.pt" in text
    assert "Peak memory" not in text and re.search(r"peak memory</td><td>[\d.]+ MiB resident", text)
    assert "iterations/s (median of display lines)" in text
    assert "2,594 parameters" in text  # the summary table of the resolved net
    assert "<iframe" in text and "srcdoc=" in text  # the drawing, embedded
    assert "solver.yaml as resolved" in text and "tiny.yaml as resolved" in text


def test_report_opens_in_chromium_without_console_messages(two_runs, tmp_path, chromium):
    (first, _), (second, _) = two_runs
    page = tmp_path / "both.html"
    report(first, second, "-o", page)
    dom, console = screenshot_html.run_chromium(page)
    assert console == []
    curves = dom[dom.index("class=\"curves\""):]
    assert "<svg" in curves[:2000] and f"{first} (base_lr 0.01): train" in dom
    assert f"{second} (base_lr 0.05): train" in dom
    assert re.search(r"<span class=\"del\">-base_lr: 0.01</span>\s*<span class=\"add\">\+base_lr: 0.05</span>", dom)
    shot = tmp_path / "both.png"
    _, console = screenshot_html.run_chromium(page, screenshot=shot, size=(1200, 900))
    assert console == [] and shot.stat().st_size > 10_000


@needs_shared("caffe", "fixtures")
def test_report_of_a_caffe_log_says_what_it_lacks(tmp_path):
    page = tmp_path / "caffe.html"
    report(SHARED / "caffe" / "fixtures" / "train.log", "-o", page)
    text = page.read_text()
    assert "Caffe log" in text and "lenet_iter_1000.caffemodel" in text
    assert "<td>test/accuracy</td><td>2000</td><td>0.961</td><td>1000</td><td>0.962</td>" in text
    assert "not a netdef run folder" in text


def test_three_runs_are_refused(two_runs, tmp_path):
    (first, _), _ = two_runs
    result = subprocess.run([sys.executable, "-m", "netdef", "report", str(first), str(first), str(first), "-o",
                             str(tmp_path / "x.html")], capture_output=True, text=True)
    assert result.returncode == 2 and "one run or two side by side" in result.stderr


def test_report_reads_the_resolved_net_of_a_net_with_relative_data_paths(tmp_path, netdef_subprocess):
    """The run folder's copy of the net keeps the original's relative paths (relative to the original's
    folder): the report rebases them, so the summary and drawing of `netdef train solvers/S.yaml` (the net
    in nets/, its data source relative to it, the run folder runs/S/1) are there, from any folder."""
    import os

    from solver_helpers import MNIST5K, write_solver, write_tiny_net
    nets, solvers = tmp_path / "nets", tmp_path / "solvers"
    nets.mkdir()
    solvers.mkdir()
    net = write_tiny_net(nets)
    net.write_text(net.read_text().replace(str(MNIST5K), os.path.relpath(MNIST5K, nets)))
    write_solver(solvers, "s.yaml", net="../nets/tiny.yaml", max_iter=2, display=1, test_iter=1,
                 test_interval=2, log_dir=None, snapshot_prefix="../snaps/tiny")
    trained = netdef_subprocess("train", "solvers/s.yaml", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    for cwd, run in ((tmp_path, "runs/s/1"), (solvers, tmp_path / "runs" / "s" / "1")):
        page = tmp_path / "report.html"
        result = netdef_subprocess("report", run, "-o", page, cwd=cwd)
        assert result.returncode == 0, result.stderr
        text = page.read_text()
        assert "cannot be read back" not in text
        assert "Tiny (TRAIN):" in text and "<iframe" in text  # the summary table and the drawing
