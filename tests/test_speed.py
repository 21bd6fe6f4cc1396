"""The speed helpers the trainer will call on a GPU, checked on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core import speed
from featdistill_core.config import ConfigError, RunConfig, checked
from featdistill_core.models import create_model
from featdistill_core.speed import (
    amp_plan, as_autograd_tensor, freeze, frozen_forward, maybe_compile, original_module, pin, to_channels_last,
    to_device,
)


def test_amp_plan_off_by_default_and_bf16_on_the_cpu():
    off = amp_plan("cpu", False)
    assert not off.enabled and off.dtype is None and not off.scaler and not off.grad_scaler().is_enabled()
    with off.autocast():
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    cpu = amp_plan("cpu", True)
    assert cpu.dtype == torch.bfloat16 and not cpu.scaler
    with cpu.autocast():
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16


def test_amp_plan_float16_needs_a_scaler_and_auto_falls_back_to_it(monkeypatch):
    forced = amp_plan("cpu", True, "float16")
    assert forced.dtype == torch.float16 and forced.scaler
    monkeypatch.setattr(speed, "bf16_supported", lambda device: False)     # e.g. a V100 or T4
    old_gpu = amp_plan("cuda", True)
    assert old_gpu.dtype == torch.float16 and old_gpu.scaler and old_gpu.device_type == "cuda"
    monkeypatch.setattr(speed, "bf16_supported", lambda device: True)      # A100, H100 ...
    new_gpu = amp_plan("cuda", True)
    assert new_gpu.dtype == torch.bfloat16 and not new_gpu.scaler
    assert amp_plan("cuda", True, "float16").scaler
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        amp_plan("cpu", True, "fp8")


def test_channels_last_converts_modules_and_batches_without_changing_results():
    torch.manual_seed(0)
    model = create_model("resnet8", 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        converted = to_channels_last(model)
        assert converted is model
        assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        y = to_channels_last(x)
        assert y.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(model(y), expected, atol=1e-5)
    vector = torch.randn(3)
    assert to_channels_last(vector) is vector


def test_copies_to_the_cpu_stay_plain():
    x = torch.randn(3)
    assert to_device(x, "cpu") is x
    assert pin(x, "cpu") is x and not x.is_pinned()


def test_frozen_teacher_under_inference_mode_needs_a_copy_before_autograd_saves_it():
    torch.manual_seed(0)
    teacher = freeze(nn.Linear(4, 5))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = nn.Linear(4, 5)
    x = torch.randn(3, 4)
    target = frozen_forward(teacher, x)
    assert target.is_inference() and not target.requires_grad

    def kd(t):      # a feature-matching loss: mse_loss saves its target for the backward pass
        return F.mse_loss(student(x), t)

    with pytest.raises(RuntimeError, match="[Ii]nference tensors"):
        kd(target).backward()
    student.zero_grad()
    loss = kd(as_autograd_tensor(target))
    loss.backward()
    grad = student.weight.grad.clone()
    student.zero_grad()
    with torch.no_grad():
        reference_target = teacher(x)
    kd(reference_target).backward()
    assert torch.allclose(grad, student.weight.grad)
    nested = as_autograd_tensor({"a": (target, [target]), "b": 3})
    assert not nested["a"][0].is_inference() and not nested["a"][1][0].is_inference() and nested["b"] == 3


def test_compile_off_is_the_model_and_on_keeps_results_and_hooks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    assert maybe_compile(model, "off") is model and original_module(model) is model
    with pytest.raises(ValueError, match="compile must be one of"):
        maybe_compile(model, "fast")
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    compiled = maybe_compile(model, "default", backend="eager")     # no C++ compiler needed on CI
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-6)
    assert len(seen) == 2
    assert original_module(compiled) is model
    assert set(compiled.state_dict()) == {f"_orig_mod.{k}" for k in model.state_dict()}


def test_run_file_speed_options_default_to_no_change_and_are_checked():
    config = RunConfig()
    assert (config.mixed_precision, config.amp_dtype, config.channels_last, config.compile) == (False, "auto", False, "off")
    config.amp_dtype, config.compile = "fp8", "turbo"
    with pytest.raises(ConfigError) as error:
        checked(config)
    assert {p.field for p in error.value.problems} >= {"amp_dtype", "compile"}
