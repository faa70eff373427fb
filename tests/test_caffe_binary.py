"""Caffe's binary files against the files real BVLC Caffe 1.0 wrote (../shared/caffe/fixtures): .caffemodel
weights in `netdef test`, `train --weights` and `export`, .solverstate resumes, LMDB and LevelDB Datum data,
.binaryproto means, and tools/convert_imageset.py and tools/compute_image_mean.py writing them."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import netdef
from conftest import ROOT, SHARED, needs_shared
from netdef.caffe import proto
from netdef.caffe.caffemodel import read_caffemodel

FIXTURES = SHARED / "caffe" / "fixtures"
pytestmark = needs_shared("caffe", "fixtures")
LENET = FIXTURES / "lenet_train_test.prototxt"  # Caffe's own file, read as it is
CAFFEMODEL = FIXTURES / "lenet_iter_1000.caffemodel"
SOLVERSTATE = FIXTURES / "lenet_iter_1000.solverstate"


def caffe_log_outputs(log: str) -> dict:
    """The test outputs Caffe's `caffe test` log printed at its end: {blob: printed text}."""
    return dict(re.findall(r"caffe\.cpp:\d+\] (\w+) = (\S+)", log))


def caffe_solver(tmp_path, **fields) -> "Path":
    """Caffe's LeNet solver prototxt, training Caffe's net prototxt where both lie (its LMDB sources are
    relative to it, as Caffe ran them), with `fields` changed or added; snapshots go to tmp_path."""
    text = (FIXTURES / "lenet_solver.prototxt").read_text()
    text = text.replace('net: "lenet_train_test.prototxt"', f'net: "{LENET}"')
    for name, value in fields.items():
        line = f"{name}: {value!r}".replace("'", '"')
        text, count = re.subn(rf"^{name}: .*$", line, text, flags=re.M)
        text += "" if count else line + "\n"
    path = tmp_path / "lenet_solver.prototxt"
    path.write_text(text, encoding="utf-8")
    return path


def test_caffemodel_blobs_are_caffes_layers():
    blobs = read_caffemodel(CAFFEMODEL)
    assert {name: [tuple(t.shape) for t in tensors] for name, tensors in blobs.items()} == {
        "conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
        "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}
    raw = proto.parse("NetParameter", CAFFEMODEL.read_bytes())
    conv1 = next(layer for layer in raw.layer if layer.name == "conv1")
    assert blobs["conv1"][0].flatten()[:5].tolist() == list(conv1.blobs[0].data[:5])


def test_netdef_test_with_caffes_weights_gives_caffes_log(tmp_path, netdef_cli):
    """`caffe test -iterations 10` on these weights printed accuracy = 0.962, loss = 0.148251."""
    status, out, err = netdef_cli("test", "--model", LENET, "--weights", CAFFEMODEL,
                                  "--iterations", 10)
    assert status == 0, err
    caffe = (FIXTURES / "test_iter_1000.log").read_text()
    expected = caffe_log_outputs(caffe)
    assert expected == {"accuracy": "0.962", "loss": "0.148251"}
    assert re.search(r"^accuracy = (\S+)$", out, re.M).group(1) == expected["accuracy"]
    assert re.search(r"^loss = (\S+) ", out, re.M).group(1) == expected["loss"]
    # every batch as Caffe printed it: accuracies exactly, losses to the last printed digit's rounding
    # (float32 sums in another order)
    caffe_batches = re.findall(r"\] Batch (\d+), (\w+) = (\S+)", caffe)
    ours = re.findall(r"^Batch (\d+), (\w+) = (\S+)$", out, re.M)
    assert [row[:2] for row in ours] == [row[:2] for row in caffe_batches] and len(ours) == 20
    for (_, blob, value), (_, _, caffe_value) in zip(ours, caffe_batches):
        assert float(value) == (float(caffe_value) if blob == "accuracy" else pytest.approx(float(caffe_value), rel=1e-5))
    assert "Not every blob" not in out


def test_solverstate_resume_restores_caffes_iteration_and_history(tmp_path):
    from netdef.train.config import load_solver
    from netdef.train.solver import Solver
    solver = Solver(load_solver(caffe_solver(tmp_path)))
    solver.restore(SOLVERSTATE)
    assert solver.iter == 1000
    state = proto.parse("SolverState", SOLVERSTATE.read_bytes())
    history = solver.state.updater.state_dict()["history"]["history"]
    order = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "ip1.weight", "ip1.bias", "ip2.weight",
             "ip2.bias"]  # Caffe's learnable_params_: layer order, each layer's blob order
    assert sorted(history) == sorted(order)
    for name, blob in zip(order, state.history):
        assert history[name].flatten().tolist() == list(blob.data), name
    weights = read_caffemodel(FIXTURES / state.learned_net)
    assert torch.equal(solver.train.net.get_parameter("ip2.weight"), weights["ip2"][0])


