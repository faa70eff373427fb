"""HDF5Data: datasets named after the tops, from the .h5 files a text file lists (Caffe's layer)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from netdef.api import load_graph, summarize
from netdef.errors import NetdefError


def write_files(folder, sizes, rng):
    rows = []
    for k, size in enumerate(sizes):
        data = rng.normal(size=(size, 2, 3, 3)).astype(np.float32)
        label = rng.integers(0, 4, size)
        with h5py.File(folder / f"part{k}.h5", "w") as file:
            file["data"], file["label"] = data, label
        rows.append((data, label))
    (folder / "files.txt").write_text("".join(f"part{k}.h5\n" for k in range(len(sizes))))
    return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])


def hdf5_net(folder, shuffle=False, tops="[data, label]"):
    path = folder / "net.yaml"
    path.write_text(f"""
name: h5
layers:
  - {{name: h5, type: HDF5Data, top: {tops}, hdf5_data_param: {{source: files.txt, batch_size: 4, shuffle: {str(shuffle).lower()}}}}}
""")
    return path


def test_rows_of_all_files_in_order_and_shuffled(tmp_path):
    data, label = write_files(tmp_path, [3, 5], np.random.default_rng(0))
    net = hdf5_net(tmp_path)
    assert summarize(net).row("h5").shapes == [(4, 2, 3, 3), (4,)]
    reader = load_graph(net).layers[0].impl.reader("TRAIN", 0, "cpu")
    served = [reader.next() for _ in range(2)]
    assert torch.equal(torch.cat([b[0] for b in served]), torch.from_numpy(data))
    assert torch.cat([b[1] for b in served]).tolist() == label.tolist()
    assert served[0][1].dtype == torch.int64 and served[0][0].dtype == torch.float32
    shuffled = load_graph(hdf5_net(tmp_path, shuffle=True)).layers[0].impl.reader("TRAIN", 0, "cpu")
    epoch = torch.cat([shuffled.next()[0] for _ in range(2)])
    assert not torch.equal(epoch, torch.from_numpy(data))
    assert sorted(epoch.flatten().tolist()) == sorted(data.flatten().tolist())


def test_missing_dataset_and_file_are_named(tmp_path):
    write_files(tmp_path, [2], np.random.default_rng(1))
    with pytest.raises(NetdefError, match=r"files.txt:1:1: layer 'h5' \(HDF5Data\): .*part0.h5 has no dataset 'weight'"):
        summarize(hdf5_net(tmp_path, tops="[data, weight]"))
    (tmp_path / "files.txt").write_text("part0.h5\nmissing.h5\n")
    with pytest.raises(NetdefError, match=r"files.txt:2:1: .*cannot read .*missing.h5"):
        load_graph(hdf5_net(tmp_path)).layers[0].impl.reader("TRAIN", 0, "cpu")
