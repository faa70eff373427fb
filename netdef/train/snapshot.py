"""Snapshots: where they go (Caffe's snapshot_prefix rules), how they are written (atomically), read back
(torch.load with weights_only), compared with the current configuration, and copied into a net by layer
name for fine-tuning.

A snapshot `<prefix>_iter_<N>.pt` is one dict: the TRAIN net's state_dict (keys `<layer>.<blob>`), the keys
of the run's TrainState (netdef.train.state: iteration, updater history, RNG states, reader positions,
smoothed-loss window, gradient scaler) and the resolved solver and nets. Caffe splits this into
.caffemodel and .solverstate; one file cannot be half-updated.
"""
from __future__ import annotations

import difflib
import os
import pickle
import zipfile
from pathlib import Path

import torch

from ..caffe.caffemodel import CaffeBlobs, is_caffemodel, read_caffemodel
from ..errors import NetdefError, Problem
from ..paths import require_file
from ..text import table as table_lines

FORMAT = "netdef-snapshot"
VERSION = 1
# Why a snapshot was written (stored in it as "why", listed when the run ends): a snapshot taken because a
# run was interrupted is not mistaken for one of the schedule.
SCHEDULED = "every `snapshot` iterations"
CLOSING = "after the last iteration"
ON_SIGNAL = "requested by a signal"
ON_INTERRUPT = "the run was interrupted"


def snapshot_prefix(config) -> Path:
    """Caffe's rules: unset -> the solver file's path without its extension; a prefix naming a directory
    (an existing one, or written with a trailing slash) -> `<dir>/<solver file stem>`; relative prefixes
    are relative to the solver file."""
    written = config.snapshot_prefix
    if not written:
        return config.path.with_suffix("")
    prefix = Path(os.path.normpath(config.resolve(written)))
    if written.endswith(("/", os.sep)) or prefix.is_dir():
        return prefix / config.path.stem
    return prefix


def snapshot_path(prefix: Path, iteration: int) -> Path:
    return Path(f"{prefix}_iter_{iteration}.pt")


def check_writable(prefix: Path, iteration: int, pos=None) -> None:
    """Probe the snapshot folder before training (as Caffe does since PR #3049): hours of training must
    not end in a snapshot that cannot be written."""
    probe = Path(f"{prefix}_iter_{iteration}.tempfile")
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as stream:
            stream.write(b"netdef")
        probe.unlink()
    except OSError as exc:
        raise NetdefError(Problem(f"cannot write snapshots to '{probe.parent}': {exc.strerror or exc}", pos,
                                  expected="a writable folder for snapshot_prefix",
                                  hint="change snapshot_prefix or the folder's permissions")) from None


