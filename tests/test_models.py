"""The model registry, the built-in CIFAR architectures and user / torchvision / timm factories."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from featdistill_core.models import (
    ModelFactoryError,
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    register_model,
)
from featdistill_core.models import registry

EXPECTED_NAMES = {
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "mobilenetv2", "shufflenetv1", "shufflenetv2",
    "demo_teacher", "demo_student",
}

# Parameter counts for 100 classes as published in the CRD paper (Tian et al., ICLR 2020) and
# reproduced by RepDistiller, and for 10 classes in the ResNet paper (He et al. 2016, table 6).
PUBLISHED_PARAMS_10 = {
    "resnet20": 0.27e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
}
PUBLISHED_PARAMS_100 = {
    "resnet20": 0.28e6,
    "resnet56": 0.86e6,
    "resnet110": 1.74e6,
    "resnet8x4": 1.23e6,
    "resnet32x4": 7.43e6,
    "wrn_40_2": 2.25e6,
    "wrn_16_2": 0.70e6,
    "vgg13": 9.46e6,
    "mobilenetv2": 0.81e6,
    "shufflenetv1": 0.95e6,
    "shufflenetv2": 1.36e6,
}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_with_version_check(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model(x)`` with a hook on every module; fail if any captured output was later changed in place.

    ``Tensor._version`` counts in-place writes, so a captured stage output that a later
    ``relu_`` / ``+=`` / ``ReLU(inplace=True)`` overwrote has a higher version after the forward.
    """
    captured: dict[str, tuple[torch.Tensor, int]] = {}

    def make_hook(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                captured[name] = (output, output._version)
        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if n]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    changed = [name for name, (tensor, version) in captured.items() if tensor._version != version]
    assert not changed, f"outputs modified in place after capture: {changed[:5]}"
    return logits, {name: tensor for name, (tensor, _) in captured.items()}


def test_list_models_is_sorted_and_complete():
    infos = list_models()
    names = [info.name for info in infos]
    assert names == sorted(names)
    assert set(names) >= EXPECTED_NAMES
    assert all(isinstance(info, ModelInfo) and info.family and info.description for info in infos)
    families = {info.name: info.family for info in infos}
    assert families["resnet32x4"] == "resnet"
    assert families["wrn_40_2"] == "wrn"
    assert families["demo_teacher"] == families["demo_student"] == "demo"


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_model_gives_logits_and_keeps_captured_outputs(name, num_classes):
    torch.manual_seed(0)
    model = create_model(name, num_classes).eval()
    with torch.no_grad():
        logits, captured = forward_with_version_check(model, torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    # Every built-in names its main stages, and each one is a module that produced an output.
    assert model.stage_names and all(stage in captured for stage in model.stage_names)
    if num_classes == 100:
        # The "~0.86M params" / "~47k params" in the description (shown by `featdistill models`)
        # is the real count.
        claimed = re.search(r"~([\d.]+)([Mk]) params", registry._REGISTRY[name].info.description)
        assert claimed, f"{name} description gives no parameter count"
        scale = 1e6 if claimed.group(2) == "M" else 1e3
        assert count_params(model) == pytest.approx(float(claimed.group(1)) * scale, rel=0.05)


@pytest.mark.parametrize(
    "name, num_classes, published",
    [(name, 100, count) for name, count in sorted(PUBLISHED_PARAMS_100.items())]
    + [(name, 10, count) for name, count in sorted(PUBLISHED_PARAMS_10.items())],
)
def test_parameter_counts_match_published(name, num_classes, published):
    assert count_params(create_model(name, num_classes)) == pytest.approx(published, rel=0.03)


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "mobilenetv2", "shufflenetv1", "shufflenetv2"])
def test_other_input_sizes_work(name):
    with torch.no_grad():
        assert create_model(name, 7).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_resnet_module_paths_and_stage_shapes():
    model = create_model("resnet20", 10).eval()
    modules = dict(model.named_modules())
    for path in ["conv1", "bn1", "layer1", "layer2", "layer3", "layer2.1.conv1", "layer2.1.bn2",
                 "layer2.0.downsample", "layer3.2.conv2", "fc"]:
        assert path in modules, path
    assert "layer1.0.downsample" not in modules or modules["layer1.0.downsample"] is None
    with torch.no_grad():
        _, captured = forward_with_version_check(model, torch.randn(2, 3, 32, 32))
    assert captured["layer1"].shape == (2, 16, 32, 32)
    assert captured["layer2"].shape == (2, 32, 16, 16)
    assert captured["layer3"].shape == (2, 64, 8, 8)
    # Stage outputs come after the block's ReLU.
    assert (captured["layer2"] >= 0).all()


