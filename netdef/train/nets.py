"""The compiled nets a solver trains and tests, and `netdef test` scores: one net state of a net file,
compiled onto the device with the readers that feed it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..build import module_name
from ..data.readers import DataFeed
from ..tools.resources import device_memory, refuse_if_too_big


@dataclass
class PhaseNet:
    """One compiled net of one phase with the readers that feed it."""
    written: str  # the net's path as the solver file gives it (relative to it): names the net in snapshots
    path: Path
    source: object  # the netdef.Net it was compiled from (read and expanded once per file)
    info: object  # NetInfo
    net: torch.nn.Module
    feed: DataFeed
    layer_names: dict  # submodule name -> layer name


def layer_names(graph) -> dict:
    """Submodule name -> layer name (they differ when a layer name holds a dot): for the weights tables."""
    return {module_name(spec.name): spec.name for spec in graph.layers}


def build_phase_net(source, written, phase, seed, device, level=0, stages=(), share_with=None,
                    layout=torch.contiguous_format, max_memory=None, world=None) -> PhaseNet:
    """`source` (a netdef.Net) compiled in one state, moved to `device` in `layout`, with its readers
    (serving this rank's shard of each batch when `world` has several processes). A net whose estimated
    memory exceeds `max_memory` (default: the device's) is refused before any tensor is allocated."""
    info = source.info(phase, level, stages)
    limit, where = (max_memory, "--max-memory") if max_memory is not None else (device_memory(device), f"the memory of {device}")
    refuse_if_too_big(info, limit, training=phase == "TRAIN", where=where)
    net = source.compile(phase, level, stages, share_with).to(device, memory_format=layout)
    feed = DataFeed(info.graph, net.input_names, phase, seed, device, world)
    return PhaseNet(str(written), Path(os.path.normpath(source.path)), source, info, net, feed,
                    layer_names(info.graph))
