"""Download a data set into a folder, verifying every file's checksum; the only command that uses the
network. `netdef data mnist --root data/mnist` fetches the full MNIST (60,000 + 10,000 digits) as IDX
files that a Data layer reads with `data_param: {source: <that folder>, backend: IDX}`."""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data import cifar
from ..errors import NetdefError, Problem

CHUNK = 1 << 20


@dataclass(frozen=True)
class DataSet:
    files: dict  # file name -> md5 of its bytes
    mirrors: tuple  # base URLs, tried in order
    usage: str  # how a net reads the folder
    summary: Callable[[Path], str]  # what a verified folder holds
    unpack: Callable[[Path], object] = None  # extracts downloaded archives in the folder (when there are any)


def _mnist_summary(root: Path) -> str:
    from ..data.idx import idx_shape
    train = idx_shape(root / "train-images-idx3-ubyte.gz")[0]
    test = idx_shape(root / "t10k-images-idx3-ubyte.gz")[0]
    return f"MNIST in {root}: {train:,} training digits (split train), {test:,} test digits (split t10k)"


DATASETS = {
    "mnist": DataSet(
        {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        "data_param: {source: <root>, backend: IDX, split: train} (TEST: split: t10k)",
        _mnist_summary),
    "cifar10": DataSet(
        {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        ("https://www.cs.toronto.edu/~kriz/",),
        "data_param: {source: <root>/cifar-10-batches-bin, backend: CIFAR10, split: train} (TEST: split: test)",
        lambda root: cifar.summary(root, cifar.CifarBackend),
        lambda root: cifar.unpack(root, "cifar-10-binary.tar.gz", cifar.CifarBackend)),
    "cifar100": DataSet(
        {"cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"},
        ("https://www.cs.toronto.edu/~kriz/",),
        "data_param: {source: <root>/cifar-100-binary, backend: CIFAR100, split: train} (TEST: split: test; "
        "backend CIFAR100_COARSE for the 20 super-classes)",
        lambda root: cifar.summary(root, cifar.Cifar100Backend),
        lambda root: cifar.unpack(root, "cifar-100-binary.tar.gz", cifar.Cifar100Backend)),
}


def add_arguments(parser):
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which data set")
    parser.add_argument("--root", required=True, help="folder to download into (created if missing)")
    parser.add_argument("--mirror", action="append", default=[], metavar="URL",
                        help="base URL to fetch the files from instead of the built-in mirrors (repeatable; "
                             "file:// works); checksums are verified all the same")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, target: Path, md5: str) -> None:
    """Download `url` to `target` through a temporary file in the same folder; the file appears only
    when its checksum matches. Raises OSError (network) or ValueError (checksum)."""
    temporary = target.with_name(f".{target.name}.part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch (md5 {digest.hexdigest()}, expected {md5})")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def download(files: dict, root, mirrors, log=print) -> None:
    """Make `root` hold every file of `files` (name -> md5), fetching the missing or damaged ones from the
    first mirror that serves them intact. Raises NetdefError naming every failure of a file it could not get."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, md5 in files.items():
        target = root / name
        if target.is_file() and md5_of(target) == md5:
            log(f"{target}: present, checksum ok")
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            log(f"Downloading {url}")
            try:
                fetch(url, target, md5)
                break
            except (OSError, ValueError, urllib.error.URLError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        else:
            raise NetdefError(Problem(f"could not download {name}:\n    " + "\n    ".join(failures),
                                      hint="check the network, or pass --mirror URL"))
        log(f"{target}: checksum ok")


def run(args) -> int:
    dataset = DATASETS[args.dataset]
    root = Path(args.root)
    download(dataset.files, root, args.mirror or dataset.mirrors)
    if dataset.unpack:
        dataset.unpack(root)
    print(dataset.summary(root))
    print(f"Use it in a net with {dataset.usage.replace('<root>', str(root))}")
    return 0