def test_wide_resnet_x4_widths():
    model = create_model("resnet32x4", 100)
    assert model.conv1.out_channels == 32
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels,
            model.layer3[0].conv1.out_channels] == [64, 128, 256]
    assert len(model.layer1) == 5


def test_demo_nets_are_small_with_matching_stages():
    teacher, student = create_model("demo_teacher", 10).eval(), create_model("demo_student", 10).eval()
    assert 60_000 <= count_params(teacher) <= 120_000
    assert 15_000 <= count_params(student) <= 30_000
    assert count_params(teacher) > 3 * count_params(student)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, t = forward_with_version_check(teacher, x)
        _, s = forward_with_version_check(student, x)
    for stage, size, t_width, s_width in [("layer1", 32, 16, 8), ("layer2", 16, 32, 16), ("layer3", 8, 64, 32)]:
        assert t[stage].shape == (2, t_width, size, size)
        assert s[stage].shape == (2, s_width, size, size)


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError) as info:
        create_model("resnet57", 10)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "'resnet57'" in message and "'resnet56'" in message
    assert "featdistill models" in message
    assert "\n" not in message
    assert "resnet56" in info.value.suggestions

    with pytest.raises(UnknownModelError) as info:
        create_model("wrn40_2", 10)
    assert info.value.suggestions[0] == "wrn_40_2"


