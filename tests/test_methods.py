"""The method catalogue of the first four methods: METHODS, validate_options, check_pair and build_term.

The contract every registered method must keep is tested in test_every_method.py."""

import pytest
import torch
from torch import nn

from featdistill_core.losses import (
    METHODS,
    AttentionTransferLoss,
    FeatureDistillationLoss,
    FSPLoss,
    BuildContext,
    Method,
    OptionSpec,
    PairCheck,
    StepContext,
    TrainingProgress,
    build_term,
    check_pair,
    validate_options,
)


def build_pair_loss(method, student_shapes, teacher_shapes, options):
    return build_term(BuildContext(method=method, options=options, student_shapes=student_shapes,
                                   teacher_shapes=teacher_shapes))


def _step(students, teachers):
    progress = TrainingProgress("student", 1, 1, 1, 1, 1)
    return StepContext(tuple(students), tuple(teachers), torch.zeros(1), None, torch.zeros(1), torch.zeros(1), progress)

# --- catalogue ---------------------------------------------------------------------------------


def test_catalogue_keys_layers_and_reference_weights():
    assert {"kd", "hint", "at", "fsp"} <= set(METHODS)
    assert {k: (METHODS[k].layers.minimum, METHODS[k].layers.maximum, METHODS[k].default_weight)
            for k in ("kd", "hint", "at", "fsp")} == {
        "kd": (0, 0, 0.9),
        "hint": (1, 1, 100.0),
        "at": (1, 1, 1000.0),
        "fsp": (2, 2, 1.0),
    }


@pytest.mark.parametrize("key", ["hint", "at", "fsp"])
def test_every_method_is_described_for_a_newcomer(key):
    info = METHODS[key]
    assert isinstance(info, Method) and info.key == key
    assert info.title and info.formula and info.paper
    assert any(year in info.paper for year in ("2015", "2017"))
    sentences = [s for s in info.summary.split(". ") if s.strip()]
    assert 2 <= len(sentences) <= 3
    for name, spec in info.options.items():
        assert isinstance(spec, OptionSpec) and spec.help
        assert isinstance(spec.default, spec.type)
        assert spec.choices is None or spec.default in spec.choices


def test_option_specs():
    at = METHODS["at"].options
    assert at["normalize"].choices == ("l1", "l2") and at["normalize"].default == "l2"
    assert at["p"].default == 2.0 and at["p"].type is float and at["p"].minimum == 1.0
    assert METHODS["hint"].options["regressor"].choices == ("auto", "conv", "conv_bn_relu")
    assert METHODS["fsp"].options == {}


# --- validate_options --------------------------------------------------------------------------


def test_validate_fills_defaults_and_returns_a_new_dict():
    given = {"normalize": "l1"}
    result = validate_options("at", given)
    assert result == {"p": 2.0, "normalize": "l1"}
    assert given == {"normalize": "l1"}
    assert validate_options("hint", None) == {"regressor": "conv_bn_relu"}
    assert validate_options("fsp", {}) == {}


def test_validate_accepts_an_integer_for_a_float_option():
    result = validate_options("at", {"p": 4})
    assert result["p"] == 4.0 and isinstance(result["p"], float)


def test_unknown_method_names_the_allowed_methods():
    with pytest.raises(ValueError) as error:
        validate_options("nosuch", {})
    assert str(error.value).startswith("unknown distillation method 'nosuch'; allowed methods: 'kd', 'hint', 'at', 'fsp'")


def test_value_not_in_choices_names_option_and_allowed_values():
    with pytest.raises(ValueError) as error:
        validate_options("at", {"normalize": "l3"})
    assert str(error.value) == "option 'normalize' of method 'at' must be one of 'l1', 'l2'; got 'l3'"


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("at", {"beta": 1}, "unknown option 'beta' for method 'at'; allowed options: 'p', 'normalize'"),
        ("fsp", {"p": 2}, "method 'fsp' takes no options; got 'p'"),
        ("at", {"p": "two"}, "option 'p' of method 'at' must be a number; got 'two'"),
        ("at", {"p": True}, "option 'p' of method 'at' must be a number; got True"),
        ("at", {"p": 0.5}, "option 'p' of method 'at' must be at least 1; got 0.5"),
        ("at", {"normalize": 2}, "option 'normalize' of method 'at' must be a string; got 2"),
        ("hint", {"regressor": "mlp"},
         "option 'regressor' of method 'hint' must be one of 'auto', 'conv', 'conv_bn_relu'; got 'mlp'"),
    ],
)
def test_validate_errors_are_one_clear_line(method, options, message):
    with pytest.raises(ValueError) as error:
        validate_options(method, options)
    assert str(error.value) == message


# --- check_pair --------------------------------------------------------------------------------