def save_atomic(payload, path: Path) -> None:
    """Write to a temporary file in the same folder, flush and fsync it, then rename it over `path`:
    a crash or a failing write leaves either the previous file or the new one, never a truncated file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as exc:  # a full disk or an I/O error (torch.save reports it as RuntimeError)
        temporary.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise NetdefError(Problem(f"cannot write {path}: {reason}", expected="room for the snapshot",
                                  hint="free space (or set snapshot_prefix to another disk); nothing of this "
                                       "snapshot was left behind")) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def save_snapshot(path: Path, weights: dict, state, config: dict, why: str = SCHEDULED) -> None:
    """Write a snapshot: the weights, a TrainState's keys, the configuration (Solver.configs()) and why."""
    save_atomic({"format": FORMAT, "version": VERSION, "weights": weights, **state.state_dict(), "config": config,
                 "why": why}, path)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); not possible on Windows, where opening a folder fails."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _verify_checksums(path: Path) -> None:
    """torch.save writes a zip archive with a CRC-32 per record, which torch.load does not check: a flipped
    byte in a tensor would load silently as a wrong weight. Every record is checked here first."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        bad_text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NetdefError(Problem(f"corrupt snapshot {path}: {bad_text}", expected="a file as torch.save wrote it",
                                  hint="resume from an earlier snapshot")) from None
    if bad is not None:
        raise NetdefError(Problem(f"corrupt snapshot {path}: record '{bad}' fails its checksum (CRC-32)",
                                  expected="a file as torch.save wrote it", hint="resume from an earlier snapshot"))


def _load(path) -> object:
    """torch.load with weights_only=True: tensors and plain containers only, never code from a file."""
    path = require_file(path, "snapshot")
    if not zipfile.is_zipfile(path):
        raise NetdefError(Problem(f"{path} is not a file written by torch.save", expected="a netdef snapshot (.pt)"))
    _verify_checksums(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NetdefError(Problem(f"{path} holds Python objects other than tensors and plain containers",
                                  expected="a netdef snapshot or a state_dict",
                                  hint="netdef loads with weights_only=True and never runs code from a file")) from None
    except (RuntimeError, OSError, zipfile.BadZipFile) as exc:
        raise NetdefError(Problem(f"cannot read {path}: {str(exc).splitlines()[0]}",
                                  expected="a netdef snapshot (.pt)")) from None


def load_snapshot(path) -> dict:
    """A full snapshot (for --snapshot resume)."""
    payload = _load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NetdefError(Problem(f"{path} is not a netdef snapshot", expected="a <prefix>_iter_<N>.pt file "
                                  "written by `netdef train`", hint="use --weights to start from plain weights"))
    if payload.get("version") != VERSION:
        raise NetdefError(Problem(f"{path} is a snapshot of format version {payload.get('version')}",
                                  expected=f"version {VERSION}"))
    return payload


def load_weights(path) -> dict:
    """Weights by parameter name from a snapshot or from a plain state_dict file (for --weights); a Caffe
    .caffemodel gives its blobs by layer name (CaffeBlobs), named by the net they are copied into."""
    if is_caffemodel(path):
        return read_caffemodel(path)
    payload = _load(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        payload = payload["weights"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise NetdefError(Problem(f"{path} holds no weights", expected="a netdef snapshot or a state_dict"))
    return payload


# ---- copying weights by layer name ----

def copy_weights(net, weights: dict, layer_names: dict, graph=None) -> list:
    """Copy every tensor of `weights` whose name and shape match one of `net`'s into it. Returns one row
    per blob: (layer, blob, status, file shape, net shape), status one of copied, shape mismatch,
    missing in file, not in net. Never stops at the first problem. `layer_names` maps submodule names
    back to layer names (they differ when a layer name holds a dot). A .caffemodel's blobs are named by
    their position in each layer's Caffe blob order, which `graph` (the net's Graph) gives."""
    if isinstance(weights, CaffeBlobs):
        weights = weights.keyed(net, graph)
    own = net.state_dict(keep_vars=True)
    rows = []
    for key, tensor in own.items():
        layer, blob = _split(key, layer_names)
        stored = weights.get(key)
        if stored is None:
            rows.append((layer, blob, "missing in file", None, tuple(tensor.shape)))
        elif stored.shape != tensor.shape:
            rows.append((layer, blob, "shape mismatch", tuple(stored.shape), tuple(tensor.shape)))
        else:
            with torch.no_grad():
                tensor.copy_(stored)
            rows.append((layer, blob, "copied", tuple(stored.shape), tuple(tensor.shape)))
    for key, stored in weights.items():
        if key not in own:
            layer, blob = _split(key, layer_names)
            rows.append((layer, blob, "not in net", tuple(stored.shape), None))
    return rows


def _split(key: str, layer_names: dict) -> tuple:
    module, _, blob = key.partition(".")
    return layer_names.get(module, module), blob


def weights_table(rows: list) -> str:
    """The fine-tuning report: a row per blob and a totals line."""
    def shape(s):
        return "-" if s is None else ("x".join(map(str, s)) or "scalar")
    table = [("layer", "blob", "status", "file shape", "net shape")]
    table += [(layer, blob, status, shape(f), shape(n)) for layer, blob, status, f, n in rows]
    lines = table_lines(table, rule=False)
    counts = {status: sum(1 for row in rows if row[2] == status)
              for status in ("copied", "shape mismatch", "missing in file", "not in net")}
    lines.append(f"{counts['copied']} blobs copied, {counts['shape mismatch']} shape mismatches, "
                 f"{counts['missing in file']} missing in the file, {counts['not in net']} in the file but not in "
                 "this net")
    return "\n".join(lines)


# ---- comparing configurations on resume ----

def config_differences(stored: dict, current: dict) -> list:
    """Human lines for every difference between the snapshot's configuration and the current one:
    solver fields one by one, nets as a unified diff of their resolved (expanded) YAML."""
    lines = []
    stored_solver, current_solver = stored["solver"], current["solver"]
    for key in sorted(set(stored_solver) | set(current_solver)):
        before, now = stored_solver.get(key), current_solver.get(key)
        if before != now:
            lines.append(f"{key}: {_show(before)} in the snapshot, {_show(now)} now")
    stored_nets, current_nets = stored["nets"], current["nets"]
    for name in sorted(set(stored_nets) | set(current_nets)):
        before, now = stored_nets.get(name, ""), current_nets.get(name, "")
        if before != now:
            diff = difflib.unified_diff(before.splitlines(), now.splitlines(), "in the snapshot", "now",
                                        lineterm="", n=1)
            lines.append(f"net {name} differs (blocks expanded):\n" + "\n".join("    " + line for line in diff))
    return lines


def _show(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
