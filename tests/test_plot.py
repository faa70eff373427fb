"""netdef plot: the curves of a run folder, a netdef log and a real Caffe log are the points of their log
lines; several runs in one figure with a legend naming what differs; every output format."""
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from conftest import SHARED, needs_shared
from runs_helpers import close_points, displayed_losses, logged_test_outputs, train_tiny

from netdef.runs import read_run
from netdef.runs.plot import write_plot

CAFFE_LOG = SHARED / "caffe" / "fixtures" / "train.log"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("plot"))


def panel_points(figure, metric):
    """{legend label: [(x, y), ...]} of one panel."""
    panel = next(axes for axes in figure.axes if axes.get_ylabel() == metric)
    return {line.get_label(): [tuple(xy) for xy in line.get_xydata()] for line in panel.lines}


@pytest.mark.parametrize("source", ["folder", "terminal log", "folder log"])
def test_netdef_run_plots_the_points_of_its_log_lines(trained, tmp_path, source):
    folder, terminal = trained
    path = {"folder": folder, "terminal log": terminal, "folder log": folder / "train.log"}[source]
    figure = write_plot([read_run(path)], tmp_path / "curves.png", ["loss", "accuracy"])
    text = terminal.read_text()
    loss, accuracy = panel_points(figure, "loss"), panel_points(figure, "accuracy")
    name = str(path)
    # a run folder's events lack the closing display line (Iteration 20, loss = ...), which a log has
    trained_losses = [p for p in loss[f"{name}: train"] if p[0] <= 15]
    close_points(trained_losses, displayed_losses(text))
    close_points(loss[f"{name}: test"], logged_test_outputs(text, "loss"))
    close_points(accuracy[f"{name}: test"], logged_test_outputs(text, "accuracy"))
    assert [x for x, _ in accuracy[f"{name}: test"]] == [0, 10, 20]


@needs_shared("caffe", "fixtures")
def test_caffe_log_plots_the_points_of_its_log_lines(tmp_path):
    output = tmp_path / "caffe.svg"
    result = subprocess.run([sys.executable, "-m", "netdef", "plot", str(CAFFE_LOG), "-o", str(output),
                             "--metric", "loss,accuracy,lr"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "panels loss, accuracy, lr" in result.stdout
    ET.parse(output)  # well-formed SVG
    figure = write_plot([read_run(CAFFE_LOG)], tmp_path / "caffe.png", ["loss", "accuracy", "lr"])
    text = CAFFE_LOG.read_text()
    name = str(CAFFE_LOG)
    loss = panel_points(figure, "loss")
    # Caffe's closing `Iteration 2000, loss = 0.00270531` has no iter/s: it is the last point of the train curve
    close_points(loss[f"{name}: train"], displayed_losses(text) + [(2000, 0.00270531)])
    close_points(panel_points(figure, "accuracy")[f"{name}: test"], logged_test_outputs(text, "accuracy"))
    assert panel_points(figure, "accuracy")[f"{name}: test"][1] == (500, pytest.approx(0.96))
    assert panel_points(figure, "lr")[f"{name}: train"][1] == (100, pytest.approx(0.00992565))


@needs_shared("caffe", "fixtures")
def test_seconds_and_epochs(trained, tmp_path):
    folder, _ = trained
    caffe = read_run(CAFFE_LOG)
    figure = write_plot([caffe], tmp_path / "s.pdf", ["accuracy"], x="seconds")
    seconds = [x for x, _ in panel_points(figure, "accuracy")[f"{CAFFE_LOG}: test"]]
    # glog stamps: the first Test line at 07:24:59.873829, 0.894 s after the log's first line
    assert seconds[0] == pytest.approx(0.894132) and seconds == sorted(seconds)
    figure = write_plot([read_run(folder)], tmp_path / "e.png", ["accuracy"], x="epoch")
    epochs = [x for x, _ in panel_points(figure, "accuracy")[f"{folder}: test"]]
    assert epochs == pytest.approx([0, 10 * 16 / 4000, 20 * 16 / 4000])  # 4,000 digits, batches of 16
    result = subprocess.run([sys.executable, "-m", "netdef", "plot", str(CAFFE_LOG), "-o", str(tmp_path / "x.png"),
                             "--x", "epoch"], capture_output=True, text=True)
    assert result.returncode == 2 and "does not tell its epoch size" in result.stderr


def test_two_runs_legend_names_the_differing_solver_field(trained, tmp_path):
    folder, _ = trained
    other, _ = train_tiny(tmp_path, base_lr=0.05)
    output = tmp_path / "both.html"
    result = subprocess.run([sys.executable, "-m", "netdef", "plot", str(folder), str(other), "-o", str(output)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = output.read_text()
    assert "<svg" in page and not re.search(r"(src|href)=[\"']?(https?:|//)", page)  # self-contained
    assert f"{folder} (base_lr 0.01): train" in page and f"{other} (base_lr 0.05): train" in page
    write_plot([read_run(folder)], tmp_path / "one.png")
    with Image.open(tmp_path / "one.png") as png:
        assert png.format == "PNG" and png.width > 500


def test_bad_requests_are_clear_errors(trained, tmp_path):
    folder, _ = trained
    for args, message in [([str(folder), "--metric", "top5"], "no run has the metric 'top5'"),
                          ([str(tmp_path / "nothing")], "no run at"),
                          ([str(tmp_path)], "is not a netdef run folder")]:
        result = subprocess.run([sys.executable, "-m", "netdef", "plot", *args, "-o", str(tmp_path / "c.png")],
                                capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "netdef", "plot", str(folder), "-o", str(tmp_path / "c.gif")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown image format" in result.stderr


def test_each_run_has_its_folder_and_a_resume_continues_its_own(tmp_path):
    folder, _ = train_tiny(tmp_path)
    solver = tmp_path / "solver.yaml"
    netdef = [sys.executable, "-m", "netdef", "train", str(solver)]
    resumed = subprocess.run(netdef + ["--snapshot", "snaps/tiny_iter_10.pt", "--overwrite"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Run folder {folder} (" in resumed.stdout
    fresh = subprocess.run(netdef + ["--overwrite"], cwd=tmp_path, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["1", "2"]
    first = read_run(folder)
    # the resumed run dropped its folder's points after iteration 10 and wrote them again: each once
    assert [p.iteration for p in first.series["test/accuracy"]] == [0, 10, 20]
    assert (folder / "train.log").read_text().count("Restoring previous solver status") == 1
    assert [p.iteration for p in read_run(tmp_path / "runs" / "2").series["test/accuracy"]] == [0, 10, 20]