def test_hint_with_matching_maps_needs_no_adapter_only_with_auto():
    assert check_pair("hint", [(64, 8, 8)], [(64, 8, 8)], {"regressor": "auto"}) == PairCheck(True, "none", "")
    check = check_pair("hint", [(64, 8, 8)], [(64, 8, 8)], {})
    assert check.ok and check.adapter == "1×1 conv + BatchNorm + ReLU regressor 64→64 channels"


def test_hint_adapter_texts():
    check = check_pair("hint", [(16, 8, 8)], [(64, 8, 8)], {"regressor": "conv"})
    assert check.ok and check.adapter == "1×1 conv regressor 16→64 channels"
    check = check_pair("hint", [(16, 16, 16)], [(64, 8, 8)], {"regressor": "auto"})
    assert check.adapter == "student map pooled 16×16→8×8; 1×1 conv regressor 16→64 channels"
    check = check_pair("hint", [(64, 4, 4)], [(64, 8, 8)], {"regressor": "auto"})
    assert check.adapter == "student map upsampled 4×4→8×8 (bilinear)"
    check = check_pair("hint", [(128,)], [(256,)], {"regressor": "auto"})
    assert check.ok and check.adapter == "linear regressor 128→256 features"
    check = check_pair("hint", [(128,)], [(256,)], {})
    assert check.adapter == "linear + BatchNorm + ReLU regressor 128→256 features"


@pytest.mark.parametrize(
    "student, teacher, reason",
    [
        ([(64, 8, 8)], [(256,)],
         "the hint loss needs two feature maps (C,H,W) or two flat feature vectors (D,); "
         "student layer gives (64, 8, 8) and teacher layer gives (256,)"),
        ([(197, 768)], [(64, 8, 8)],
         "the hint loss needs feature maps (C,H,W) or flat features (D,); student layer gives (197, 768)"),
        ([(64, 8, 8), (64, 8, 8)], [(64, 8, 8)],
         "the hint loss takes 1 layer on each side; got 2 student and 1 teacher"),
    ],
)
def test_hint_refusals(student, teacher, reason):
    check = check_pair("hint", student, teacher, {})
    assert check == PairCheck(False, "", reason)


def test_attention_transfer_pairs():
    assert check_pair("at", [(16, 8, 8)], [(64, 8, 8)], {}) == PairCheck(True, "none", "")
    assert check_pair("at", [(16, 8, 8)], [(64, 16, 16)], {}).adapter == "teacher map pooled 16×16→8×8"
    assert check_pair("at", [(16, 16, 8)], [(64, 8, 16)], {}).adapter == (
        "student map pooled 16×8→8×8; teacher map pooled 8×16→8×8"
    )
    check = check_pair("at", [(64,)], [(64, 8, 8)], {})
    assert not check.ok
    assert check.reason == "attention transfer needs 4-D feature maps (N,C,H,W); student layer gives (64,)"


def test_fsp_pairs():
    check = check_pair("fsp", [(16, 32, 32), (32, 16, 16)], [(16, 32, 32), (32, 16, 16)], {})
    assert check.ok
    assert check.adapter == "student layer 1 pooled 32×32→16×16; teacher layer 1 pooled 32×32→16×16"
    check = check_pair("fsp", [(16, 8, 8), (32, 8, 8)], [(64, 8, 8), (32, 4, 4)], {})
    assert check.ok
    assert check.adapter == "teacher layer 1 pooled 8×8→4×4; 1×1 conv regressor 16→64 channels on student layer 1"
    assert check_pair("fsp", [(8, 4, 4), (8, 4, 4)], [(8, 4, 4), (8, 4, 4)], {}).adapter == "none"


@pytest.mark.parametrize(
    "student, teacher, reason",
    [
        ([(16, 8, 8)], [(16, 8, 8), (16, 8, 8)],
         "FSP takes 2 layers on each side; got 1 student and 2 teacher"),
        ([(16, 8, 8), (10,)], [(16, 8, 8), (16, 8, 8)],
         "FSP needs 4-D feature maps (N,C,H,W); student layer 2 gives (10,)"),
    ],
)
def test_fsp_refusals(student, teacher, reason):
    assert check_pair("fsp", student, teacher, {}) == PairCheck(False, "", reason)


