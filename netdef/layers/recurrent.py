"""Sequence layers: Embed, RNN, LSTM and LSTMUnit, with Caffe's recurrent semantics (recurrent_layer.cpp,
rnn_layer.cpp, lstm_layer.cpp, lstm_unit_layer.cpp, embed_layer.cpp).

Sequences are time-major: x is T x N x ... (T time steps of N independent streams) and `cont` is T x N,
0 where a sequence starts (the hidden state is reset there) and 1 where it continues. Caffe unrolls RNN and
LSTM into an internal net; netdef computes the same equations in a loop over T, and keeps Caffe's blobs
(names, shapes, order), so that Caffe's weights load blob for blob.
"""
from __future__ import annotations

from ..fields import Bool, Int
from .fillers import FillerField, fill_blobs
from .base import Layer, ShapeError, numel, register, weight_and_bias


@register
class Embed(Layer):
    """A lookup table: each input value, an index in [0, input_dim), becomes row `index` of the weight
    [input_dim, num_output] (plus the bias); the output is the input shape + [num_output]. Caffe does not
    backpropagate to the indices."""
    summary = "lookup table of num_output-vectors for integer indices (word embeddings)"
    blocks = {"embed_param": {
        "num_output": Int(None, "length of each vector", required=True, minimum=1),
        "input_dim": Int(None, "number of indices (vocabulary size); inputs lie in 0 .. input_dim - 1",
                         required=True, minimum=1),
        "bias_term": Bool(True, "learn a bias added to every vector"),
        "weight_filler": FillerField("table initialisation (default constant 0, as Caffe)"),
        "bias_filler": FillerField("bias initialisation"),
    }}
    kind = "ip"
    # torch's random example inputs of an ONNX export are not indices; a deploy net with Embed is not exported.
    exportable = False
    drawn_fields = ("num_output", "input_dim")
    drawn_always = ("num_output",)

    def label_classes(self, shapes):
        return {0: self.p["input_dim"]}

    def infer(self, shapes):
        return [tuple(shapes[0]) + (self.p["num_output"],)]

    def param_names(self):
        return weight_and_bias(self.p["bias_term"])

    def blob_specs(self, shapes):
        p = self.p
        return self.blob_list(weight=((p["input_dim"], p["num_output"]), p["weight_filler"]),
                              bias=((p["num_output"],), p["bias_filler"]))

    def macs(self, shapes, outs):
        return 0  # a row copied per index: nothing multiplied

    def build(self, shapes):
        from .recurrent_modules import Embed as Module
        module = Module(self.p["input_dim"], self.p["num_output"], self.p["bias_term"])
        return fill_blobs(module, self.blob_specs(shapes))


RECURRENT_PARAM = {"recurrent_param": {
    "num_output": Int(None, "hidden units D (Caffe's default 0 is refused there too)", required=True, minimum=1),
    "weight_filler": FillerField("initialisation of every weight matrix (default constant 0, as Caffe)"),
    "bias_filler": FillerField("initialisation of every bias"),
    "debug_info": Bool(False, "Caffe's per-blob log of its unrolled net; accepted, netdef has no unrolled net"),
    "expose_hidden": Bool(False, "take the initial state as extra bottoms (h0, and c0 for LSTM, each 1 x N x D) "
                                 "and give the final state as extra tops (hT, cT); otherwise each forward pass "
                                 "starts from the previous pass's final state"),
}}


