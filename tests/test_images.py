"""ImageData on generated images: list and folder sources, in-memory and streamed reading, transforms
against hand computation, packed files, ten crops, and bad inputs reported at the list file's line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netdef.api import load_graph, summarize
from netdef.data.augment import average_crops, make_transform, ten_crops
from netdef.errors import NetdefError
from malformed_files import png_claiming

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("cat", "dog", "emu")


def make_images(root: Path, per_class=4, size=(10, 12)) -> dict:
    """PNG (lossless) class folders and a list file naming the same images; returns {path: RGB array}."""
    rng = np.random.default_rng(3)
    arrays, lines = {}, []
    for label, name in enumerate(CLASSES):
        (root / "images" / name).mkdir(parents=True)
        for k in range(per_class):
            array = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            path = root / "images" / name / f"{k}.png"
            Image.fromarray(array).save(path)
            arrays[path] = array
            lines.append(f"images/{name}/{k}.png {label}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return arrays


def image_net(folder: Path, image_param: str, transform: str = "{}", name="net.yaml") -> Path:
    path = folder / name
    path.write_text(f"""
name: images
layers:
  - {{name: data, type: ImageData, top: [data, label], image_data_param: {image_param}, transform_param: {transform}}}
  - {{name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {{num_output: 3}}}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
""")
    return path


def reader(net: Path, phase="TRAIN", seed=5):
    return load_graph(net, phase).layers[0].impl.reader(phase, seed, "cpu")


def batches(source, n=7):
    return [source.next() for _ in range(n)]


def assert_same(first, second):
    for a, b in zip(first, second):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_list_folder_stream_and_packed_give_the_same_batches(tmp_path):
    make_images(tmp_path)
    common = "batch_size: 5, shuffle: true, resize_shorter: 8"
    transform = "{crop_size: 6, mirror: true, mean_value: [10, 20, 30], scale: 0.5}"
    folder = batches(reader(image_net(tmp_path, f"{{source: images, {common}, num_workers: 0}}", transform)))
    listed = batches(reader(image_net(tmp_path, f"{{source: list.txt, {common}, num_workers: 0}}", transform)))
    streamed = reader(image_net(tmp_path, f"{{source: images, {common}, num_workers: 2, in_memory: NEVER}}",
                                transform))
    assert type(streamed).__name__ == "StreamReader"
    assert_same(folder, listed)
    assert_same(folder, batches(streamed))
    assert sorted(folder[0][1].tolist() + folder[1][1].tolist() + folder[2][1][:2].tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    packed = tmp_path / "packed.h5"
    subprocess.run([sys.executable, str(ROOT / "tools/convert_imageset.py"), str(tmp_path / "images"), str(packed),
                    "--resize_shorter", "8", "--workers", "0"], check=True, capture_output=True)
    for mode in ("ALWAYS", "NEVER"):
        source = f"{{source: packed.h5, batch_size: 5, shuffle: true, num_workers: 0, in_memory: {mode}}}"
        assert_same(folder, batches(reader(image_net(tmp_path, source, transform))))


def test_streamed_reader_resumes_exactly(tmp_path):
    make_images(tmp_path)
    net = image_net(tmp_path, "{source: list.txt, batch_size: 5, shuffle: true, num_workers: 1, in_memory: NEVER}",
                    "{crop_size: 8, mirror: true}")
    first = reader(net)
    batches(first, 4)
    state = first.state_dict()
    expected = batches(first, 5)
    resumed = reader(net)
    resumed.load_state_dict(state)
    assert_same(expected, batches(resumed, 5))


def test_test_phase_is_centre_crop_mean_scale_by_hand_and_deterministic(tmp_path):
    arrays = make_images(tmp_path)
    net = image_net(tmp_path, "{source: list.txt, batch_size: 12, num_workers: 0}",
                    "{crop_size: 6, mirror: true, mean_value: [10, 20, 30], scale: 0.5}")
    images, labels = reader(net, "TEST", seed=1).next()
    assert torch.equal(images, reader(net, "TEST", seed=99).next()[0])  # no randomness in TEST
    for k, (path, array) in enumerate(arrays.items()):  # list order = insertion order
        bgr = array[..., ::-1].transpose(2, 0, 1).astype(np.float32)
        top, left = (10 - 6) // 2, (12 - 6) // 2
        hand = (bgr[:, top:top + 6, left:left + 6] - np.array([10, 20, 30]).reshape(3, 1, 1)) * 0.5
        np.testing.assert_array_equal(images[k].numpy(), hand)
        assert labels[k] == CLASSES.index(path.parent.name)


def test_train_crops_and_mirrors_are_windows_of_the_image(tmp_path):
    arrays = make_images(tmp_path, per_class=8)
    net = image_net(tmp_path, "{source: list.txt, batch_size: 24, num_workers: 0, channel_order: RGB}",
                    "{crop_size: 7, mirror: true, scale: 2}")
    images, _ = reader(net).next()
    flipped = 0
    for k, array in enumerate(arrays.values()):
        chw = torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32) * 2)
        windows = [chw[:, t:t + 7, l:l + 7] for t in range(4) for l in range(6)]
        plain = any(torch.equal(images[k], w) for w in windows)
        mirrored = any(torch.equal(images[k], w.flip(-1)) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 3 <= flipped <= 21  # about half of 24 images are mirrored


def test_mean_file_is_subtracted_at_the_source_pixel(tmp_path):
    arrays = make_images(tmp_path)
    mean = np.random.default_rng(0).uniform(0, 255, (3, 10, 12)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    net = image_net(tmp_path, "{source: list.txt, batch_size: 12, num_workers: 0}",
                    "{crop_size: 4, mean_file: mean.npy, scale: 0.25}")
    images, _ = reader(net, "TEST").next()
    first = next(iter(arrays.values()))[..., ::-1].transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_allclose(images[0].numpy(), ((first - mean) * 0.25)[:, 3:7, 4:8], rtol=1e-6)
    bad = image_net(tmp_path, "{source: list.txt, batch_size: 12}", "{mean_file: mean.npy, crop_size: 4, "
                    "mean_value: 3}", name="bad.yaml")
    with pytest.raises(NetdefError, match=r"bad.yaml:\d+:\d+: layer 'data' \(ImageData\): give mean_file or mean_value"):
        summarize(bad)


def test_pca_lighting_shifts_each_image_along_the_eigenvectors(tmp_path):
    make_images(tmp_path)
    eigvec = [[0.6, 0.0, 0.8], [0.0, 1.0, 0.0], [-0.8, 0.0, 0.6]]
    lit = image_net(tmp_path, "{source: list.txt, batch_size: 12, num_workers: 0}",
                    f"{{scale: 0.5, pca_eigval: [30, 5, 1], pca_eigvec: {eigvec}, pca_std: 0.1}}")
    images, _ = load_graph(lit).layers[0].impl.load()
    many = images.repeat(200, 1, 1, 1)  # 2400 images: enough draws to measure alpha's spread
    params = load_graph(lit).layers[0].params["transform_param"]
    shift = make_transform(params, "TRAIN", 0, "cpu", tmp_path)(many) - many * 0.5
    assert torch.allclose(shift, shift[..., :1, :1].expand_as(shift), atol=1e-4)  # constant per image, channel
    pixels = shift[..., 0, 0].double() / 0.5
    alphas = pixels @ torch.tensor(eigvec, dtype=torch.float64).T / torch.tensor([30.0, 5.0, 1.0], dtype=torch.float64)
    assert torch.allclose(alphas.std(0), torch.full((3,), 0.1, dtype=torch.float64), rtol=0.1)
    assert abs(alphas.mean()) < 0.01
    assert torch.equal(make_transform(params, "TEST", 0, "cpu", tmp_path)(many), many * 0.5)  # TRAIN only


def test_ten_crops_and_their_average():
    images = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    crops = ten_crops(images, 3)
    assert crops.shape == (20, 1, 3, 3)
    assert torch.equal(crops[0:2], images[..., 0:3, 0:3])
    assert torch.equal(crops[6:8], images[..., 1:4, 2:5])
    assert torch.equal(crops[8:10], images[..., 0:3, 1:4])  # centre: (4-3)//2, (5-3)//2
    assert torch.equal(crops[10:12], images[..., 0:3, 0:3].flip(-1))
    scores = torch.randn(20, 4)
    expected = torch.softmax(scores, 1).view(10, 2, 4).mean(0)
    assert torch.allclose(average_crops(scores).exp(), expected, atol=1e-6)


@pytest.mark.parametrize("line, message, col", [
    ("images/cat/0.png", "list line without a label", 1),
    ("images/cat/0.png seven", "the label is not an integer", 18),
    ("images/cat/0.png 1.5", "the label is not an integer", 18),
    ("images/missing.png 1", "image file not found", 1),
])
def test_bad_list_lines_are_reported_at_their_line(tmp_path, netdef_cli, line, message, col):
    make_images(tmp_path)
    list_file = tmp_path / "list.txt"
    lines = list_file.read_text().splitlines()
    lines[2] = line
    list_file.write_text("\n".join(lines) + "\n")
    net = image_net(tmp_path, "{source: list.txt, batch_size: 2}")
    status, _, err = netdef_cli("check", net)
    assert status == 2
    assert f"{list_file}:3:{col}: layer 'data' (ImageData): {message}" in err


def test_unreadable_images_stop_or_are_skipped_with_a_count(tmp_path, capsys):
    make_images(tmp_path)
    (tmp_path / "images/dog/1.png").write_bytes(b"not an image")
    (tmp_path / "images/emu/2.png").write_bytes(b"")
    (tmp_path / "images/emu/3.png").write_bytes(png_claiming(30000, 30000))  # Pillow's own bomb error class
    strict = image_net(tmp_path, "{source: list.txt, batch_size: 2, num_workers: 0}")
    with pytest.raises(NetdefError) as info:
        reader(strict)
    text = str(info.value)
    assert f"{tmp_path / 'list.txt'}:6:1: layer 'data' (ImageData): cannot decode the image" in text
    assert f"{tmp_path / 'list.txt'}:11:1:" in text
    assert f"{tmp_path / 'list.txt'}:12:1:" in text and "decompression bomb" in text
    lenient = image_net(tmp_path, "{source: list.txt, batch_size: 9, num_workers: 0, skip_bad: true}",
                        name="lenient.yaml")
    images, labels = reader(lenient, "TEST").next()
    assert "skipped 3 of 12 images" in capsys.readouterr().out
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]



def test_a_list_line_outside_the_root_folder_is_refused(tmp_path):
    from netdef.data.images import read_list
    from netdef.errors import NetdefError
    (tmp_path / "root").mkdir()
    listing = tmp_path / "root" / "list.txt"
    listing.write_text("a.jpg 0\n../secret.jpg 1\n/etc/passwd 2\n")
    with pytest.raises(NetdefError) as caught:
        read_list(listing, tmp_path / "root")
    assert [(p.pos.line, p.message.split(" is outside")[0]) for p in caught.value.problems] == \
        [(2, "image ../secret.jpg"), (3, "image /etc/passwd")]
    assert len(read_list(listing, tmp_path / "root", allow_outside_root=True)) == 3