def test_train_resumes_a_solverstate_at_iteration_1000(tmp_path, netdef_subprocess):
    """Caffe's own log at iteration 1000: the test net's accuracy = 0.962, loss = 0.148251, lr = 0.00931012."""
    solver = caffe_solver(tmp_path, max_iter=1010, test_interval=10, display=5,
                          snapshot=0)
    run = netdef_subprocess("train", solver, "--snapshot", SOLVERSTATE, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    log = run.stdout + run.stderr
    assert f"Restoring previous solver status from {SOLVERSTATE}" in log
    assert "Restored Caffe's solver state: iteration 1000, 8 history blobs" in log
    at_1000 = log[log.index("Iteration 1000, Testing net (#0)"):]
    assert "Test net output #0: accuracy = 0.962" in at_1000 and "loss = 0.148251 (* 1 = 0.148251 loss)" in at_1000
    assert "Iteration 1000, lr = 0.00931012" in log
    assert "Iteration 1005" in log and "Iteration 1010, Testing net (#0)" in log
    assert (tmp_path / "lenet_iter_1010.pt").is_file()


def test_train_from_caffes_lmdb_data(tmp_path, netdef_subprocess):
    """A fresh LeNet run on Caffe's LMDBs: the loss falls from ln(10) within a few iterations."""
    solver = caffe_solver(tmp_path, max_iter=30, test_interval=30, test_iter=2, display=10,
                          snapshot=0, random_seed=1)
    run = netdef_subprocess("train", solver, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    losses = [float(v) for v in re.findall(r"Iteration \d+ .*loss = (\S+)", run.stdout)]
    assert losses[0] > 2.0 and losses[-1] < 1.5, run.stdout
    accuracy = float(re.findall(r"Test net output #0: accuracy = (\S+)", run.stdout)[-1])
    assert accuracy > 0.5


def test_snapshot_to_caffemodel_round_trip_is_bitwise(tmp_path, netdef_cli, monkeypatch):
    """A netdef snapshot of LeNet after 20 iterations on Caffe's LMDBs, exported as a .caffemodel."""
    from netdef.tools.export import deploy_net, example_inputs
    from netdef.train.snapshot import load_snapshot
    monkeypatch.chdir(tmp_path)
    net = LENET
    solver = caffe_solver(tmp_path, max_iter=20, test_interval=0, display=0, snapshot=0, random_seed=3,
                          snapshot_prefix="lenet")
    status, _, err = netdef_cli("train", solver)
    assert status == 0, err
    snapshot, model = tmp_path / "lenet_iter_20.pt", tmp_path / "lenet.caffemodel"
    status, out, err = netdef_cli("export", net, "--weights", snapshot, "-o", model)
    assert status == 0, err
    assert f"{model}: Caffe NetParameter 'LeNet', 10 layers, 8 blobs" in out
    # the blobs are the snapshot's, bit for bit, in Caffe's order and shapes
    stored = load_snapshot(snapshot)["weights"]
    for layer, blobs in read_caffemodel(model).items():
        assert [torch.equal(blob, stored[f"{layer}.{name}"]) for blob, name in zip(blobs, ("weight", "bias"))] == [True] * 2
    # the same outputs: netdef test's printout and the deploy net's forward
    scored = [netdef_cli("test", "--model", net, "--weights", weights, "--iterations", 3)[1]
              for weights in (snapshot, model)]
    assert "accuracy = " in scored[0] and scored[0] == scored[1]
    forwards = []
    for weights in (snapshot, model):
        deployed, graph, info = deploy_net(net, weights)
        forwards.append(deployed(**{deployed.input_names[b]: t for b, t in example_inputs(graph, info).items()}))
    assert torch.equal(forwards[0]["ip2"], forwards[1]["ip2"])


def test_exported_caffemodel_has_caffes_layout(tmp_path, netdef_cli):
    """Layer for layer what Caffe's own LeNet snapshot holds: names, types, bottoms, tops, BlobShapes."""
    model = tmp_path / "lenet.caffemodel"
    status, _, err = netdef_cli("export", LENET, "--weights", CAFFEMODEL, "-o", model)
    assert status == 0, err
    ours = proto.parse("NetParameter", model.read_bytes())
    caffes = proto.parse("NetParameter", CAFFEMODEL.read_bytes())

    def layout(net):
        return {layer.name: (layer.type, list(layer.bottom), list(layer.top), [list(b.shape.dim) for b in layer.blobs])
                for layer in net.layer}
    theirs = layout(caffes)
    assert ours.name == caffes.name and {"accuracy"} == set(layout(ours)) - set(theirs)
    assert {name: row for name, row in layout(ours).items() if name in theirs} == theirs
    assert all(layer.phase == 1 for layer in ours.layer)  # TEST
    assert [list(b.data) for b in ours.layer[1].blobs] == [list(b.data) for b in caffes.layer[1].blobs]


def test_v1_caffemodel_with_legacy_blob_shapes(tmp_path, netdef_cli):
    """A pre-2015 file: legacy `layers` (V1LayerParameter, type an enum number) whose blobs have only
    num/channels/height/width (an InnerProduct weight 1 x 1 x N x K), as Caffe wrote them then."""
    caffes = proto.parse("NetParameter", CAFFEMODEL.read_bytes())
    legacy = proto.message("NetParameter")(name="LeNet")
    for layer in caffes.layer:
        v1 = legacy.layers.add(name=layer.name, type=4, bottom=layer.bottom, top=layer.top)
        for blob in layer.blobs:
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            v1.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=blob.data)
    model = tmp_path / "v1.caffemodel"
    model.write_bytes(legacy.SerializeToString())
    status, out, err = netdef_cli("test", "--model", LENET, "--weights", model, "--iterations", 10)
    assert status == 0, err
    assert "\naccuracy = 0.962\n" in out and "\nloss = 0.148251 " in out


def test_train_weights_from_a_caffemodel_reports_the_table(tmp_path, netdef_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    solver = caffe_solver(tmp_path, max_iter=1, test_interval=0, display=1, snapshot=0)
    status, out, err = netdef_cli("train", solver, "--weights", CAFFEMODEL)
    assert status == 0, err
    assert f"Copying weights from {CAFFEMODEL}" in out
    assert "8 blobs copied, 0 shape mismatches, 0 missing in the file, 0 in the file but not in this net" in out


def test_caffemodel_of_another_net_is_a_table_not_a_crash(tmp_path, netdef_cli):
    text = LENET.read_text().replace('name: "ip1"', 'name: "fc1"').replace("num_output: 500", "num_output: 300")
    path = tmp_path / "changed.prototxt"
    path.write_text(text.replace('source: "', f'source: "{FIXTURES}/'))
    status, _, err = netdef_cli("test", "--model", path, "--weights", CAFFEMODEL, "--iterations", 1)
    assert status == 2 and "2 layer(s) would be scored with their fillers: fc1, ip2" in err
    assert re.search(r"ip1 +0 +not in net +500x800", err)  # blob 0 of a layer this net lacks
    assert re.search(r"ip2 +weight +shape mismatch +10x500 +10x300", err)


@pytest.mark.parametrize("size", [0, 7, 50_000, 1_000_000])
def test_truncated_caffemodel_names_the_file(tmp_path, netdef_cli, size):
    damaged = tmp_path / "cut.caffemodel"
    damaged.write_bytes(CAFFEMODEL.read_bytes()[:size])
    status, _, err = netdef_cli("test", "--model", LENET, "--weights", damaged, "--iterations", 1)
    assert status == 2 and f"{damaged} is {'empty' if size == 0 else 'damaged'}" in err


def test_truncated_solverstate_and_missing_learned_net(tmp_path, netdef_subprocess):
    solver = caffe_solver(tmp_path, max_iter=1001)
    cut = tmp_path / "cut.solverstate"
    cut.write_bytes(SOLVERSTATE.read_bytes()[:3000])
    run = netdef_subprocess("train", solver, "--snapshot", cut, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr and f"{cut} is damaged" in run.stderr
    alone = tmp_path / "alone" / SOLVERSTATE.name
    alone.parent.mkdir()
    shutil.copy(SOLVERSTATE, alone)
    from netdef.train.config import load_solver
    from netdef.train.solver import Solver
    with pytest.raises(netdef.NetdefError, match=re.escape(f"the weights of {alone} are missing: no "
                                                           "'lenet_iter_1000.caffemodel' beside it")):
        Solver(load_solver(solver)).restore(alone)


def digit_images(tmp_path, count=12):
    """`count` MNIST digits from Caffe's LMDB as PNG files with a Caffe list file (`path label` lines)."""
    from PIL import Image
    from netdef.data.datum import load
    images, labels = load("LMDB", FIXTURES / "mnist5k_test_lmdb")
    folder = tmp_path / "digits"
    folder.mkdir()
    lines = []
    for k in range(count):
        Image.fromarray(images[k, 0].numpy()).save(folder / f"d{k}.png")
        lines.append(f"d{k}.png {int(labels[k])}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt", images[:count], labels[:count]


def convert_imageset(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert_imageset.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("backend, encoded", [("lmdb", False), ("lmdb", True), ("leveldb", False)])
def test_convert_imageset_writes_a_database_the_data_layer_reads(tmp_path, backend, encoded):
    from netdef.data.datum import load, records
    list_file, images, labels = digit_images(tmp_path)
    output, kind = tmp_path / f"digits_{backend}", backend.upper()
    run = convert_imageset(list_file, output, "--backend", backend, "--gray", *(["--encoded"] if encoded else []))
    assert run.returncode == 0, run.stderr
    keys = [key for key, _ in records(kind, output)]
    assert keys[:2] == [b"00000000_d0.png", b"00000001_d1.png"]
    datum = proto.parse("Datum", dict(records(kind, output))[b"00000003_d3.png"])
    assert datum.encoded == encoded and datum.label == int(labels[3])
    if encoded:
        assert datum.data == (list_file.parent / "d3.png").read_bytes()  # the file as it is, as Caffe stores it
    else:
        assert (datum.channels, datum.height, datum.width) == (1, 28, 28)
    stored, stored_labels = load(kind, output)
    assert torch.equal(stored, images) and torch.equal(stored_labels, labels)
    again = convert_imageset(list_file, output, "--backend", backend)
    assert again.returncode == 2 and f"{output} exists" in again.stderr


def test_convert_imageset_shuffle_and_resize(tmp_path):
    from netdef.data.datum import load
    list_file, _, labels = digit_images(tmp_path)
    output = tmp_path / "small_lmdb"
    run = convert_imageset(list_file, output, "--backend", "lmdb", "--shuffle", "--resize_height", 14,
                           "--resize_width", 10)
    assert run.returncode == 0, run.stderr
    stored, stored_labels = load("LMDB", output)
    assert stored.shape == (12, 3, 14, 10)
    assert sorted(stored_labels.tolist()) == sorted(labels.tolist()) and stored_labels.tolist() != labels.tolist()


def test_leveldb_and_colour_encoded_records(tmp_path, write_yaml, netdef_cli):
    """A LevelDB of encoded colour JPEG and PNG Datums (as convert_imageset --backend leveldb --encoded):
    decoded to Caffe's B, G, R order, and read through a Data layer."""
    import io
    import plyvel
    from PIL import Image
    from netdef.data.datum import datum_bytes, load
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    folder = tmp_path / "colour_leveldb"
    database = plyvel.DB(str(folder), create_if_missing=True)
    for k, fmt in enumerate(["PNG", "PNG", "JPEG"]):
        stream = io.BytesIO()
        Image.fromarray(rgb).save(stream, format=fmt)
        database.put(f"{k:08d}".encode(), datum_bytes(None, k + 1, stream.getvalue()))
    database.close()
    images, labels = load("LEVELDB", folder)
    assert images.shape == (3, 3, 6, 8) and labels.tolist() == [1, 2, 3]
    assert np.array_equal(images[0].numpy(), rgb[:, :, ::-1].transpose(2, 0, 1))  # B, G, R
    assert load("LEVELDB", folder, color=False)[0].shape == (3, 1, 6, 8)  # force_gray
    for transform, shape in [("{}", "2x3x6x8"), ("{force_gray: true}", "2x1x6x8")]:
        net = write_yaml(f"""
            name: colour
            layers:
              - {{name: data, type: Data, top: [data, label], transform_param: {transform},
                  data_param: {{source: {folder}, batch_size: 2, backend: LEVELDB}}}}
              - {{name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {{num_output: 4}}}}
              - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
        """)
        status, out, err = netdef_cli("summary", net)
        assert status == 0, err
        assert re.search(rf"^data +Data +{shape} 2 ", out, re.M), out


def test_force_color_decodes_gray_records_in_colour(tmp_path):
    from netdef.data.datum import load
    list_file, images, _ = digit_images(tmp_path, count=2)
    output = tmp_path / "gray_lmdb"
    assert convert_imageset(list_file, output, "--backend", "lmdb", "--encoded").returncode == 0
    assert load("LMDB", output)[0].shape == (2, 1, 28, 28)  # as stored: a gray PNG
    colour = load("LMDB", output, color=True)[0]
    assert colour.shape == (2, 3, 28, 28) and all(torch.equal(colour[:, c], images[:, 0]) for c in range(3))


def lmdb_net(write_yaml, source):
    return write_yaml(f"""
        name: digits
        layers:
          - {{name: data, type: Data, top: [data, label], data_param: {{source: {source}, batch_size: 4, backend: LMDB}}}}
          - {{name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {{num_output: 10}}}}
          - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
    """)


def writable_copy(folder, target):
    """A copy of a fixture folder that the test may change (the shared fixtures are read-only)."""
    shutil.copytree(folder, target)
    for path in [target, *target.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_truncated_lmdb_is_a_positioned_error(tmp_path, write_yaml, netdef_subprocess):
    """Reading past the end of a truncated data.mdb would kill the process (SIGBUS): it is refused first."""
    source = writable_copy(FIXTURES / "mnist5k_test_lmdb", tmp_path / "cut_lmdb")
    data = source / "data.mdb"
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    run = netdef_subprocess("check", lmdb_net(write_yaml, source))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert re.search(rf"net\.yaml:3:\d+: .*{re.escape(str(data))} is truncated: 522,240 bytes, its header says "
                     r"1,044,480", run.stderr)


def test_lmdb_with_damaged_pages_is_named(tmp_path, write_yaml, netdef_cli):
    """Flipped bytes in a B-tree page (LMDB keeps no checksums: flipped pixels go unnoticed, as in Caffe)."""
    source = writable_copy(FIXTURES / "mnist5k_test_lmdb", tmp_path / "flipped_lmdb")
    data = bytearray((source / "data.mdb").read_bytes())
    data[8192:8208] = bytes(b ^ 0xFF for b in data[8192:8208])  # page 2: the database's first tree page
    (source / "data.mdb").write_bytes(bytes(data))
    status, _, err = netdef_cli("check", lmdb_net(write_yaml, source))
    assert status == 2 and f"{source} is a damaged LMDB: mdb_cursor_get: MDB_CORRUPTED" in err


def test_bad_datum_records(tmp_path, write_yaml, netdef_cli):
    import lmdb
    source = tmp_path / "bad_lmdb"
    env = lmdb.open(str(source), map_size=1 << 20)
    with env.begin(write=True) as transaction:
        transaction.put(b"00000000", b"\xff\xff\xff")
    env.close()
    status, _, err = netdef_cli("check", lmdb_net(write_yaml, source))
    assert status == 2 and f"{source}: record '00000000' is not a Caffe Datum" in err
    status, _, err = netdef_cli("check", lmdb_net(write_yaml, tmp_path / "nothing_here"))
    assert status == 2 and "is not a folder" in err


def test_reading_an_lmdb_writes_nothing(tmp_path):
    from netdef.data.datum import load
    source = FIXTURES / "mnist5k_train_lmdb"
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in source.iterdir()}
    images, labels = load("LMDB", source)
    assert images.shape == (4000, 1, 28, 28) and images.dtype == torch.uint8 and labels.shape == (4000,)
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in source.iterdir()} == before


def test_binaryproto_mean(tmp_path):
    """compute_image_mean -o X.binaryproto writes Caffe's 1 x C x H x W BlobProto; mean_file reads it (and
    BlobShape-style files too)."""
    from netdef.data.mean import load_mean
    from netdef.data.datum import load
    output = tmp_path / "mean.binaryproto"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "compute_image_mean.py"),
                          FIXTURES / "mnist5k_test_lmdb", "--backend", "LMDB", "-o", output],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    blob = proto.parse("BlobProto", output.read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 1, 28, 28)
    images, _ = load("LMDB", FIXTURES / "mnist5k_test_lmdb")
    expected = images.double().mean(0).float().numpy()
    assert np.array_equal(load_mean(output), expected)
    shaped = proto.message("BlobProto")()
    shaped.shape.dim.extend([1, 1, 28, 28])
    shaped.data.extend(expected.reshape(-1).tolist())
    (tmp_path / "shaped.binaryproto").write_bytes(shaped.SerializeToString())
    assert np.array_equal(load_mean(tmp_path / "shaped.binaryproto"), expected)


def test_caffe_blob_order_is_the_layer_classes_order(tmp_path, write_yaml):
    """BatchNorm with scale_bias holds its blobs as NVIDIA Caffe does (mean, variance, scale_factor, then
    scale and bias), not in its module's order (parameters before buffers): a .caffemodel follows the
    layer class, both ways."""
    from netdef.tools.export import deploy_net, export_caffemodel
    net = write_yaml("""
        name: order
        layers:
          - {name: input, type: Input, top: data, input_param: {shape: {dim: [2, 3, 5, 5]}}}
          - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 3}}
          - {name: bn, type: BatchNorm, bottom: conv, top: bn, batch_norm_param: {scale_bias: true}}
    """)
    generator = torch.Generator().manual_seed(0)
    shapes = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "bn.mean": (4,), "bn.variance": (4,),
              "bn.scale_factor": (1,), "bn.weight": (4,), "bn.bias": (4,)}
    state = {key: torch.rand(shape, generator=generator) + 0.5 for key, shape in shapes.items()}
    torch.save(state, tmp_path / "state.pt")
    model = tmp_path / "order.caffemodel"
    export_caffemodel(net, model, tmp_path / "state.pt")
    bn = next(layer for layer in proto.parse("NetParameter", model.read_bytes()).layer if layer.name == "bn")
    assert [list(blob.data) for blob in bn.blobs] == [state[f"bn.{name}"].tolist() for name in
                                                       ("mean", "variance", "scale_factor", "weight", "bias")]
    deployed, _, _ = deploy_net(net, model)
    assert all(torch.equal(deployed.state_dict()[key], value) for key, value in state.items())


def test_float_data_records_and_double_blobs(tmp_path):
    """Datums holding float_data (as Caffe's HDF5-less float sets) load as float32; BlobProtos holding
    double_data read as float32 of their shape."""
    import lmdb
    from netdef.caffe.caffemodel import blob_tensor
    from netdef.data.datum import load
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    env = lmdb.open(str(tmp_path / "float_lmdb"), map_size=1 << 20)
    with env.begin(write=True) as transaction:
        for k in range(3):
            datum = proto.message("Datum")(channels=2, height=3, width=4, label=k, float_data=(values + k).ravel())
            transaction.put(f"{k:08d}".encode(), datum.SerializeToString())
    env.close()
    images, labels = load("LMDB", tmp_path / "float_lmdb")
    assert images.dtype == torch.float32 and torch.equal(images[2], torch.from_numpy(values + 2))
    assert labels.tolist() == [0, 1, 2]
    blob = proto.message("BlobProto")(double_data=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    blob.shape.dim.extend([2, 3])
    assert torch.equal(blob_tensor(blob, "x", "blob"), torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]))


