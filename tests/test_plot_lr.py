"""netdef plot-lr: the learning-rate curve of a solver file, without building its net."""
import subprocess
import sys
import xml.etree.ElementTree as ET

from PIL import Image

from netdef.cli import main

LENET_SOLVER = """\
net: no_such_net.yaml    # never read: plotting needs the solver alone
base_lr: 0.01
lr_policy: inv
gamma: 0.0001
power: 0.75
max_iter: 10000
"""


def write(tmp_path, text, name="solver.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_png_of_caffes_lenet_schedule(tmp_path):
    solver = write(tmp_path, LENET_SOLVER)
    image = tmp_path / "lr.png"
    result = subprocess.run([sys.executable, "-m", "netdef", "plot-lr", str(solver), "-o", str(image),
                             "--iterations", "101"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # caffe.md: LeNet's inv policy gives lr(100) = 0.00992565
    assert "lr 0.01 at 0 to 0.00992565 at 100" in result.stdout
    with Image.open(image) as png:
        assert png.format == "PNG" and png.width > 300 and png.height > 200


def test_svg_with_log_axis_and_max_iter_default(tmp_path, capsys):
    solver = write(tmp_path, LENET_SOLVER.replace("lr_policy: inv", "lr_policy: multistep\nstepvalue: [3000, 6000]")
                   .replace("gamma: 0.0001", "gamma: 0.1"))
    image = tmp_path / "lr.svg"
    assert main(["plot-lr", str(solver), "-o", str(image), "--log"]) == 0
    assert "10000 iterations, lr 0.01 at 0 to 0.0001 at 9999" in capsys.readouterr().out
    root = ET.parse(image).getroot()
    assert root.tag.endswith("svg")
    texts = "".join(root.itertext())
    assert "multistep" in texts and "stepvalue [3000, 6000]" in texts


def test_bad_solver_is_a_positioned_error(tmp_path, capsys):
    solver = write(tmp_path, LENET_SOLVER.replace("gamma: 0.0001\n", ""))
    assert main(["plot-lr", str(solver), "-o", str(tmp_path / "lr.png")]) == 2
    assert f"{solver}:3:" in capsys.readouterr().err
    assert main(["plot-lr", str(write(tmp_path, LENET_SOLVER, "ok.yaml")), "-o", str(tmp_path / "lr.gif")]) == 2
    assert "unknown image format" in capsys.readouterr().err
