"""netdef expand -o: a net written to another folder still names the same files (its relative path fields,
as the layer classes mark them, are rebased); printed to stdout or written beside the original it is as
expanded."""
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "nets" / "lenet.yaml"


def netdef(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "netdef", *args], capture_output=True, text=True, cwd=cwd)


def sources(path):
    return [layer["data_param"]["source"] for layer in yaml.safe_load(Path(path).read_text())["layers"]
            if "data_param" in layer]


def test_expand_elsewhere_rebases_data_sources_and_the_result_runs_there(tmp_path):
    out = tmp_path / "other" / "dir" / "lenet.yaml"
    done = netdef("expand", str(LENET), "-o", str(out))
    assert done.returncode == 0, done.stderr
    moved = sources(out)
    assert sources(LENET) == ["../data/mnist5k", "../data/mnist5k"] and len(moved) == 2
    assert all((out.parent / s).resolve() == (ROOT / "data" / "mnist5k").resolve() for s in moved)
    summary = netdef("summary", out.name, cwd=out.parent)  # reads the data set to learn its shapes
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout == netdef("summary", str(LENET)).stdout.replace(str(LENET), out.name)


def test_expand_beside_the_original_or_to_stdout_keeps_paths(tmp_path):
    beside = ROOT / "nets" / f"expanded_{tmp_path.name}.yaml"
    try:
        assert netdef("expand", str(LENET), "-o", str(beside)).returncode == 0
        assert sources(beside) == sources(LENET)
    finally:
        beside.unlink(missing_ok=True)
    printed = netdef("expand", str(LENET))
    assert printed.returncode == 0 and "source: ../data/mnist5k" in printed.stdout


def test_nested_and_transform_paths_move_absolute_ones_stay(tmp_path):
    import numpy as np
    home = tmp_path / "home"
    (home / "images").mkdir(parents=True)
    np.save(home / "mean.npy", np.zeros((3, 8, 8), np.float32))
    net = home / "net.yaml"
    absolute = str(tmp_path / "elsewhere" / "weights.h5")
    net.write_text(f"""\
name: paths
blocks:
  images:
    layers:
      - {{name: "${{name}}", type: ImageData, top: ["${{name}}", label],
         image_data_param: {{source: images/list.txt, root_folder: images/, batch_size: 2}},
         transform_param: {{mean_file: mean.npy}}}}
layers:
  - {{use: images, name: data}}
  - {{name: out, type: HDF5Output, bottom: [data, label], hdf5_output_param: {{file_name: {absolute}}}}}
""")
    out = tmp_path / "sub" / "flat.yaml"
    done = netdef("expand", str(net), "-o", str(out))
    assert done.returncode == 0, done.stderr
    layers = yaml.safe_load(out.read_text())["layers"]
    assert layers[0]["image_data_param"]["source"] == "../home/images/list.txt"
    assert layers[0]["image_data_param"]["root_folder"] == "../home/images/"
    assert layers[0]["transform_param"]["mean_file"] == "../home/mean.npy"
    assert layers[0]["image_data_param"]["batch_size"] == 2
    assert layers[1]["hdf5_output_param"]["file_name"] == absolute
