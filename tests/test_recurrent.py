"""The sequence layers (netdef/layers/recurrent.py) against Caffe: LSTM and RNN equal plain float64 loops over
time steps of Caffe's equations (lstm_layer.cpp, rnn_layer.cpp, lstm_unit_layer.cpp), with `cont` resets
mid-sequence, a static input, the state carried from one forward pass to the next and expose_hidden;
gradcheck where autograd's backward has no simpler oracle; Caffe's blob names and order; and the shipped
LSTM language model (examples/lstm) trained through `netdef train`."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import netdef

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "lstm"
GAUSS = {"type": "gaussian", "std": 0.5}


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def caffe_lstm(x, cont, blobs, state, x_static=None):
    """Caffe's unrolled LSTM, step by step in float64: x T x N x K, cont T x N, state (h, c) each N x D;
    returns (h for every step, final (h, c))."""
    w_xc, b_c, *static, w_hc = blobs
    h, c = state
    d = h.shape[1]
    outputs = []
    for t in range(x.shape[0]):
        h_conted = cont[t][:, None] * h  # Scale: flush h at a sequence start
        gates = h_conted @ w_hc.T + x[t].reshape(len(h), -1) @ w_xc.T + b_c
        if static:
            gates = gates + x_static.reshape(len(h), -1) @ static[0].T
        i, f, o, g = (gates[:, k * d:(k + 1) * d] for k in range(4))
        forget = np.where(cont[t][:, None] == 0, 0.0, cont[t][:, None] * sigmoid(f))
        c = forget * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs), (h, c)


def caffe_rnn(x, cont, blobs, h):
    """Caffe's unrolled RNN in float64: returns (o for every step, final h)."""
    w_xh, b_h, w_hh, w_ho, b_o = blobs
    outputs = []
    for t in range(x.shape[0]):
        h = np.tanh((cont[t][:, None] * h) @ w_hh.T + x[t] @ w_xh.T + b_h)
        outputs.append(np.tanh(h @ w_ho.T + b_o))
    return np.stack(outputs), h


def one_layer_net(tmp_path, layer_type, shapes, params, tops, name="rec"):
    bottoms = [f"in{j}" for j in range(len(shapes))]
    net = {"name": "recurrent", "layers": [
        {"name": "input", "type": "Input", "top": bottoms, "input_param": {"shape": [{"dim": list(s)} for s in shapes]}},
        {"name": name, "type": layer_type, "bottom": bottoms, "top": tops, **params}]}
    path = tmp_path / f"{layer_type}.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    torch.manual_seed(0)
    return netdef.load_net(path).double(), bottoms


def blobs_of(net, name="rec"):
    return [p.detach().numpy() for p in getattr(net, name).parameters()]


