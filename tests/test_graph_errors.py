"""Wiring (graph) and shape (infer) problems: each reported once, at the line that causes it, without
follow-on noise; and how a NetdefError renders many problems."""
from __future__ import annotations

import pytest

from netdef import errors, load_graph, summarize
from netdef.cli.check import net_phases
from netdef.errors import NetdefError, Pos, Problem

INPUTS = """
name: t
layers:
  - name: data
    type: Input
    top: [data, label]
    input_param:
      shape:
        - dim: [4, 3, 8, 8]
        - dim: [4]
"""


def problems_of(call, *args, **kw):
    with pytest.raises(NetdefError) as caught:
        call(*args, **kw)
    return caught.value.problems


def texts(problems):
    return [str(problem).split(": ", 1)[1] for problem in problems]


def test_bottom_made_only_later_names_the_later_producer(write_yaml):
    net = write_yaml(INPUTS + """
  - {name: relu, type: ReLU, bottom: conv, top: conv}
  - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 3}}
""")
    (problem,) = problems_of(load_graph, net)
    assert problem.message.startswith("bottom 'conv' is produced only by a later layer 'conv'")
    assert (problem.layer, problem.pos.line, problem.pos.col) == ("relu", 11, 38)


def test_misspelt_bottom_is_reported_once_without_follow_on_problems(write_yaml):
    # relu works in place on the misspelt blob, and `conv` is then never consumed: one problem only.
    net = write_yaml(INPUTS + """
  - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 3}}
  - {name: relu, type: ReLU, bottom: cnv, top: cnv}
  - {name: loss, type: EuclideanLoss, bottom: [cnv, conv], top: loss}
""")
    found = problems_of(load_graph, net)
    assert texts(found) == ["layer 'relu' (ReLU): unknown bottom blob 'cnv'; did you mean 'conv'?",
                            "layer 'loss' (EuclideanLoss): unknown bottom blob 'cnv'; did you mean 'conv'?"]


def test_unused_top_is_an_error_only_in_a_net_with_a_loss(write_yaml):
    deploy = write_yaml(INPUTS + """
  - {name: fc, type: InnerProduct, bottom: data, top: fc, inner_product_param: {num_output: 10}}
  - {name: prob, type: Softmax, bottom: fc, top: prob}
""", name="deploy.yaml")
    graph = load_graph(deploy)
    assert graph.outputs == ["label", "prob"]
    training = write_yaml(INPUTS + """
  - {name: fc, type: InnerProduct, bottom: data, top: fc, inner_product_param: {num_output: 10}}
  - {name: side, type: InnerProduct, bottom: data, top: side, inner_product_param: {num_output: 10}}
  - {name: accuracy, type: Accuracy, bottom: [fc, label], top: accuracy}
  - {name: loss, type: SoftmaxWithLoss, bottom: [fc, label], top: loss}
""", name="train.yaml")
    (problem,) = problems_of(load_graph, training)
    assert problem.message == "top 'side' is never used and is not a loss"
    assert problem.layer == "side"  # the metric `accuracy` is a legitimate output


def test_layer_names_are_unique_per_phase_only(write_yaml):
    net = write_yaml(INPUTS + """
  - {name: drop, type: Scale, bottom: data, top: data, include: {phase: TRAIN}}
  - {name: drop, type: Power, bottom: data, top: data, include: {phase: TEST}}
  - {name: drop, type: Scale, bottom: data, top: data}
""")
    (problem,) = problems_of(load_graph, net, phase="TRAIN")
    assert problem.message == "layer name 'drop' is used twice in phase TRAIN (first at line 11)"
    assert problem.pos == Pos(str(net), 13, 12)


def test_counts_of_tops_loss_weights_propagate_down_and_params(write_yaml):
    net = write_yaml(INPUTS + """
  - name: fc
    type: InnerProduct
    bottom: data
    top: [fc, fc2]
    propagate_down: [true, false]
    param: [{lr_mult: 1}, {lr_mult: 2}, {lr_mult: 3}]
    inner_product_param: {num_output: 10}
  - {name: loss, type: SoftmaxWithLoss, bottom: [fc, label], top: loss, loss_weight: [1, 2]}
""")
    found = sorted(problems_of(load_graph, net), key=lambda p: p.pos)
    assert [(p.pos.line, p.message, p.expected, p.found) for p in found] == [
        (14, "wrong number of tops", "1 top", "2"),
        (15, "one 'propagate_down' per bottom is needed", "1 value", "2"),
        (16, "too many 'param' entries", "at most 2 (weight, bias)", "3"),
        (18, "one 'loss_weight' per top is needed", "1 value", "2"),
    ]


