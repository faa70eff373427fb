"""Damaged data files are named with what is wrong with them, never a zlib or struct traceback."""
import pytest

from netdef.data.idx import IdxError, idx_shape, read_idx

from conftest import ROOT

IMAGES = ROOT / "data" / "mnist5k" / "t10k-images-idx3-ubyte.gz"
LABELS = ROOT / "data" / "mnist5k" / "t10k-labels-idx1-ubyte.gz"


@pytest.mark.parametrize("source", [IMAGES, LABELS])
def test_a_truncated_gzip_idx_file_is_named(tmp_path, source):
    damaged = tmp_path / source.name
    raw = source.read_bytes()
    damaged.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IdxError, match=f"{damaged} is a damaged or truncated gzip file"):
        read_idx(damaged)


def test_a_flipped_byte_in_a_gzip_idx_file_is_named(tmp_path):
    damaged = tmp_path / IMAGES.name
    raw = bytearray(IMAGES.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(IdxError, match="damaged or truncated gzip file"):
        read_idx(damaged)


def test_a_truncated_idx_header_is_named(tmp_path):
    damaged = tmp_path / "images.idx"
    damaged.write_bytes(b"\x00\x00\x08\x03\x00\x00\x01")
    for read in (idx_shape, read_idx):
        with pytest.raises(IdxError, match="truncated: its header ends before its 3 dimensions"):
            read(damaged)


def test_training_on_a_truncated_label_file_is_a_clean_error(tmp_path, capsys):
    """Through `netdef train`, as a user meets it: exit 2, the damaged file named, no traceback."""
    from netdef.cli import main
    data = tmp_path / "mnist"
    data.mkdir()
    for source in IMAGES, LABELS:
        (data / source.name).write_bytes(source.read_bytes())
    (data / "train-images-idx3-ubyte.gz").write_bytes((ROOT / "data/mnist5k/train-images-idx3-ubyte.gz").read_bytes())
    (data / "train-labels-idx1-ubyte.gz").write_bytes((ROOT / "data/mnist5k/train-labels-idx1-ubyte.gz").read_bytes()[:200])
    (tmp_path / "lenet.yaml").write_text((ROOT / "nets" / "lenet.yaml").read_text().replace("../data/mnist5k", str(data)))
    (tmp_path / "solver.yaml").write_text("net: lenet.yaml\nbase_lr: 0.01\nmax_iter: 1\nlog_dir: runs\n"
                                          "snapshot_prefix: snapshots/lenet\n")
    status = main(["train", str(tmp_path / "solver.yaml"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "train-labels-idx1-ubyte.gz is a damaged or truncated gzip file" in err


def test_a_flipped_byte_in_a_snapshot_says_corrupt_snapshot(tmp_path):
    """torch.load alone would load the flipped tensor silently; the zip's CRC-32 records catch it."""
    import torch

    from netdef.errors import NetdefError
    from netdef.train.snapshot import load_weights
    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.randn(1000)}, path)
    assert load_weights(path)["conv1.weight"].shape == (1000,)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(NetdefError, match=r"corrupt snapshot .*weights.pt: record '.*' fails its checksum"):
        load_weights(path)


def test_a_truncated_hdf5_file_is_named_with_its_list_line(tmp_path):
    import numpy as np

    from netdef.api import load_graph
    from netdef.errors import NetdefError
    from test_hdf5 import hdf5_net, write_files

    write_files(tmp_path, [3, 5], np.random.default_rng(0))
    damaged = tmp_path / "part1.h5"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    with pytest.raises(NetdefError, match=r"files.txt:2:1: layer 'h5' \(HDF5Data\): cannot read .*part1.h5: .*truncated"):
        reader = load_graph(hdf5_net(tmp_path)).layers[0].impl.reader("TRAIN", 0, "cpu")
        for _ in range(3):
            reader.next()
