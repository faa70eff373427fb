"""torch.nn modules of the sequence layers (recurrent.py), computing Caffe's equations with torch ops so that
autograd gives the backward. Imported only when a net is compiled, so that `netdef check` and `summary` never
import torch."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Embed(nn.Module):
    def __init__(self, input_dim, num_output, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(input_dim, num_output))
        self.bias = nn.Parameter(torch.empty(num_output)) if bias else None

    def forward(self, indices):
        # Caffe reads the float indices with static_cast<int> (truncation), as .long() does.
        out = F.embedding(indices.detach().long(), self.weight)
        return out if self.bias is None else out + self.bias


def lstm_unit(c_prev, gates, cont):
    """Caffe's LSTMUnit on (N, D) c_prev, (N, 4D) gate inputs in the order i, f, o, g and (N,) cont:
    returns (c, h)."""
    i, f, o, g = gates.chunk(4, dim=-1)
    forget = cont.unsqueeze(-1) * torch.sigmoid(f)  # cont 0: c_prev is forgotten
    c = forget * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return c, torch.sigmoid(o) * torch.tanh(c)


class LSTMUnit(nn.Module):
    def forward(self, c_prev, gates, cont):
        c, h = lstm_unit(c_prev[0], gates[0], cont[0].detach().to(gates.dtype))  # no gradient to cont, as Caffe
        return c.unsqueeze(0), h.unsqueeze(0)


class _Recurrent(nn.Module):
    """Caffe's RecurrentLayer over T steps. Without expose_hidden, the state a pass ends with is where the next
    pass starts (Caffe copies its recurrent output blobs to its inputs at every forward), detached: no gradient
    crosses passes. It is not a buffer: not saved in snapshots, not shared with the TEST net, not broadcast by
    DDP, as in Caffe each net has its own. With expose_hidden the initial state is read from the bottoms
    and the final state is given as extra tops; as in Caffe, no gradient flows through either."""
    input_weight = input_bias = ""
    state_count = 1

    def __init__(self, in_features, hidden, static_features, expose_hidden, gates):
        super().__init__()
        rows = gates * hidden
        setattr(self, self.input_weight, nn.Parameter(torch.empty(rows, in_features)))
        setattr(self, self.input_bias, nn.Parameter(torch.empty(rows)))
        self.static = static_features > 0
        if self.static:
            setattr(self, f"{self.input_weight}_static", nn.Parameter(torch.empty(rows, static_features)))
        self.hidden = hidden
        self.expose_hidden = expose_hidden
        self.carried = None  # the final state of the last pass, [1, N, D] tensors

    def _start(self, streams, like):
        if self.carried is None or self.carried[0].shape[1] != streams:
            return [like.new_zeros(streams, self.hidden) for _ in range(self.state_count)]
        return [state[0].to(like) for state in self.carried]

    def forward(self, x, cont, *rest):
        steps, streams = cont.shape
        cont = cont.detach().to(x.dtype)  # Caffe cannot backpropagate to the sequence indicators
        inputs = F.linear(x.reshape(steps, streams, -1), getattr(self, self.input_weight),
                          getattr(self, self.input_bias))
        if self.static:
            inputs = inputs + F.linear(rest[0].reshape(streams, -1), getattr(self, f"{self.input_weight}_static"))
        given = rest[self.static:]
        state = [s[0].detach() for s in given] if self.expose_hidden else self._start(streams, inputs)
        outputs = []
        for t in range(steps):
            state = self.step(inputs[t], cont[t], state)
            outputs.append(state[0])
        final = [s.detach().unsqueeze(0) for s in state]
        out = self.output(torch.stack(outputs))
        if self.expose_hidden:
            return (out, *final)
        self.carried = final
        return out

    def output(self, hidden):
        return hidden


class RNN(_Recurrent):
    input_weight, input_bias = "W_xh", "b_h"

    def __init__(self, in_features, hidden, static_features, expose_hidden):
        super().__init__(in_features, hidden, static_features, expose_hidden, gates=1)
        self.W_hh = nn.Parameter(torch.empty(hidden, hidden))
        self.W_ho = nn.Parameter(torch.empty(hidden, hidden))
        self.b_o = nn.Parameter(torch.empty(hidden))

    def step(self, inputs, cont, state):
        h_conted = cont.unsqueeze(-1) * state[0]  # cont 0: a new sequence starts from h = 0
        return [torch.tanh(inputs + F.linear(h_conted, self.W_hh))]

    def output(self, hidden):
        return torch.tanh(F.linear(hidden, self.W_ho, self.b_o))


class LSTM(_Recurrent):
    input_weight, input_bias = "W_xc", "b_c"
    state_count = 2

    def __init__(self, in_features, hidden, static_features, expose_hidden):
        super().__init__(in_features, hidden, static_features, expose_hidden, gates=4)
        self.W_hc = nn.Parameter(torch.empty(4 * hidden, hidden))

    def step(self, inputs, cont, state):
        h, c = state
        gates = inputs + F.linear(cont.unsqueeze(-1) * h, self.W_hc)
        c, h = lstm_unit(c, gates, cont)
        return [h, c]
