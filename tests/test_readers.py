"""In-memory readers and batched transforms (netdef/readers.py) and the Data layer's reader."""
import gzip
import shutil

import pytest
import torch

import netdef
from netdef.layers.data import IdxBackend
from netdef.data.augment import image_reader
from netdef.data.readers import InMemoryReader, Transform
from solver_helpers import MNIST5K, one_thread, write_tiny_net  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def params(**kw):
    return {"scale": 1.0, "pad": 0, "crop_size": 0, "mirror": False, "mean_value": None, **kw}


def images(n=6, channels=3, size=8):
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def test_scale_and_per_channel_mean_follow_caffe_order():
    x = images()
    out = Transform(params(scale=0.5, mean_value=[10, 20, 30]), "TRAIN", torch.Generator())(x)
    expected = (x.float() - torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)) * 0.5
    assert out.dtype == torch.float32 and torch.equal(out, expected)


def test_test_phase_pads_then_crops_the_centre():
    x = images(size=8)
    out = Transform(params(pad=2, crop_size=10), "TEST", torch.Generator())(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert torch.equal(out, padded[..., 1:11, 1:11].float())


def test_random_crops_and_mirrors_are_per_image_windows_of_the_padded_input():
    x = images(n=32, channels=2, size=6)
    out = Transform(params(pad=1, crop_size=6, mirror=True), "TRAIN", torch.Generator().manual_seed(1))(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1)).float()
    offsets, flips = set(), set()
    for i in range(len(x)):
        matches = [(top, left, flip) for top in range(3) for left in range(3) for flip in (False, True)
                   if torch.equal(out[i], (padded[i, :, top:top + 6, left:left + 6].flip(-1) if flip
                                           else padded[i, :, top:top + 6, left:left + 6]))]
        assert matches, f"image {i} is no window of its padded input"
        offsets.add(matches[0][:2])
        flips.add(matches[0][2])
    assert len(offsets) > 3 and flips == {False, True}


def test_mirror_is_off_in_test_phase():
    x = images()
    assert torch.equal(Transform(params(mirror=True), "TEST", torch.Generator())(x), x.float())


def served(reader, batches):
    return torch.cat([reader.next()[1] for _ in range(batches)]).tolist()


def test_train_reader_covers_each_epoch_once_in_a_new_order_and_wraps_like_caffe():
    labels = torch.arange(10)
    reader = InMemoryReader([labels.clone(), labels], 4, shuffle=True, seed=5, device="cpu")
    order = served(reader, 5)  # 20 samples: two epochs, the third batch straddles them
    first, second = order[:10], order[10:]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second and first != list(range(10))
    assert reader.epoch == 2 and reader.position == 0


def test_same_seed_same_order_other_seed_other_order():
    labels = torch.arange(50)

    def order(seed):
        return served(InMemoryReader([labels, labels], 10, shuffle=True, seed=seed, device="cpu"), 5)
    assert order(1) == order(1) and order(1) != order(2)


def test_test_reader_reads_in_order_and_wraps():
    labels = torch.arange(7)
    reader = InMemoryReader([labels, labels], 3, shuffle=False, seed=0, device="cpu")
    assert served(reader, 3) == [0, 1, 2, 3, 4, 5, 6, 0, 1]


def test_state_dict_resumes_the_exact_batch_sequence_including_augmentation():
    x, labels = images(n=20, channels=1, size=8), torch.arange(20)
    p = params(pad=2, crop_size=8, mirror=True)

    def make():
        return image_reader(x, labels, 2, batch_size=6, transform_param=p, phase="TRAIN", seed=9, device="cpu")
    straight = make()
    [straight.next() for _ in range(5)]
    state = straight.state_dict()
    expected = [straight.next() for _ in range(6)]
    resumed = make()
    resumed.load_state_dict(state)
    for (data, label), (want_data, want_label) in zip([resumed.next() for _ in range(6)], expected):
        assert torch.equal(data, want_data) and torch.equal(label, want_label)


def test_state_of_another_data_set_is_refused():
    reader = InMemoryReader([torch.arange(5)], 2, shuffle=True, seed=0, device="cpu")
    other = InMemoryReader([torch.arange(6)], 2, shuffle=True, seed=0, device="cpu")
    with pytest.raises(ValueError, match="served 6 samples"):
        reader.load_state_dict(other.state_dict())


def test_idx_backend_reads_gzipped_and_plain_files_alike(tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(MNIST5K / f"{name}.gz") as source, open(tmp_path / name, "wb") as target:
            shutil.copyfileobj(source, target)
    plain, gz = IdxBackend(tmp_path, "t10k").load(), IdxBackend(MNIST5K, "t10k").load()
    assert plain[0].shape == (1000, 1, 28, 28) and plain[0].dtype == torch.uint8
    assert torch.equal(plain[0], gz[0]) and torch.equal(plain[1], gz[1])
    assert sorted(plain[1].bincount().tolist()) == [100] * 10


def test_data_layer_reader_serves_the_inferred_shapes(tmp_path):
    net = write_tiny_net(tmp_path, batch=12)
    info = netdef.summarize(net, phase="TRAIN")
    spec = info.graph.layer("mnist")
    data, label = spec.impl.reader("TRAIN", 0, "cpu").next()
    assert tuple(data.shape) == info.blob_shapes["data"] and tuple(label.shape) == info.blob_shapes["label"]
    assert data.dtype == torch.float32 and float(data.max()) <= 1.0 and label.dtype == torch.int64


def test_mean_value_count_must_fit_the_channels(tmp_path):
    net = write_tiny_net(tmp_path, train_transform="{mean_value: [1, 2]}")
    with pytest.raises(netdef.NetdefError) as err:
        netdef.summarize(net, phase="TRAIN")
    text = str(err.value)
    assert "tiny.yaml:4:" in text and "mean_value" in text and "expected 1 or 1 values" in text