def test_lstm_equals_caffes_loop_with_resets_static_input_and_carried_state(tmp_path):
    t, n, k, d, ks = 6, 3, 4, 5, 2
    params = {"recurrent_param": {"num_output": d, "weight_filler": GAUSS, "bias_filler": GAUSS}}
    net, bottoms = one_layer_net(tmp_path, "LSTM", [(t, n, k), (t, n), (n, ks)], params, ["h"])
    assert [name for name, _ in net.named_parameters()] == ["rec.W_xc", "rec.b_c", "rec.W_xc_static", "rec.W_hc"]
    assert [tuple(p.shape) for p in net.parameters()] == [(4 * d, k), (4 * d,), (4 * d, ks), (4 * d, d)]
    rng = np.random.default_rng(0)
    x_static = rng.normal(size=(n, ks))
    # Stream 0 restarts mid-sequence, stream 1 at the start only, stream 2 continues the previous pass.
    cont = np.ones((t, n))
    cont[0, :2] = 0
    cont[3, 0] = 0
    state = (np.zeros((n, d)), np.zeros((n, d)))
    for _ in range(2):  # the second pass starts from the first pass's final state, as Caffe's does
        x = rng.normal(size=(t, n, k))
        expected, state = caffe_lstm(x, cont, blobs_of(net), state, x_static)
        out = net(**{bottoms[0]: torch.tensor(x), bottoms[1]: torch.tensor(cont), bottoms[2]: torch.tensor(x_static)})
        np.testing.assert_allclose(out["h"].detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_lstm_expose_hidden_reads_and_gives_the_state_without_gradient(tmp_path):
    t, n, k, d = 4, 2, 3, 3
    params = {"recurrent_param": {"num_output": d, "weight_filler": GAUSS, "bias_filler": GAUSS, "expose_hidden": True}}
    net, bottoms = one_layer_net(tmp_path, "LSTM", [(t, n, k), (t, n), (1, n, d), (1, n, d)], params,
                                 ["h", "hT", "cT"])
    rng = np.random.default_rng(1)
    x, h0, c0 = rng.normal(size=(t, n, k)), rng.normal(size=(1, n, d)), rng.normal(size=(1, n, d))
    cont = np.array([[1, 0], [1, 1], [0, 1], [1, 1]], dtype=float)
    expected, (h_t, c_t) = caffe_lstm(x, cont, blobs_of(net), (h0[0], c0[0]))
    given = [torch.tensor(v, requires_grad=True) for v in (x, cont, h0, c0)]
    for _ in range(2):  # no state carried: the same inputs give the same outputs
        out = net(**dict(zip(bottoms, given)))
        np.testing.assert_allclose(out["h"].detach().numpy(), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out["hT"][0].numpy(), h_t, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out["cT"][0].numpy(), c_t, rtol=1e-12, atol=1e-12)
    out["h"].sum().backward()
    assert given[0].grad is not None  # x gets a gradient; Caffe shares no diff with h0, c0 or cont
    assert all(v.grad is None for v in given[1:]) and not out["hT"].requires_grad


def test_rnn_equals_caffes_loop(tmp_path):
    t, n, k, d = 5, 2, 3, 4
    params = {"recurrent_param": {"num_output": d, "weight_filler": GAUSS, "bias_filler": GAUSS}}
    net, bottoms = one_layer_net(tmp_path, "RNN", [(t, n, k), (t, n)], params, ["o"])
    assert [name for name, _ in net.named_parameters()] == ["rec.W_xh", "rec.b_h", "rec.W_hh", "rec.W_ho", "rec.b_o"]
    rng = np.random.default_rng(2)
    cont = np.array([[0, 0], [1, 1], [1, 0], [0, 1], [1, 1]], dtype=float)
    h = np.zeros((n, d))
    for _ in range(2):
        x = rng.normal(size=(t, n, k))
        expected, h = caffe_rnn(x, cont, blobs_of(net), h)
        out = net(**{bottoms[0]: torch.tensor(x), bottoms[1]: torch.tensor(cont)})
        np.testing.assert_allclose(out["o"].detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer_type", ["RNN", "LSTM"])
def test_recurrent_gradients_pass_gradcheck(tmp_path, layer_type):
    """The backward through the time loop (inputs, static input and every blob), checked numerically in
    float64; cont starts every stream, so each call starts from a zero state whatever the carried one."""
    t, n, k, d, ks = 4, 2, 3, 3, 2
    params = {"recurrent_param": {"num_output": d, "weight_filler": GAUSS, "bias_filler": GAUSS}}
    net, bottoms = one_layer_net(tmp_path, layer_type, [(t, n, k), (t, n), (n, ks)], params, ["o"])
    cont = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 1]], dtype=torch.float64)
    names = [name for name, _ in net.named_parameters()]

    def forward(x, x_static, *blobs):
        inputs = {bottoms[0]: x, bottoms[1]: cont, bottoms[2]: x_static}
        return torch.func.functional_call(net, dict(zip(names, blobs)), kwargs=inputs)["o"]

    x, x_static = torch.randn(t, n, k, dtype=torch.float64), torch.randn(n, ks, dtype=torch.float64)
    blobs = [p.detach().clone() for p in net.parameters()]
    assert torch.autograd.gradcheck(forward, [v.requires_grad_() for v in (x, x_static, *blobs)])