class _Recurrent(Layer):
    """Caffe's RecurrentLayer: bottoms x (T x N x ...), cont (T x N), an optional static input x_static
    (N x ..., seen at every step), then with expose_hidden the initial state; tops the output sequence
    (T x N x D), then with expose_hidden the final state. Subclasses name their state blobs, gate count
    and parameter blobs. An ONNX graph holds no state between calls: exported without expose_hidden, every
    call starts from a zero state, as the first pass does (exact when each batch starts its sequences)."""
    blocks = RECURRENT_PARAM
    bottoms = (2, 5)  # LSTM's most: x, cont, x_static, h0, c0
    tops = (1, 3)
    kind = "ip"
    drawn_fields = ("num_output", "expose_hidden")
    drawn_always = ("num_output",)
    states: tuple = ()  # the recurrent state blobs, Caffe's order: ("h",) or ("h", "c")
    gates: int = 1  # rows of the input transform per hidden unit (LSTM: i, f, o, g)
    input_weight = input_bias = ""  # Caffe's names of the input transform's blobs (LSTM: W_xc, b_c)

    def exposed(self) -> int:
        return len(self.states) if self.p["expose_hidden"] else 0

    def has_static_input(self) -> bool:
        return len(self.spec.bottoms) > 2 + self.exposed()

    def check(self):
        exposed, bottoms = self.exposed(), len(self.spec.bottoms)
        if bottoms not in (2 + exposed, 3 + exposed):
            names = ", ".join(f"{s}0" for s in self.states)
            yield (("bottom",), f"{type(self).__name__} takes x, cont, an optional x_static"
                   + (f" and the initial state ({names})" if exposed else " (expose_hidden is false)"),
                   f"{2 + exposed} or {3 + exposed} bottoms", str(bottoms))
        if len(self.spec.tops) != 1 + exposed:
            names = ", ".join(f"{s}T" for s in self.states)
            yield (("top",), f"{type(self).__name__} gives the output sequence"
                   + (f" and the final state ({names})" if exposed else " (expose_hidden is false)"),
                   f"{1 + exposed} tops", str(len(self.spec.tops)))

    def label_classes(self, shapes):
        return {1: 2}  # cont: 0 starts a sequence, 1 continues it

    def _sizes(self, shapes) -> tuple:
        """(T, N, K input features per step, static input features or 0), checked as Caffe does."""
        x, cont = shapes[0], shapes[1]
        name = type(self).__name__
        if len(x) < 3:  # Caffe's inner products read x from axis 2 on, x_static from axis 1 on
            raise ShapeError(f"{name}'s input x must be T x N x ... (time steps, streams, features)",
                             expected="at least 3 axes", found=f"shape {list(x)}")
        if tuple(cont) != tuple(x[:2]):
            raise ShapeError(f"{name}'s cont must be T x N, as x's first two axes", expected=f"shape {list(x[:2])}",
                             found=f"shape {list(cont)}")
        static = 0
        if self.has_static_input():
            shape = shapes[2]
            if len(shape) < 2 or shape[0] != x[1]:
                raise ShapeError(f"{name}'s static input must be N x ... (one row of features per stream)",
                                 expected=f"first axis {x[1]}", found=f"shape {list(shape)}")
            static = numel(shape[1:])
        return x[0], x[1], numel(x[2:]), static

    def infer(self, shapes):
        t, n, _, _ = self._sizes(shapes)
        state = (1, n, self.p["num_output"])
        first = 2 + self.has_static_input()
        for name, shape in zip(self.states, shapes[first:]):
            if tuple(shape) != state:
                raise ShapeError(f"the initial state {name}0 must be 1 x N x num_output", expected=f"shape {list(state)}",
                                 found=f"shape {list(shape)}")
        return [(t, n, self.p["num_output"])] + [state] * self.exposed()

    def input_blobs(self) -> tuple:
        """The blobs that transform x (and x_static) to the gates: Caffe's first blobs."""
        return self.input_weight, self.input_bias, *((f"{self.input_weight}_static",) if self.has_static_input() else ())

    def _input_specs(self, shapes) -> dict:
        _, _, k, static = self._sizes(shapes)
        rows, p = self.gates * self.p["num_output"], self.p
        return {self.input_weight: ((rows, k), p["weight_filler"]), self.input_bias: ((rows,), p["bias_filler"]),
                f"{self.input_weight}_static": ((rows, static), p["weight_filler"])}

    def macs(self, shapes, outs):
        """The matrix products (the gates' nonlinearities and products are not counted): every step of every
        stream transforms x_t and h_{t-1}; the static input is transformed once per stream."""
        t, n, k, static = self._sizes(shapes)
        d, rows = self.p["num_output"], self.gates * self.p["num_output"]
        return t * n * rows * (k + d) + n * rows * static + t * n * self.output_macs_per_step()

    def output_macs_per_step(self) -> int:
        return 0

    def _build(self, module_class, shapes):
        _, _, k, static = self._sizes(shapes)
        module = module_class(k, self.p["num_output"], static, self.p["expose_hidden"])
        return fill_blobs(module, self.blob_specs(shapes))