@pytest.mark.parametrize(
    "method, student, teacher, options, reason_part",
    [
        ("nosuch", [(8, 4, 4)], [(8, 4, 4)], {}, "unknown distillation method 'nosuch'"),
        ("at", [(8, 4, 4)], [(8, 4, 4)], {"normalize": "l3"}, "must be one of 'l1', 'l2'; got 'l3'"),
        ("at", None, [(8, 4, 4)], {}, "student shapes must be a list"),
        ("at", "abc", [(8, 4, 4)], {}, "student shapes must be a list"),
        ("at", [(0, 4, 4)], [(8, 4, 4)], {}, "student layer gives an empty shape (0, 4, 4)"),
        ("at", [()], [(8, 4, 4)], {}, "student layer gives an empty shape ()"),
        ("at", [(8.5, 4, 4)], [(8, 4, 4)], {}, "non-integer sizes"),
        ("hint", [(8, 4, 4)], [None], {}, "teacher layer gives no usable shape"),
        ("hint", [(8, True, 4)], [(8, 4, 4)], {}, "non-integer sizes"),
        ("fsp", [], [], {}, "got 0 student and 0 teacher"),
        ("hint", [(8, 4, 4)], [(8, 4, 4)], "regressor=conv", "must be a table"),
    ],
)
def test_check_pair_never_raises(method, student, teacher, options, reason_part):
    check = check_pair(method, student, teacher, options)
    assert not check.ok and reason_part in check.reason


def test_check_pair_accepts_torch_sizes():
    assert check_pair("at", [torch.Size([8, 4, 4])], [torch.Size([16, 4, 4])], {}).ok


# --- build_term ---------------------------------------------------------------------------


def test_build_hint_has_a_trainable_regressor_with_gradients():
    loss_fn = build_pair_loss("hint", [(4, 8, 8)], [(6, 4, 4)], {})
    assert isinstance(loss_fn.loss, FeatureDistillationLoss)
    assert loss_fn.adapter == "student map pooled 8×8→4×4; 1×1 conv + BatchNorm + ReLU regressor 4→6 channels"
    student = torch.randn(2, 4, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 6, 4, 4, requires_grad=True)
    loss = loss_fn(_step([student], [teacher]))
    loss.backward()
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert student.grad is not None and teacher.grad is None
    params = list(loss_fn.parameters())
    assert params and all(p.grad is not None for p in params)


def test_build_flat_hint():
    loss_fn = build_pair_loss("hint", [(5,)], [(7,)], {"regressor": "auto"})
    assert isinstance(loss_fn.loss.regressor[0], nn.Linear)
    assert loss_fn(_step([torch.randn(3, 5)], [torch.randn(3, 7)])).dim() == 0


def test_build_at_equals_the_loss_class_and_has_no_parameters():
    loss_fn = build_pair_loss("at", [(4, 8, 8)], [(6, 4, 4)], {"normalize": "l1", "p": 1})
    assert isinstance(loss_fn.loss, AttentionTransferLoss)
    assert list(loss_fn.parameters()) == []
    student = torch.randn(2, 4, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 6, 4, 4)
    loss = loss_fn(_step([student], [teacher]))
    direct = AttentionTransferLoss(p=1, normalize="l1")(student, teacher)
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    loss.backward()
    assert student.grad is not None


def test_build_fsp_owns_one_regressor_per_mismatched_map():
    loss_fn = build_pair_loss("fsp", [(4, 8, 8), (8, 4, 4)], [(6, 8, 8), (8, 4, 4)], {})
    assert isinstance(loss_fn.loss, FSPLoss)
    assert isinstance(loss_fn.loss.regressors[0], nn.Conv2d) and isinstance(loss_fn.loss.regressors[1], nn.Identity)
    students = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)]
    teachers = [torch.randn(2, 6, 8, 8, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)]
    loss = loss_fn(_step(students, teachers))
    loss.backward()
    assert loss.dim() == 0
    assert all(s.grad is not None for s in students) and all(t.grad is None for t in teachers)
    assert all(p.grad is not None for p in loss_fn.parameters())


def test_build_refuses_with_the_check_pair_reason():
    with pytest.raises(ValueError) as error:
        build_pair_loss("at", [(64,)], [(64, 8, 8)], {})
    assert str(error.value) == "attention transfer needs 4-D feature maps (N,C,H,W); student layer gives (64,)"
    with pytest.raises(ValueError, match="option 'normalize' of method 'at' must be one of 'l1', 'l2'; got 'l3'"):
        build_pair_loss("at", [(8, 4, 4)], [(8, 4, 4)], {"normalize": "l3"})


def test_kd_term_reads_the_logits():
    term = build_pair_loss("kd", [], [], {"temperature": 2.0})
    student, teacher = torch.randn(4, 10, requires_grad=True), torch.randn(4, 10)
    progress = TrainingProgress("student", 1, 1, 1, 1, 1)
    step = StepContext((), (), student, teacher, torch.zeros(4, dtype=torch.long), torch.arange(4), progress)
    from featdistill_core.losses import KDLoss
    assert term(step).item() == pytest.approx(KDLoss(2.0)(student, teacher).item(), rel=1e-6)