def test_lstm_unit_gradients_pass_gradcheck(tmp_path):
    n, d = 3, 2
    net, bottoms = one_layer_net(tmp_path, "LSTMUnit", [(1, n, d), (1, n, 4 * d), (1, n)], {}, ["c", "h"])
    cont = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)

    def forward(c_prev, gates):
        out = net(**{bottoms[0]: c_prev, bottoms[1]: gates, bottoms[2]: cont})
        return out["c"], out["h"]

    c_prev = torch.randn(1, n, d, dtype=torch.float64, requires_grad=True)
    gates = torch.randn(1, n, 4 * d, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(forward, [c_prev, gates])
    c, _ = forward(c_prev, gates)
    i, g = torch.sigmoid(gates[0, 1, :d]), torch.tanh(gates[0, 1, 3 * d:])
    torch.testing.assert_close(c[0, 1], i * g)  # cont 0: c_prev is forgotten
    c[0, 1].sum().backward()
    assert torch.all(c_prev.grad[0, 1] == 0)


def test_embed_looks_up_rows_of_its_input_dim_x_num_output_table(tmp_path):
    params = {"embed_param": {"num_output": 3, "input_dim": 6, "weight_filler": GAUSS, "bias_filler": GAUSS}}
    net, bottoms = one_layer_net(tmp_path, "Embed", [(2, 4)], params, ["e"])
    weight, bias = blobs_of(net)
    assert weight.shape == (6, 3)  # Caffe's layout: input_dim x num_output
    indices = torch.tensor([[0, 5, 2.9, 1], [3, 3, 4, 0]], dtype=torch.float64, requires_grad=True)
    out = net(**{bottoms[0]: indices})["e"]
    rows = indices.detach().numpy().astype(int)  # Caffe's static_cast<int>: 2.9 reads as 2
    np.testing.assert_allclose(out.detach().numpy(), weight[rows] + bias)
    grads = torch.randn_like(out)
    out.backward(grads)
    assert indices.grad is None
    table = np.zeros_like(weight)  # Caffe's EmbedLayer::Backward: each row sums the diffs of its indices
    np.add.at(table, rows.ravel(), grads.numpy().reshape(-1, 3))
    np.testing.assert_allclose(getattr(net, "rec").weight.grad.numpy(), table, rtol=1e-12)


@pytest.mark.parametrize("shapes, message", [
    ([(4, 2, 3), (4, 3)], "cont must be T x N"),
    ([(4, 2, 3), (4, 2), (3, 2)], "static input must be N x"),
    ([(4, 2), (4, 2)], "x must be T x N x ... (time steps, streams, features) (expected at least 3 axes"),
])
def test_bad_recurrent_shapes_are_positioned_errors(tmp_path, netdef_cli, shapes, message):
    params = {"recurrent_param": {"num_output": 2}}
    bottoms = [f"in{j}" for j in range(len(shapes))]
    net = {"name": "bad", "layers": [
        {"name": "input", "type": "Input", "top": bottoms, "input_param": {"shape": [{"dim": list(s)} for s in shapes]}},
        {"name": "lstm", "type": "LSTM", "bottom": bottoms, "top": "h", **params}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    status, out, err = netdef_cli("check", path)
    assert status == 2 and message in err and f"{path}:" in err and "Traceback" not in err


def test_expose_hidden_needs_the_state_bottoms_and_tops(tmp_path, netdef_cli):
    params = {"recurrent_param": {"num_output": 2, "expose_hidden": True}}
    net = {"name": "bad", "layers": [
        {"name": "input", "type": "Input", "top": ["x", "cont"], "input_param": {"shape": [{"dim": [3, 2, 4]}, {"dim": [3, 2]}]}},
        {"name": "lstm", "type": "LSTM", "bottom": ["x", "cont"], "top": "h", **params}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(net, sort_keys=False))
    status, out, err = netdef_cli("check", path)
    assert status == 2 and "initial state (h0, c0)" in err and "4 or 5 bottoms" in err
    assert "final state (hT, cT)" in err and "3 tops" in err


def test_the_lstm_language_model_trains_through_netdef_train(tmp_path, netdef_subprocess):
    """examples/lstm as shipped: make_data.py writes the corpus, `netdef train` runs Caffe's form of the net
    (Embed, LSTM with cont, InnerProduct axis 2, SoftmaxWithLoss axis 2) and the loss falls well below
    ln(25), the loss of a uniform guess over the 25 characters; the test accuracy rises from chance."""
    for name in ("lstm_lm.yaml", "lstm_lm_solver.yaml"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), str(tmp_path / "data")], check=True,
                   capture_output=True, timeout=60)
    result = netdef_subprocess("train", tmp_path / "lstm_lm_solver.yaml", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    losses = [float(v) for v in re.findall(r"Iteration \d+.*, loss = ([\d.e+-]+)", log)]
    assert len(losses) >= 10 and abs(losses[0] - np.log(25)) < 0.1
    assert losses[-1] < 0.5 * losses[0], losses
    # The TEST net (Accuracy over axis 2) on held-out sentences: from about chance (an untrained net may
    # happen to favour a frequent character) to most characters right.
    accuracies = [float(v) for v in re.findall(r"Test net output #\d+: accuracy = ([\d.e+-]+)", log)]
    assert len(accuracies) == 2 and accuracies[0] < 0.25 and accuracies[1] > 0.6, accuracies
    assert accuracies[1] - accuracies[0] > 0.4, accuracies


def test_the_test_net_shares_the_weights_but_not_the_carried_state(tmp_path):
    """As Caffe's test net, which has its own unrolled net: the TEST net shares the TRAIN net's blobs, while
    each keeps the state its own passes end with."""
    params = {"recurrent_param": {"num_output": 2, "weight_filler": GAUSS}}
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"name": "net", "layers": [
        {"name": "input", "type": "Input", "top": ["x", "cont"], "input_param": {"shape": [{"dim": [3, 2, 4]}, {"dim": [3, 2]}]}},
        {"name": "rec", "type": "LSTM", "bottom": ["x", "cont"], "top": "h", **params}]}, sort_keys=False))
    train = netdef.load_net(path)
    test = netdef.load_net(path, phase="TEST", share_with=train)
    assert test.rec.W_hc is train.rec.W_hc
    x, cont = torch.randn(3, 2, 4), torch.ones(3, 2)
    first = train(x=x, cont=cont)["h"]
    torch.testing.assert_close(test(x=x, cont=cont)["h"], first)  # both start from zero
    assert not torch.allclose(train(x=x, cont=cont)["h"], first)  # the TRAIN net continues its streams
    torch.testing.assert_close(test(x=x, cont=torch.cat([torch.zeros(1, 2), cont[1:]]))["h"][0], first[0])