def test_a_large_lmdb_is_streamed_in_the_in_memory_order(tmp_path, write_yaml, monkeypatch):
    """An LMDB larger than IN_MEMORY_LIMIT decoded is read by DataLoader workers while the net trains; the
    batches are the in-memory reader's, shuffle and transforms included."""
    import netdef.layers.imagedata as imagedata
    from netdef.data.stream import StreamReader
    net = write_yaml(f"""
        name: digits
        layers:
          - {{name: data, type: Data, top: [data, label], transform_param: {{scale: 0.00390625, crop_size: 24, mirror: true}},
              data_param: {{source: {FIXTURES / 'mnist5k_test_lmdb'}, batch_size: 300, backend: LMDB, prefetch: 2}}}}
          - {{name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {{num_output: 10}}}}
          - {{name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}}
    """)
    layer = netdef.load_graph(net).layer("data").impl
    in_memory = layer.reader("TRAIN", 5, "cpu")
    monkeypatch.setattr(imagedata, "IN_MEMORY_LIMIT", 1000 * 28 * 28 - 1)
    streamed = layer.reader("TRAIN", 5, "cpu")
    assert isinstance(streamed, StreamReader) and not isinstance(in_memory, StreamReader)
    for _ in range(4):  # past the end of the 1,000 records: the next epoch's new order
        (images, labels), (streamed_images, streamed_labels) = in_memory.next(), streamed.next()
        assert torch.equal(images, streamed_images) and torch.equal(labels, streamed_labels)


