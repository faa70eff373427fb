"""Stage 2, validate: schema problems as positioned, readable Problems (never jsonschema's own text)."""
from __future__ import annotations

import pytest

from netdef.errors import NetdefError, Pos
from netdef.front.load import Origin, load_yaml_text
from netdef.front.validate import layer_problems, validate_document

HEADER = "name: t\nlayers:\n  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 8, 8]}}}\n"


def layer(text, templates=False):
    """Problems of one layer written in flow style on line 1 of a file."""
    data, source = load_yaml_text(text, "net.yaml")
    return layer_problems(data, Origin(source, ()), templates=templates)


def document(text):
    data, source = load_yaml_text(text, "net.yaml")
    with pytest.raises(NetdefError) as caught:
        validate_document(data, source)
    return caught.value.problems


def only(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_valid_layers_and_nets_have_no_problems():
    assert layer("{name: c, type: Convolution, bottom: d, top: c, convolution_param: "
                 "{num_output: 8, kernel_size: [3, 5], pad: 1, weight_filler: {type: gaussian, std: 1e-2}}}") == []
    data, source = load_yaml_text(HEADER + "  - {name: r, type: ReLU, bottom: data, top: data}\n")
    validate_document(data, source)


def test_unknown_key_in_a_block_suggests_the_close_key():
    problem = only(layer("{name: c, type: Convolution, convolution_param: {num_output: 8, kernal_size: 3}}"))
    assert problem.message == "unknown key 'kernal_size' in convolution_param"
    assert problem.hint == "did you mean 'kernel_size'?"
    assert problem.pos == Pos("net.yaml", 1, 65)  # the key itself
    assert (problem.layer, problem.layer_type) == ("c", "Convolution")


def test_unknown_key_suggestions_consider_every_key_of_the_layer_type():
    # Written at the layer level, but it belongs to the parameter block.
    problem = only(layer("{name: c, type: Convolution, kernel_size: 3, convolution_param: {num_output: 8, "
                         "kernel_size: 3}}"))
    assert problem.hint == "'kernel_size' belongs under 'convolution_param'"
    # Misspelt and misplaced: the suggestion says where the real key lives.
    problem = only(layer("{name: c, type: Convolution, kernal_size: 3, convolution_param: {num_output: 8, "
                         "kernel_size: 3}}"))
    assert problem.hint == "did you mean 'kernel_size' (under 'convolution_param')?"
    # A layer-level key written inside a block.
    problem = only(layer("{name: c, type: ReLU, relu_param: {negative_slope: 0.1, bottom: x}}"))
    assert problem.hint == "'bottom' belongs at the layer level"
    # A key of the layer's other block.
    problem = only(layer("{name: d, type: Data, top: [a, b], data_param: {source: x, batch_size: 2, scale: 0.5}}"))
    assert problem.hint == "'scale' belongs under 'transform_param'"
    # A filler field written next to the filler.
    problem = only(layer("{name: f, type: InnerProduct, inner_product_param: {num_output: 2, std: 0.1}}"))
    assert problem.hint == "'std' belongs under 'inner_product_param.weight_filler' or " \
                           "under 'inner_product_param.bias_filler'"


def test_parameter_block_of_another_layer_type_names_its_owners():
    problem = only(layer("{name: p, type: Pooling, convolution_param: {kernel_size: 2}}"))
    assert problem.hint == ("'convolution_param' is for Convolution, Deconvolution, Im2col layers; "
                            "a Pooling layer takes 'pooling_param'")
    problem = only(layer("{name: r, type: Split, relu_param: {}}"))
    assert problem.hint.endswith("a Split layer takes no parameter block")


def test_wrong_type_inside_a_list_points_at_the_item():
    problem = only(layer("{name: c, type: Convolution, convolution_param: {num_output: 8, kernel_size: [3, x]}}"))
    assert problem.message == "invalid value for 'kernel_size[1]'"
    assert (problem.expected, problem.found) == ("an integer", "'x'")
    assert problem.pos == Pos("net.yaml", 1, 82)


def test_wrong_type_in_a_list_of_blocks_points_at_the_item():
    problem = only(layer("{name: c, type: InnerProduct, param: [{lr_mult: 1}, {lr_mult: fast}], "
                         "inner_product_param: {num_output: 2}}"))
    assert problem.message == "invalid value for 'param.lr_mult'"
    assert problem.pos == Pos("net.yaml", 1, 63)


@pytest.mark.parametrize("value, expected, found, hint", [
    ('"16"', "an integer", "'16'", "remove the quotes to make it a number"),
    ("[16, 32]", "an integer", "a list", None),
    ("{n: 16}", "an integer", "a mapping", None),
    ("16.5", "an integer", "16.5", None),
    ("true", "an integer", "true", None),
    ('"${n}"', "an integer", "'${n}'", "templates (${...}) only work inside a block (see 'blocks:')"),
])
def test_wrong_value_type_says_expected_and_found(value, expected, found, hint):
    problem = only(layer(f"{{name: f, type: InnerProduct, inner_product_param: {{num_output: {value}}}}}"))
    assert problem.message == "invalid value for 'num_output'"
    assert (problem.expected, problem.found, problem.hint) == (expected, found, hint)


def test_repeated_field_expects_a_value_or_a_list_of_values():
    problem = only(layer("{name: l, type: SoftmaxWithLoss, loss_weight: heavy}"))
    assert problem.expected == "a number or a list of numbers"


def test_out_of_range_reports_the_bound_and_a_mistyped_value_only_its_type():
    problem = only(layer("{name: c, type: Convolution, convolution_param: {num_output: 0, kernel_size: 3}}"))
    assert (problem.message, problem.expected, problem.found) == ("'num_output' is out of range", ">= 1", "0")
    problem = only(layer("{name: c, type: Convolution, convolution_param: {num_output: 0.5, kernel_size: 3}}"))
    assert problem.message == "invalid value for 'num_output'"


def test_enum_typo_suggests_the_choice_and_lists_all():
    problem = only(layer("{name: p, type: Pooling, pooling_param: {pool: ave, kernel_size: 2}}"))
    assert problem.expected == "one of MAX, AVE, STOCHASTIC"
    assert problem.hint == "did you mean 'AVE'?"


def test_nested_field_is_named_with_its_block():
    problem = only(layer("{name: r, type: ReLU, include: {phase: train}}"))
    assert problem.message == "invalid value for 'include.phase'"
    assert problem.hint == "did you mean 'TRAIN'?"


def test_missing_required_keys():
    problem = only(layer("{name: f, type: InnerProduct, inner_product_param: {bias_term: false}}"))
    assert problem.message == "missing required key 'num_output' in inner_product_param"
    problem = only(layer("{type: ReLU, bottom: x, top: x}"))
    assert (problem.message, problem.layer, problem.layer_type) == ("missing required key 'name'", None, "ReLU")
    assert str(problem).startswith("net.yaml:1:1: unnamed layer (ReLU): ")
    problem = only(layer("{name: r, bottom: x, top: x}"))
    assert problem.message == "missing required key 'type'"


def test_unknown_layer_type_ignores_case_and_underscores_in_suggestions():
    assert only(layer("{name: r, type: relu}")).hint == "did you mean 'ReLU'?"
    assert only(layer("{name: r, type: INNER_PRODUCT}")).hint == "did you mean 'InnerProduct'?"
    assert only(layer("{name: r, type: Whatever}")).hint is None


def test_templates_are_allowed_in_blocks_and_instances_only():
    conv = "{name: c, type: Convolution, convolution_param: {num_output: '${n}', kernel_size: 3}}"
    assert layer(conv, templates=True) == []
    assert only(layer(conv, templates=False)).found == "'${n}'"
    assert layer("{use: unit, name: 'stage${i}', with: {n: '${8 * i}'}, repeat: 2}", templates=False) == []


def test_if_outside_a_block_is_explained():
    problem = only(layer("{name: r, type: ReLU, if: true}"))
    assert problem.hint == "'if' only works on layers inside a block"


def test_document_level_problems():
    problem = only(document("name: t\nlayer: []\n"))
    assert (problem.message, problem.hint, problem.pos) == ("unknown key 'layer'", "did you mean 'layers'?",
                                                            Pos("net.yaml", 2, 1))
    problem = only(document("name: t\ninput_dim: [1, 3, 8, 8]\nlayers: []\n"))
    assert "Input layer" in problem.hint
    problem = only(document(HEADER + "  - conv1\n"))
    assert (problem.message, problem.pos) == ("a layer must be a mapping", Pos("net.yaml", 4, 5))
    problem = only(document("- a\n- b\n"))
    assert problem.message == "a net file must be a mapping with 'name' and 'layers'"


def test_every_problem_of_a_document_is_reported_at_once():
    found = document(HEADER + "  - {name: a, type: ReLU, bottom: data, top: data, relu_param: {slope: 1}}\n"
                              "  - {name: b, type: Tanh, bottom: data, top: data}\n"
                              "  - {name: c, type: Dropout, bottom: data, top: data, dropout_param: {dropout_ratio: x}}\n"
                              "blocks:\n  unit:\n    layers:\n      - {name: u, type: ReLU, bottom: x, top: y, frob: 1}\n")
    assert sorted((p.pos.line, p.message) for p in found) == [
        (4, "unknown key 'slope' in relu_param"),
        (5, "unknown layer type 'Tanh'"),
        (6, "invalid value for 'dropout_ratio'"),
        (10, "unknown key 'frob'"),
    ]


def test_solver_problems_use_the_same_wording(write_yaml):
    from netdef.train.config import load_solver
    path = write_yaml("net: net.yaml\nbase_lr: '0.01'\nlr_policy: stpe\nmax_iter: -5\nmomentun: 0.9\n",
                      name="solver.yaml")
    with pytest.raises(NetdefError) as caught:
        load_solver(path)
    texts = sorted(str(p).split(": ", 1)[1] for p in caught.value.problems)
    assert texts == [
        "'max_iter' is out of range (expected >= 0, found -5)",
        "invalid value for 'base_lr' (expected a number, found '0.01'); remove the quotes to make it a number",
        "invalid value for 'lr_policy' (expected one of fixed, step, exp, inv, multistep, poly, sigmoid, "
        "found 'stpe'); did you mean 'step'?",
        "unknown key 'momentun'; did you mean 'momentum' or 'momentum2'?",
    ]
