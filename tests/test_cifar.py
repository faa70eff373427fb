"""CIFAR binary batches written in the exact format, read back by the Data layer; the download command
against a local HTTP server and a file:// mirror (never the internet)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest
import torch

from netdef.data import cifar
from netdef.api import load_graph, summarize
from netdef.cli.data import download
from netdef.errors import NetdefError


def data_net(folder, backend, split, batch, name="net.yaml", transform="{}"):
    path = folder / name
    path.write_text(f"""
name: cifar
layers:
  - {{name: data, type: Data, top: [data, label], transform_param: {transform},
     data_param: {{source: bins, backend: {backend}, split: {split}, batch_size: {batch}}}}}
""")
    return path


def random_records(rng, count, label_columns, classes):
    images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, classes, (count, label_columns), dtype=np.uint8)
    return images, labels


def test_cifar10_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "bins").mkdir()
    written = []
    for k in range(1, 6):
        images, labels = random_records(rng, 3, 1, 10)
        cifar.write_batch(tmp_path / "bins" / f"data_batch_{k}.bin", images, labels)
        written.append((images, labels))
    cifar.write_batch(tmp_path / "bins" / "test_batch.bin", *random_records(rng, 4, 1, 10))
    net = data_net(tmp_path, "CIFAR10", "train", 15)
    assert summarize(net, "TEST").row("data").shapes == [(15, 3, 32, 32), (15,)]
    images, labels = load_graph(net, "TEST").layers[0].impl.reader("TEST", 0, "cpu").next()
    assert torch.equal(images, torch.from_numpy(np.concatenate([w[0] for w in written])).float())
    assert labels.tolist() == np.concatenate([w[1] for w in written])[:, 0].tolist()
    # the record is R plane, G plane, B plane: pixel (row 1, column 2) of green is byte 1 + 1024 + 32 + 2
    raw = (tmp_path / "bins" / "data_batch_1.bin").read_bytes()
    assert raw[1 + 1024 + 32 + 2] == images[0, 1, 1, 2]


@pytest.mark.parametrize("backend, column", [("CIFAR100", 1), ("CIFAR100_COARSE", 0)])
def test_cifar100_fine_and_coarse_labels(tmp_path, backend, column):
    rng = np.random.default_rng(1)
    (tmp_path / "bins").mkdir()
    images, labels = random_records(rng, 6, 2, 20)
    cifar.write_batch(tmp_path / "bins" / "test.bin", images, labels)
    cifar.write_batch(tmp_path / "bins" / "train.bin", *random_records(rng, 2, 2, 20))
    net = data_net(tmp_path, backend, "test", 6, transform="{crop_size: 28}")
    got_images, got_labels = load_graph(net, "TEST").layers[0].impl.reader("TEST", 0, "cpu").next()
    assert got_labels.tolist() == labels[:, column].tolist()
    assert torch.equal(got_images, torch.from_numpy(images[:, :, 2:30, 2:30]).float())


def test_bad_cifar_sources(tmp_path):
    (tmp_path / "bins").mkdir()
    with pytest.raises(NetdefError, match=r"net.yaml:\d+:\d+: layer 'data' \(Data\): no data_batch_1.bin"):
        summarize(data_net(tmp_path, "CIFAR10", "train", 2))
    with pytest.raises(NetdefError, match="CIFAR has no split 'valid'"):
        summarize(data_net(tmp_path, "CIFAR10", "valid", 2))
    (tmp_path / "bins" / "test_batch.bin").write_bytes(bytes(3074))  # CIFAR-100 records are 3074 bytes
    with pytest.raises(NetdefError, match="not a CIFAR binary batch"):
        summarize(data_net(tmp_path, "CIFAR10", "test", 2))


def cifar10_archive(rng) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]:
            images, labels = random_records(rng, 2, 1, 10)
            payload = np.concatenate([labels, images.reshape(2, -1)], axis=1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_download_over_http_then_unpack_and_read(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    archive = cifar10_archive(np.random.default_rng(2))
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "cifar"
        download({"cifar-10-binary.tar.gz": hashlib.md5(archive).hexdigest()}, root,
                 [f"http://127.0.0.1:{server.server_port}/"], log=lambda line: None)
    finally:
        server.shutdown()
    folder = cifar.unpack(root, "cifar-10-binary.tar.gz", cifar.CifarBackend)
    assert cifar.summary(root, cifar.CifarBackend).endswith("10 images (split train), 2 images (split test)")
    images, labels = cifar.CifarBackend(folder, "test").load()
    assert images.shape == (2, 3, 32, 32) and labels.dtype == torch.int64


def test_download_command_refuses_a_damaged_archive(tmp_path, netdef_cli):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(cifar10_archive(np.random.default_rng(3)))
    status, _, err = netdef_cli("data", "cifar10", "--root", tmp_path / "out", "--mirror", tmp_path.as_uri())
    assert status == 2
    assert "could not download cifar-10-binary.tar.gz" in err and "checksum mismatch" in err
    assert not (tmp_path / "out" / "cifar-10-binary.tar.gz").exists()
