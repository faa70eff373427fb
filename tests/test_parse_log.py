"""netdef parse-log (Caffe's parse_log.py): one CSV with a phase column, train rows per display line and
test rows per test pass, from Caffe's glog log, netdef's terminal output and a run folder."""
import csv
import io
import subprocess
import sys

import pytest

from conftest import SHARED, needs_shared
from runs_helpers import close_points, displayed_losses, logged_test_outputs, train_tiny

CAFFE_LOG = SHARED / "caffe" / "fixtures" / "train.log"


def parse_log(*args) -> list:
    result = subprocess.run([sys.executable, "-m", "netdef", "parse-log", *map(str, args)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def column(rows, phase, name) -> list:
    return [(int(row["iteration"]), float(row[name])) for row in rows if row["phase"] == phase and row[name]]


@needs_shared("caffe", "fixtures")
def test_caffe_log_rows_match_its_test_lines(tmp_path):
    output = tmp_path / "lenet.csv"
    result = subprocess.run([sys.executable, "-m", "netdef", "parse-log", str(CAFFE_LOG), "-o", str(output)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "26 rows from Caffe log" in result.stdout, result.stderr
    rows = list(csv.DictReader(output.open()))
    text = CAFFE_LOG.read_text()
    assert column(rows, "test", "accuracy") == logged_test_outputs(text, "accuracy")
    assert column(rows, "test", "loss") == logged_test_outputs(text, "loss")
    assert [r["phase"] for r in rows].count("test") == 5 and [r["phase"] for r in rows].count("train") == 21
    first_test = next(row for row in rows if row["phase"] == "test")
    # glog: the log starts at 07:24:58.979697; Test net output #0 of iteration 0 at 07:24:59.873829
    assert float(first_test["seconds"]) == pytest.approx(0.894132) and float(first_test["lr"]) == 0.01
    assert column(rows, "train", "smoothed_loss") == displayed_losses(text) + [(2000, 0.00270531)]
    assert float(rows[1]["iters_per_second"]) == pytest.approx(9.62649)


def test_netdef_log_and_run_folder_give_the_same_rows(tmp_path):
    folder, terminal = train_tiny(tmp_path)
    text = terminal.read_text()
    from_terminal, from_folder = parse_log(terminal), parse_log(folder)
    for rows in (from_terminal, from_folder):
        close_points(column(rows, "test", "accuracy"), logged_test_outputs(text, "accuracy"))
        close_points(column(rows, "train", "smoothed_loss")[:4], displayed_losses(text))
    assert [float(r["lr"]) for r in from_folder if r["phase"] == "train"] == \
        pytest.approx([float(r["lr"]) for r in from_terminal if r["phase"] == "train"][:4], rel=1e-5)
    # seconds without glog stamps add up the display lines' lapses: never decreasing
    seconds = [float(r["seconds"]) for r in from_terminal if r["phase"] == "train"]
    assert seconds == sorted(seconds) and seconds[-1] > 0
