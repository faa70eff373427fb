"""`netdef data`: downloads with checksum verification, tested against a local HTTP server and file://
URLs (never the internet)."""
import functools
import hashlib
import http.server
import threading

import pytest

from netdef.cli.data import DATASETS, download
from solver_helpers import MNIST5K, run_netdef


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_request(self, code="-", size="-"):
        QuietHandler.requests.append(self.path)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    QuietHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def files_of(folder, names):
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in names}


def test_download_fetches_verifies_and_skips_files_already_there(tmp_path, server):
    names = ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name in names:
        (tmp_path / "served" / name).write_bytes((MNIST5K / name).read_bytes())
    wanted = files_of(MNIST5K, names)
    download(wanted, tmp_path / "root", [server], log=lambda line: None)
    assert files_of(tmp_path / "root", names) == wanted
    assert sorted(QuietHandler.requests) == sorted("/" + n for n in names)
    download(wanted, tmp_path / "root", [server], log=lambda line: None)
    assert len(QuietHandler.requests) == 2  # nothing fetched twice


def test_a_missing_file_on_one_mirror_falls_back_to_the_next(tmp_path, server):
    name = "t10k-labels-idx1-ubyte.gz"
    wanted = files_of(MNIST5K, [name])
    download(wanted, tmp_path / "root", [server, (MNIST5K.as_uri() + "/")], log=lambda line: None)
    assert files_of(tmp_path / "root", [name]) == wanted
    assert QuietHandler.requests == ["/" + name]  # the HTTP mirror had nothing: 404, then file://


def test_a_damaged_local_file_is_replaced(tmp_path):
    name = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / name).write_bytes(b"truncated")
    wanted = files_of(MNIST5K, [name])
    download(wanted, tmp_path / "root", [MNIST5K.as_uri()], log=lambda line: None)
    assert files_of(tmp_path / "root", [name]) == wanted


def test_cli_refuses_files_whose_checksum_is_wrong_and_leaves_nothing(tmp_path, server):
    for name in DATASETS["mnist"].files:  # the 5,000-digit sample is not the full MNIST the checksums name
        (tmp_path / "served" / name).write_bytes((MNIST5K / name).read_bytes())
    code, out, err = run_netdef("data", "mnist", "--root", tmp_path / "root", "--mirror", server)
    assert code == 2
    assert "could not download train-images-idx3-ubyte.gz" in err
    assert "checksum mismatch (md5 c84306e9062c64d3f06d858a5362b394, expected f68b3c2dcbeaaa9fbdd348bbdeb94873)" in err
    assert list((tmp_path / "root").iterdir()) == []


def test_cli_names_every_mirror_that_failed(tmp_path):
    code, _, err = run_netdef("data", "mnist", "--root", tmp_path / "root", "--mirror", (tmp_path / "a").as_uri(),
                              "--mirror", (tmp_path / "b").as_uri())
    assert code == 2 and err.count("train-images-idx3-ubyte.gz: ") == 2
