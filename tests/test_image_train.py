"""End to end from the CLI: the shipped tiny image-folder solver trains on a generated image folder, and
`netdef test --oversample` scores its snapshot with ten crops, checked against a hand-made ten-crop pass."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netdef.api import load_graph, load_net
from netdef.train.snapshot import load_weights

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_folder_solver_trains_and_ten_crop_tests(tmp_path, netdef_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder, runs/tiny_folder_solver, is in the working folder
    subprocess.run([sys.executable, str(ROOT / "tools/make_image_folder.py"), str(tmp_path / "data/tiny_images"),
                    "--train", "16", "--test", "5"], check=True, capture_output=True)
    (tmp_path / "nets").mkdir()
    (tmp_path / "solvers").mkdir()
    shutil.copy(ROOT / "nets/tiny_folder.yaml", tmp_path / "nets")
    solver = (ROOT / "solvers/tiny_folder_solver.yaml").read_text()
    # 48 training images: 2 epochs of batch 24 per 4 iterations; 15 test images: one test batch
    solver = re.sub(r"max_iter: \d+", "max_iter: 40", solver)
    solver = re.sub(r"test_iter: \d+", "test_iter: 1", solver).replace("test_interval: 60", "test_interval: 40")
    (tmp_path / "solvers/tiny_folder_solver.yaml").write_text(solver + "device: cpu\n")
    status, out, err = netdef_cli("train", tmp_path / "solvers/tiny_folder_solver.yaml")
    assert status == 0, err
    accuracy = [float(v) for v in re.findall(r"Test net output #0: accuracy = ([\d.]+)", out)]
    assert accuracy[0] < 0.7 and accuracy[-1] >= 0.8  # before training vs after 40 iterations
    snapshot = tmp_path / "snapshots/tiny_folder_iter_40.pt"
    net_file = tmp_path / "nets/tiny_folder.yaml"
    status, out, err = netdef_cli("test", "--model", net_file, "--weights", snapshot, "--iterations", 1,
                                  "--oversample", "--device", "cpu")
    assert status == 0, err
    reported = float(re.search(r"^loss = ([\d.e-]+)", out, re.M).group(1))

    # By hand: uncropped test images, the ten crops, softmax averaged per image, cross-entropy
    graph = load_graph(net_file, "TEST")
    params = graph.layers[0].params["transform_param"]
    images, labels = graph.layers[0].impl.load()
    full = (images.float() - params["mean_value"][0]) * params["scale"]
    net = load_net(net_file, "TEST").eval()
    net.load_state_dict(load_weights(snapshot), strict=False)
    probabilities = []
    for top, left in [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]:
        crop = full[..., top:top + 28, left:left + 28]
        for view in (crop, crop.flip(-1)):
            scores = torch.nn.functional.linear(net.pool2(net.conv2(net.pool1(net.conv1(view).relu())).relu())
                                                .flatten(1), net.score.weight, net.score.bias)
            probabilities.append(scores.softmax(1))
    mean = torch.stack(probabilities).mean(0)
    expected = -mean[torch.arange(15), labels].log().mean()
    assert reported == pytest.approx(expected.item(), rel=1e-4)
