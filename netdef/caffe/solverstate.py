""".solverstate files: Caffe's solver state (SolverState: iter, learned_net, history, current_step), resumed by
`netdef train --snapshot X.solverstate`.

Caffe keeps one history blob per learnable parameter of the TRAIN net (every blob of every layer, in layer
order and each layer's blob order, a shared blob once), for each history set of the solver type in turn
(Adam: all m, then all v). The weights are in the .caffemodel the state names as learned_net. What Caffe
does not save (the data readers' positions, the random generators, the smoothed loss) starts afresh.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import NetdefError, Problem
from .caffemodel import blob_tensor, caffe_blob_order, read_caffemodel, read_message

SUFFIX = ".solverstate"
HDF5_SUFFIX = ".solverstate.h5"  # Caffe's snapshot_format: HDF5


def is_solverstate(path) -> bool:
    return Path(path).suffix == SUFFIX or Path(path).name.endswith(HDF5_SUFFIX)


def read_state(path: Path) -> tuple:
    """(iteration, learned_net as written, history blobs in Caffe's order) of a .solverstate, or of a
    .solverstate.h5 (datasets iter and learned_net, a group history of datasets "0", "1", ...)."""
    if path.name.endswith(HDF5_SUFFIX):
        iteration, learned_net, history = _read_hdf5_state(path)
    else:
        message = read_message(path, "SolverState", "a binary SolverState written by Caffe (.solverstate)")
        history = [blob_tensor(blob, path, f"history blob {k}") for k, blob in enumerate(message.history)]
        iteration, learned_net = int(message.iter), message.learned_net
    if iteration < 0:  # resumed, it would train for billions of iterations up to max_iter
        raise NetdefError(Problem(f"{path} is damaged: its iteration is {iteration}", expected="0 or more",
                                  hint="the file may be damaged; copy it again"))
    return iteration, learned_net, history


def _read_hdf5_state(path: Path) -> tuple:
    import h5py
    import numpy as np
    import torch
    try:
        with h5py.File(path, "r") as file:
            iteration, learned_net, group = int(file["iter"][()]), file["learned_net"][()], file["history"]
            history = [torch.from_numpy(np.asarray(group[k], dtype=np.float32)) for k in sorted(group, key=int)]
    except (OSError, KeyError, ValueError, TypeError) as exc:  # h5py: OSError for a damaged file
        raise NetdefError(Problem(f"{path} is damaged or not a Caffe HDF5 solver state: {str(exc).splitlines()[0]}",
                                  expected="datasets iter and learned_net, and a group history")) from None
    return iteration, learned_net.decode() if isinstance(learned_net, bytes) else str(learned_net), history


def learned_net_path(path: Path, learned_net: str) -> Path:
    """Where the state's weights are: learned_net as written (Caffe writes it as given by snapshot_prefix,
    so relative to the folder Caffe ran in), relative to the state's folder, or beside the state."""
    written = Path(learned_net)
    candidates = [written] if written.is_absolute() else []
    candidates += [path.parent / written, path.parent / written.name]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise NetdefError(Problem(f"the weights of {path} are missing: no {learned_net!r} beside it",
                                  expected="the .caffemodel named by the state's learned_net",
                                  found=", ".join(str(c) for c in candidates),
                                  hint="copy the .caffemodel Caffe wrote with the state into the state's folder"))
    return found


def caffe_param_keys(graph, net) -> list:
    """The state_dict keys of Caffe's learnable_params_ for `net` compiled from `graph`: every blob in layer
    order and each layer's blob order (its class's param_names()), a blob shared with an earlier one once."""
    keys, seen = [], set()
    for module, blobs in caffe_blob_order(graph).items():
        for blob in blobs:
            tensor = getattr(net.get_submodule(module), blob)
            if id(tensor) not in seen:
                seen.add(id(tensor))
                keys.append(f"{module}.{blob}")
    return keys


def _history(updater, keys: list, blobs: list, path) -> dict:
    """The updater's state_dict with its history taken from Caffe's blobs (set after set, each over `keys`)."""
    state = updater.state_dict()
    sets = list(state["history"])
    if len(blobs) != len(keys) * len(sets):
        raise NetdefError(Problem(f"the history of {path} does not fit this net and solver type",
                                  expected=f"{len(keys) * len(sets)} blobs ({len(keys)} parameters x "
                                           f"{len(sets)} history set(s) of type {updater.type})",
                                  found=f"{len(blobs)} blobs"))
    for index, set_name in enumerate(sets):
        by_key = dict(zip(keys, blobs[index * len(keys):(index + 1) * len(keys)]))
        for name, tensor in state["history"][set_name].items():
            stored = by_key[name]
            if stored.numel() != tensor.numel():
                raise NetdefError(Problem(f"the history of {path} does not fit parameter '{name}'",
                                          expected=f"{set_name} of shape {list(tensor.shape)}",
                                          found=f"shape {list(stored.shape)}"))
            tensor.copy_(stored.reshape(tensor.shape))
    return state


def restore_solverstate(train, state, path, log) -> None:
    """Resume Caffe's state: the learned_net weights into the TRAIN PhaseNet `train`, the iteration and the
    history into the TrainState `state`."""
    from ..train.snapshot import copy_weights, weights_table
    path = Path(path)
    iteration, learned_net, history = read_state(path)
    weights = learned_net_path(path, learned_net)
    rows = copy_weights(train.net, read_caffemodel(weights), train.layer_names, train.info.graph)
    if any(row[2] in ("missing in file", "shape mismatch") for row in rows):
        raise NetdefError(Problem(f"the weights in {weights} do not fit the current net:\n{weights_table(rows)}",
                                  hint="to start a changed net from these weights, use --weights instead"))
    keys = caffe_param_keys(train.info.graph, train.net)
    state.updater.load_state_dict(_history(state.updater, keys, history, path))
    state.iteration, state.skipped_updates = iteration, 0
    log(f"Restored Caffe's solver state: iteration {iteration}, {len(history)} history blobs, weights from "
        f"{weights}; data readers, random generators and the smoothed loss start afresh (Caffe does not save them)")
