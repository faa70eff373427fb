"""Arrays a Python caller hands to a net's memory-fed data layers (Caffe's MemoryDataLayer::Reset, pycaffe's
`net.set_input_arrays`): kept per layer name for the process, served in order, wrapping around."""
from __future__ import annotations

_ARRAYS: dict = {}  # layer name -> (data N x C x H x W float32 tensor, labels N float32 tensor)


def set_input_arrays(layer: str, data, labels) -> None:
    """Feed the memory-fed data layer named `layer` of any net built from now on (or rebuilt): `data`
    (N x C x H x W) and `labels` (N), NumPy arrays or tensors, copied as float32."""
    import torch
    data = torch.as_tensor(data, dtype=torch.float32).clone()
    labels = torch.as_tensor(labels, dtype=torch.float32).reshape(-1).clone()
    if data.dim() != 4 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"memory data needs N x C x H x W data and N labels; got data {list(data.shape)}, "
                         f"labels {list(labels.shape)}")
    _ARRAYS[layer] = (data, labels)


def input_arrays(layer: str):
    """The arrays set for `layer`, or None."""
    return _ARRAYS.get(layer)


class MemoryReader:
    """Serves batch_size items at a time from the arrays, in order, from the start again after the last."""

    def __init__(self, data, labels, batch_size: int, device):
        self.data, self.labels = data.to(device), labels.to(device)
        self.batch_size, self.position = batch_size, 0

    def next(self) -> list:
        rows = slice(self.position, self.position + self.batch_size)
        self.position = (self.position + self.batch_size) % self.data.shape[0]
        return [self.data[rows], self.labels[rows]]

    def state_dict(self) -> dict:
        return {"size": self.data.shape[0], "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != self.data.shape[0]:
            raise ValueError(f"the snapshot's memory data held {state['size']} items, these arrays {self.data.shape[0]}")
        self.position = int(state["position"])