def test_solverstate_of_another_solver_type_is_refused(tmp_path):
    """Adam keeps two history sets (m, then v: 16 blobs for LeNet); Caffe's SGD state has 8."""
    from netdef.train.config import load_solver
    from netdef.train.solver import Solver
    solver = Solver(load_solver(caffe_solver(tmp_path, type="Adam", momentum2=0.999)))
    with pytest.raises(netdef.NetdefError) as caught:
        solver.restore(SOLVERSTATE)
    problem = caught.value.problems[0]
    assert problem.message == f"the history of {SOLVERSTATE} does not fit this net and solver type"
    assert problem.expected == "16 blobs (8 parameters x 2 history set(s) of type Adam)" and problem.found == "8 blobs"


def test_caffes_hdf5_snapshots(tmp_path, netdef_cli):
    """snapshot_format: HDF5 (Caffe's Net::ToHDF5 and SnapshotSolverStateToHDF5 layouts), made here from
    the fixtures' binary files: weights in data/<layer>/<blob index>, the state's iter, learned_net and
    history/<index>."""
    import h5py
    from netdef.train.config import load_solver
    from netdef.train.solver import Solver
    weights, state = tmp_path / "lenet_iter_1000.caffemodel.h5", tmp_path / "lenet_iter_1000.solverstate.h5"
    with h5py.File(weights, "w") as file:
        for layer, blobs in read_caffemodel(CAFFEMODEL).items():
            for k, blob in enumerate(blobs):
                file.create_dataset(f"data/{layer}/{k}", data=blob.numpy())
    binary = proto.parse("SolverState", SOLVERSTATE.read_bytes())
    with h5py.File(state, "w") as file:
        file["iter"], file["learned_net"], file["current_step"] = binary.iter, weights.name, 0
        for k, blob in enumerate(binary.history):
            file.create_dataset(f"history/{k}", data=np.asarray(blob.data, np.float32).reshape(tuple(blob.shape.dim)))
    status, out, err = netdef_cli("test", "--model", LENET, "--weights", weights, "--iterations", 10)
    assert status == 0, err
    assert "\naccuracy = 0.962\n" in out and "\nloss = 0.148251 " in out
    solver = Solver(load_solver(caffe_solver(tmp_path)))
    solver.restore(state)
    assert solver.iter == 1000
    history = solver.state.updater.state_dict()["history"]["history"]
    assert history["ip1.weight"].flatten().tolist() == list(binary.history[4].data)


def test_damaged_hdf5_weights_name_the_file(tmp_path, netdef_cli):
    damaged = tmp_path / "cut.caffemodel.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    status, _, err = netdef_cli("test", "--model", LENET, "--weights", damaged, "--iterations", 1)
    assert status == 2 and f"{damaged} is damaged or not a .caffemodel" in err