def test_include_and_exclude_together_are_refused_as_in_caffe(write_yaml):
    net = write_yaml(INPUTS + """
  - {name: drop, type: Dropout, bottom: data, top: data, include: {phase: TRAIN}, exclude: {stage: x}}
""")
    (problem,) = problems_of(load_graph, net)
    assert "'include' or 'exclude' rules, not both" in problem.message
    assert problem.pos.col == 83  # the `exclude` key


def test_shape_problem_without_a_field_points_at_the_bottoms(write_yaml):
    net = write_yaml(INPUTS + """
  - {name: fc, type: InnerProduct, bottom: data, top: fc, inner_product_param: {num_output: 10}}
  - {name: sum, type: Eltwise, bottom: [data, fc], top: sum}
""")
    (problem,) = problems_of(summarize, net)
    assert problem.pos == Pos(str(net), 12, 40)
    assert (problem.expected, problem.found) == ("shape [4, 3, 8, 8] (as 'data')", "shape [4, 10]")


def test_empty_output_is_reported_once_and_stops_there(write_yaml):
    net = write_yaml(INPUTS + """
  - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 9}}
  - {name: relu, type: ReLU, bottom: conv, top: conv}
  - {name: pool, type: Pooling, bottom: conv, top: pool, pooling_param: {kernel_size: 2}}
""")
    (problem,) = problems_of(summarize, net)
    assert problem.message == "output 'conv' would be empty"
    assert problem.found == "shape [4, 4, 0, 0]"
    assert problem.hint == "the input [4, 3, 8, 8] is too small for this kernel/stride"


def test_shared_parameters_must_fit_unless_permissive(write_yaml):
    def net(mode):
        return write_yaml(INPUTS + f"""
  - {{name: a, type: InnerProduct, bottom: data, top: a, param: [{{name: w}}],
     inner_product_param: {{num_output: 6, bias_term: false}}}}
  - {{name: b, type: InnerProduct, bottom: a, top: b, param: [{{name: w, share_mode: {mode}}}],
     inner_product_param: {{num_output: 48, bias_term: false, axis: 0}}}}
""", name=f"{mode}.yaml")
    (problem,) = problems_of(summarize, net("STRICT"))
    assert problem.message == "shared parameter 'w' does not fit this layer's weight"
    assert (problem.expected, problem.found) == ("shape [6, 192] (as in layer 'a')", "shape [48, 24]")
    assert problem.pos.line == 13  # the param entry
    assert summarize(net("PERMISSIVE")).total_params == 6 * 192  # same count (48 * 24): one blob, counted once


def test_check_reports_each_phase_once(write_yaml):
    net = write_yaml(INPUTS + """
  - {name: fc, type: InnerProduct, bottom: dta, top: fc, inner_product_param: {num_output: 10}}
  - {name: acc, type: Accuracy, bottom: [fc, lbl], top: acc, include: {phase: TEST}}
""")
    found = problems_of(net_phases, net)
    assert texts(found) == ["layer 'fc' (InnerProduct): unknown bottom blob 'dta'; did you mean 'data'?",
                            "layer 'acc' (Accuracy): unknown bottom blob 'lbl'; did you mean 'label'?"]


def test_render_sorts_removes_repeats_and_caps_each_file(monkeypatch):
    monkeypatch.setattr(errors, "MAX_REPORTED", 2)
    problems = [Problem("third", Pos("a.yaml", 9, 1)), Problem("first", Pos("a.yaml", 1, 1)),
                Problem("first", Pos("a.yaml", 1, 1)), Problem("second", Pos("a.yaml", 5, 1)),
                Problem("other file", Pos("b.yaml", 1, 1)), Problem("no position")]
    assert NetdefError(problems).render().splitlines() == [
        "no position", "a.yaml:1:1: first", "a.yaml:5:1: second", "b.yaml:1:1: other file",
        "... and 1 more problems in a.yaml"]


def test_problem_text_has_layer_expected_found_hint_and_instances():
    problem = Problem("wrong thing", Pos("n.yaml", 3, 7), layer="conv2", layer_type="Convolution",
                      expected="2", found="3", hint="did you mean x?",
                      via=(("unit", "stage1", Pos("n.yaml", 20, 5)),))
    assert str(problem) == ("n.yaml:3:7: layer 'conv2' (Convolution): wrong thing (expected 2, found 3); "
                            "did you mean x?\n    in block 'unit', instance 'stage1' at n.yaml:20:5")