@register
class RNN(_Recurrent):
    """Caffe's simple recurrent net: h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]),
    output o_t = tanh(W_ho h_t + b_o). Blobs W_xh, b_h, (W_xh_static), W_hh, W_ho, b_o."""
    summary = "simple recurrent net, T x N x ... input, cont, static input, expose_hidden"
    bottoms = (2, 4)
    tops = (1, 2)
    states = ("h",)
    input_weight, input_bias = "W_xh", "b_h"

    def param_names(self):
        return (*self.input_blobs(), "W_hh", "W_ho", "b_o")

    def blob_specs(self, shapes):
        d, p = self.p["num_output"], self.p
        return self.blob_list(**self._input_specs(shapes), W_hh=((d, d), p["weight_filler"]),
                              W_ho=((d, d), p["weight_filler"]), b_o=((d,), p["bias_filler"]))

    def output_macs_per_step(self):
        return self.p["num_output"] ** 2  # o_t = tanh(W_ho h_t + b_o)

    def build(self, shapes):
        from .recurrent_modules import RNN as Module
        return self._build(Module, shapes)


@register
class LSTM(_Recurrent):
    """Caffe's LSTM: gates = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static], split as
    (i, f, o, g) and combined as LSTMUnit does; the output is h (T x N x D). Blobs W_xc [4D, K], b_c [4D],
    (W_xc_static [4D, K_static]), W_hc [4D, D]."""
    summary = "long short-term memory, Caffe's gate order i, f, o, g; cont, static input, expose_hidden"
    states = ("h", "c")
    gates = 4
    input_weight, input_bias = "W_xc", "b_c"

    def param_names(self):
        return (*self.input_blobs(), "W_hc")

    def blob_specs(self, shapes):
        d = self.p["num_output"]
        return self.blob_list(**self._input_specs(shapes), W_hc=((4 * d, d), self.p["weight_filler"]))

    def build(self, shapes):
        from .recurrent_modules import LSTM as Module
        return self._build(Module, shapes)


@register
class LSTMUnit(Layer):
    """One LSTM step, Caffe's LSTMUnit: bottoms c_prev (1 x N x D), the gate inputs (1 x N x 4D, in the order
    i, f, o, g) and cont (1 x N); tops c and h (1 x N x D). i, f, o = sigmoid, g = tanh of their inputs;
    c = cont * f * c_prev + i * g (cont 0 forgets c_prev); h = o * tanh(c). No gradient reaches cont."""
    summary = "one LSTM step (c_prev, gate inputs i, f, o, g, cont) -> (c, h)"
    bottoms = (3, 3)
    tops = (2, 2)
    kind = "neuron"

    def label_classes(self, shapes):
        return {2: 2}

    def infer(self, shapes):
        c_prev, gates, cont = (tuple(s) for s in shapes)
        if len(c_prev) != 3 or c_prev[0] != 1:
            raise ShapeError("LSTMUnit's c_prev must be 1 x N x D", expected="3 axes, the first 1",
                             found=f"shape {list(c_prev)}")
        expected = (1, c_prev[1], 4 * c_prev[2])
        if gates != expected:
            raise ShapeError("LSTMUnit's gate input must be 1 x N x 4D (i, f, o, g)", expected=f"shape {list(expected)}",
                             found=f"shape {list(gates)}")
        if cont != c_prev[:2]:
            raise ShapeError("LSTMUnit's cont must be 1 x N", expected=f"shape {list(c_prev[:2])}",
                             found=f"shape {list(cont)}")
        return [c_prev, c_prev]

    def macs(self, shapes, outs):
        return None  # sigmoids, tanh and three products per unit: not counted

    def build(self, shapes):
        from .recurrent_modules import LSTMUnit as Module
        return Module()
