"""A net that cannot fit is refused before any tensor exists, naming its largest tops."""
import pytest

import netdef
from netdef.cli import main
from netdef.errors import NetdefError
from netdef.tools.resources import needed_bytes, parse_size, refuse_if_too_big

from conftest import ROOT

VGG16 = str(ROOT / "nets" / "vgg16.yaml")


@pytest.mark.parametrize("text, size", [("8G", 8 * 2 ** 30), ("512MiB", 512 * 2 ** 20), ("1.5 GB", 3 * 2 ** 29),
                                        ("1000", 1000), ("2t", 2 * 2 ** 40)])
def test_sizes_read_as_binary_units(text, size):
    assert parse_size(text) == size


def test_a_bad_size_is_a_clean_error():
    with pytest.raises(NetdefError, match="cannot read the memory size '8X'"):
        parse_size("8X")


def test_the_estimate_counts_parameters_three_times_and_tops_twice_to_train():
    info = netdef.summarize(ROOT / "nets" / "lenet.yaml", "TRAIN")
    assert needed_bytes(info, training=True) == 4 * info.total_params * 3 + 2 * info.total_memory
    assert needed_bytes(info, training=False) == 4 * info.total_params + info.total_memory


def test_check_refuses_vgg16_at_batch_256_under_8_gib_naming_the_largest_tops(capsys):
    assert main(["check", VGG16, "--max-memory", "8G"]) == 2
    err = capsys.readouterr().err
    assert "VGG-16 (TRAIN) needs at least 30.6 GiB to train (inputs data [256, 3, 224, 224], label [256]), more than 8.0 GiB (--max-memory)" in err
    assert "the largest tops: conv1_1 3.1 GiB, conv1_2 3.1 GiB" in err


def test_summary_at_a_smaller_batch_fits(capsys):
    assert main(["summary", VGG16, "--batch", "8", "--max-memory", "8G"]) == 0
    assert main(["summary", VGG16, "--max-memory", "8G"]) == 2


def test_without_a_limit_nothing_is_refused():
    refuse_if_too_big(netdef.summarize(VGG16, "TRAIN"), None, training=True)


def test_train_refuses_a_net_that_does_not_fit_before_allocating_it(tmp_path, capsys):
    net = (ROOT / "nets" / "lenet.yaml").read_text().replace("../data/mnist5k", str(ROOT / "data" / "mnist5k"))
    (tmp_path / "lenet.yaml").write_text(net)
    (tmp_path / "solver.yaml").write_text("net: lenet.yaml\nbase_lr: 0.01\nmax_iter: 1\nlog_dir: runs\n"
                                          "snapshot_prefix: snapshots/lenet\n")
    assert main(["train", str(tmp_path / "solver.yaml"), "--device", "cpu", "--max-memory", "1M"]) == 2
    err = capsys.readouterr().err
    assert "LeNet (TRAIN) needs at least 14.6 MiB to train" in err and "more than 1.0 MiB (--max-memory)" in err
    assert not (tmp_path / "snapshots").exists()