def test_unknown_name_without_close_match():
    with pytest.raises(UnknownModelError) as info:
        create_model("qqqqqq", 10)
    assert info.value.suggestions == []
    assert "did you mean" not in str(info.value)
    assert "featdistill models" in str(info.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet8", bad)


def test_register_model_adds_a_model_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model("tiny_linear_test", family="test")
    def tiny_linear_test(num_classes):
        """A linear layer on flattened pixels."""
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

    assert create_model("tiny_linear_test", 4)(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    info = {i.name: i for i in list_models()}["tiny_linear_test"]
    assert info == ModelInfo("tiny_linear_test", "test", "A linear layer on flattened pixels.")

    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet8", family="test")(tiny_linear_test)
    with pytest.raises(ValueError, match="invalid model name"):
        register_model("pkg:thing", family="test")


# --- a user's own factory -------------------------------------------------------------------

USER_MODULE = textwrap.dedent(
    """
    from torch import nn

    def small_net(num_classes):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    class Zoo:
        @staticmethod
        def linear(num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

    def returns_int(num_classes):
        return 42

    def no_num_classes():
        return nn.Linear(1, 1)

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "fd_user_nets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_MODULE)
    (package / "broken.py").write_text("import fd_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fd_user_nets"
    for name in [n for n in sys.modules if n == "fd_user_nets" or n.startswith("fd_user_nets.")]:
        del sys.modules[name]


def test_user_factory_builds_the_model(user_package):
    model = create_model(f"{user_package}.nets:small_net", 5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert create_model(f"{user_package}.nets:Zoo.linear", 3)(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("fd_user_nets.missing:small_net", r"cannot import module 'fd_user_nets\.missing'.*no module named 'fd_user_nets\.missing'"),
        ("fd_no_such_pkg_xyz.nets:f", r"cannot import module 'fd_no_such_pkg_xyz\.nets'.*no module named 'fd_no_such_pkg_xyz'"),
        ("fd_user_nets.broken:f", r"importing module 'fd_user_nets\.broken'.*No module named 'fd_no_such_dependency'"),
        ("fd_user_nets.nets:smal_net", r"'fd_user_nets\.nets' has no attribute 'smal_net'.*did you mean 'small_net'"),
        ("fd_user_nets.nets:returns_int", r"returned int, expected a torch\.nn\.Module"),
        ("fd_user_nets.nets:no_num_classes", r"no_num_classes\(num_classes=5\) failed: .*num_classes"),
        ("fd_user_nets.nets:NOT_CALLABLE", r"is a int, not a function"),
        ("fd_user_nets.nets:", r"invalid model spec"),
        (":small_net", r"invalid model spec"),
    ],
)
def test_user_factory_errors_are_one_line(user_package, spec, expected):
    with pytest.raises(ModelFactoryError) as info:
        create_model(spec, 5)
    assert isinstance(info.value, ValueError)
    assert re.search(expected, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


# --- torchvision and timm (optional) ----------------------------------------------------------

@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_optional_package_missing_gives_clear_error(package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ModelFactoryError) as info:
        create_model(f"{package}:resnet18", 10)
    message = str(info.value)
    assert f"'{package}:resnet18'" in message
    assert f"needs {package}" in message and "optional" in message and "not installed" in message
    assert "\n" not in message


def test_timm_spec_calls_timm_without_pretrained_weights(monkeypatch):
    calls = []
    fake_timm = types.ModuleType("timm")
    fake_timm.is_model = lambda name: name == "tiny_vit"
    fake_timm.list_models = lambda: ["tiny_vit", "resnet18"]

    def fake_create_model(name, pretrained, num_classes):
        calls.append((name, pretrained, num_classes))
        return nn.Linear(2, num_classes)

    fake_timm.create_model = fake_create_model
    monkeypatch.setitem(sys.modules, "timm", fake_timm)

    model = create_model("timm:tiny_vit", 7)
    assert isinstance(model, nn.Linear) and model.out_features == 7
    assert calls == [("tiny_vit", False, 7)]
    with pytest.raises(ModelFactoryError, match=r"timm has no model 'tiny_vt'; did you mean 'tiny_vit'"):
        create_model("timm:tiny_vt", 7)


def test_torchvision_spec_calls_get_model_without_weights(monkeypatch):
    calls = []
    fake_torchvision = types.ModuleType("torchvision")
    fake_models = types.ModuleType("torchvision.models")
    fake_models.list_models = lambda: ["resnet18", "mobilenet_v3_small"]

    def fake_get_model(name, weights, num_classes):
        calls.append((name, weights, num_classes))
        return nn.Linear(2, num_classes)

    fake_models.get_model = fake_get_model
    fake_torchvision.models = fake_models
    monkeypatch.setitem(sys.modules, "torchvision", fake_torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.models", fake_models)

    assert create_model("torchvision:resnet18", 3).out_features == 3
    assert calls == [("resnet18", None, 3)]
    with pytest.raises(ModelFactoryError, match=r"torchvision has no model 'resnet19'; did you mean 'resnet18'"):
        create_model("torchvision:resnet19", 3)


def test_importing_models_pulls_in_no_qt_torchvision_or_timm():
    code = (
        "import sys, featdistill_core.models as m; m.list_models(); m.create_model('resnet8', 10);"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('PySide6', 'pyqtgraph', 'torchvision', 'timm')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    repo_root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=repo_root, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_version_check_catches_in_place_changes():
    """The helper above really sees an in-place op on a captured output (so its passing means something)."""

    class InPlaceNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.layer1(x)).mean((2, 3))

    with torch.no_grad(), pytest.raises(AssertionError, match="layer1"):
        forward_with_version_check(InPlaceNet(), torch.randn(1, 3, 8, 8))