def test_an_lstm_exports_to_onnx_starting_every_call_from_a_zero_state(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from netdef.tools.export import export_onnx
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"name": "net", "layers": [
        {"name": "input", "type": "Input", "top": ["x", "cont"], "input_param": {"shape": [{"dim": [5, 2, 3]}, {"dim": [5, 2]}]}},
        {"name": "rec", "type": "LSTM", "bottom": ["x", "cont"], "top": "h",
         "recurrent_param": {"num_output": 4, "weight_filler": GAUSS, "bias_filler": GAUSS}}]}, sort_keys=False))
    torch.manual_seed(0)
    export_onnx(path, tmp_path / "net.onnx")
    torch.manual_seed(0)  # the same fillers' weights as the exported ones
    net = netdef.load_net(path, phase="TEST")
    x = torch.randn(5, 2, 3)
    cont = torch.tensor([[1.0, 0.0], [1, 1], [0, 1], [1, 1], [1, 0]])
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    first_pass = net(x=x, cont=cont)["h"].detach().numpy()
    for _ in range(2):  # every call is netdef's first pass, from a zero state
        (h,) = session.run(None, {"x": x.numpy(), "cont": cont.numpy()})
        np.testing.assert_allclose(h, first_pass, rtol=1e-5, atol=1e-6)


def test_caffes_lstm_and_embed_blobs_load_from_a_caffemodel_by_order(tmp_path):
    """A .caffemodel holds a layer's blobs in Caffe's order, unnamed: Embed (weight input_dim x num_output),
    LSTM (W_xc, b_c, W_hc); they land in the blobs of the same names here, every one copied."""
    from netdef.caffe import proto
    from netdef.caffe.caffemodel import blob_proto
    from netdef.train.snapshot import copy_weights, load_weights
    t, n, vocabulary, k, d = 3, 2, 5, 4, 3
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"name": "net", "layers": [
        {"name": "input", "type": "Input", "top": ["words", "cont"], "input_param": {"shape": [{"dim": [t, n]}]}},
        {"name": "embed", "type": "Embed", "bottom": "words", "top": "x",
         "embed_param": {"num_output": k, "input_dim": vocabulary, "bias_term": False}},
        {"name": "lstm", "type": "LSTM", "bottom": ["x", "cont"], "top": "h", "recurrent_param": {"num_output": d}}]},
        sort_keys=False))
    blobs = {"embed": [torch.randn(vocabulary, k)],
             "lstm": [torch.randn(4 * d, k), torch.randn(4 * d), torch.randn(4 * d, d)]}
    model = proto.message("NetParameter")(name="net")
    for name, layer_type in (("embed", "Embed"), ("lstm", "LSTM")):
        layer = model.layer.add(name=name, type=layer_type)
        for tensor in blobs[name]:
            blob_proto(tensor, layer.blobs.add())
    (tmp_path / "net.caffemodel").write_bytes(model.SerializeToString())
    net = netdef.load_net(path)
    rows = copy_weights(net, load_weights(tmp_path / "net.caffemodel"), {"embed": "embed", "lstm": "lstm"})
    assert {row[2] for row in rows} == {"copied"} and len(rows) == 4
    for name, expected in zip(("W_xc", "b_c", "W_hc"), blobs["lstm"]):
        torch.testing.assert_close(getattr(net.lstm, name).detach(), expected)
    torch.testing.assert_close(net.embed.weight.detach(), blobs["embed"][0])
