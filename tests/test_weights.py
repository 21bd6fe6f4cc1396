"""Loading and saving weights: formats, checkpoint wrappers, mismatch messages, refusing pickled code."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from featdistill_core.models import WeightsError, create_model, load_weights, read_state_dict, save_weights

# Set by _Payload.__reduce__'s callable if unpickling ever ran code.
EXECUTED: list[str] = []


def _record(value: str) -> str:
    EXECUTED.append(value)
    return value


class _Payload:
    """An object whose unpickling would call _record: a stand-in for a malicious checkpoint."""

    def __reduce__(self):
        return (_record, ("payload ran",))


def trained_like(name: str, num_classes: int, seed: int) -> nn.Module:
    """A model whose parameters and BN running statistics differ from a fresh one's."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # updates running_mean / running_var / num_batches_tracked
    return model.eval()


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_safetensors_round_trip(tmp_path):
    source = trained_like("resnet8", 10, seed=1)
    target = trained_like("resnet8", 10, seed=2)
    assert not torch.equal(source.conv1.weight, target.conv1.weight)

    written = save_weights(source, tmp_path / "student.safetensors")
    report = load_weights(target, written)

    assert_same_state(source, target)
    assert set(report.loaded) == set(source.state_dict())
    assert report.missing == report.unexpected == report.mismatched == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model_checkpoint"])
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_file_round_trip(tmp_path, wrap, suffix):
    source = trained_like("resnet8", 10, seed=3)
    target = trained_like("resnet8", 10, seed=4)
    state = source.state_dict()
    content = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 7},
        # RepDistiller / CRD checkpoints: {"epoch", "model", "best_acc", "optimizer"}.
        "model_checkpoint": {"epoch": 240, "model": state, "best_acc": torch.tensor(76.3),
                             "optimizer": torch.optim.SGD(source.parameters(), lr=0.05).state_dict()},
    }[wrap]
    path = tmp_path / f"teacher{suffix}"
    torch.save(content, path)
    load_weights(target, path)
    assert_same_state(source, target)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_wrapper_prefix_is_stripped(tmp_path, prefix):
    source = trained_like("resnet8", 10, seed=5)
    target = trained_like("resnet8", 10, seed=6)
    torch.save({prefix + key: value for key, value in source.state_dict().items()}, tmp_path / "dp.pth")
    load_weights(target, tmp_path / "dp.pth")
    assert_same_state(source, target)


def test_prefix_kept_when_the_model_itself_uses_it(tmp_path):
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = nn.Linear(2, 2)

    source, target = Holder(), Holder()
    save_weights(source, tmp_path / "holder.safetensors")
    load_weights(target, tmp_path / "holder.safetensors")
    assert_same_state(source, target)


def test_mismatch_message_is_one_line_naming_the_keys_when_few_and_details_list_them(tmp_path):
    state = dict(create_model("resnet8", 100).state_dict())
    del state["layer1.0.bn1.running_mean"]
    state["projector.weight"] = torch.zeros(3)
    path = tmp_path / "teacher.safetensors"
    save_weights(state, path)

    with pytest.raises(WeightsError) as info:
        load_weights(create_model("resnet8", 10), path, name="resnet8")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    assert message.startswith(f"weights file {path} does not fit resnet8: ")
    assert "is for a different network" not in message
    # fc.weight and fc.bias (wrongly shaped) and projector.weight (unexpected); one key missing
    assert message.endswith("3 of its 56 tensors do not fit resnet8; 1 of the 56 tensors of resnet8 is not in it")
    details = info.value.details
    assert "missing keys (1), in the model but not in the file:\n  layer1.0.bn1.running_mean" in details
    assert "unexpected keys (1), in the file but not in the model:\n  projector.weight" in details
    assert "fc.weight: file [100, 64] vs model [10, 64]" in details
    assert "fc.bias: file [100] vs model [10]" in details
    positions = [details.index(s) for s in ("missing keys", "unexpected keys", "wrongly shaped keys")]
    assert positions == sorted(positions)


def test_one_wrong_key_is_named_in_the_line_itself(tmp_path):
    state = dict(create_model("resnet8", 10).state_dict())
    del state["fc.bias"]
    path = tmp_path / "almost.safetensors"
    save_weights(state, path)
    with pytest.raises(WeightsError) as info:
        load_weights(create_model("resnet8", 10), path, name="resnet8")
    assert str(info.value) == f"weights file {path} does not fit resnet8: the file lacks fc.bias"


def test_weights_of_another_network_say_so_in_one_line_with_every_key_in_the_details(tmp_path):
    path = tmp_path / "other.safetensors"
    save_weights(create_model("resnet8", 10), path)
    target = create_model("wrn_16_1", 10)
    with pytest.raises(WeightsError) as info:
        load_weights(target, path, name="wrn_16_1")
    message = str(info.value)
    assert "\n" not in message
    file_keys = len(create_model("resnet8", 10).state_dict())
    assert f"is for a different network: " in message and f"of its {file_keys} tensors do not fit wrn_16_1" in message
    details = info.value.details
    for key in target.state_dict():          # every key, none cut off
        if key not in create_model("resnet8", 10).state_dict():
            assert f"  {key}\n" in details + "\n"


def test_long_key_lists_stay_out_of_the_message(tmp_path):
    path = tmp_path / "small.safetensors"
    save_weights(create_model("resnet8", 10), path)
    with pytest.raises(WeightsError) as info:
        load_weights(create_model("resnet14", 10), path)
    expected_missing = len(create_model("resnet14", 10).state_dict()) - len(create_model("resnet8", 10).state_dict())
    message = str(info.value)
    assert f"{expected_missing} of the " in message and "tensors of ResNet are not in it" in message
    assert "layer1.1.conv1.weight" not in message
    assert f"missing keys ({expected_missing})" in info.value.details
    assert "  layer1.1.conv1.weight" in info.value.details


def test_non_strict_loads_what_fits_and_reports_the_rest(tmp_path):
    source = trained_like("resnet8", 100, seed=7)
    target = trained_like("resnet8", 10, seed=8)
    fc_before = target.fc.weight.clone()
    path = tmp_path / "teacher.safetensors"
    save_weights(source, path)

    report = load_weights(target, path, strict=False)

    assert sorted(report.mismatched) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(target.layer3[0].conv2.weight, source.layer3[0].conv2.weight)
    assert torch.equal(target.fc.weight, fc_before)


def test_pickled_custom_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload()}, path)
    EXECUTED.clear()

    with pytest.raises(WeightsError) as info:
        load_weights(create_model("resnet8", 10), path)

    assert EXECUTED == []
    message = str(info.value)
    assert "refusing to load" in message and str(path) in message and "_record" in message
    assert "\n" not in message


def test_whole_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(create_model("resnet8", 10), path)
    with pytest.raises(WeightsError, match=r"refusing to load .*ResNet"):
        load_weights(create_model("resnet8", 10), path)


@pytest.mark.parametrize(
    "filename, content, expected",
    [
        ("missing.pt", None, r"weights file not found: .*missing\.pt"),
        ("weights.bin", b"\x00" * 16, r"unsupported weights file type '\.bin' .*expected \.safetensors, \.pt, \.pth"),
        ("empty.pt", b"", r"weights file is empty: .*empty\.pt"),
        ("garbage.pt", b"this is not a checkpoint at all", r"cannot read PyTorch file .*garbage\.pt: corrupt"),
        ("garbage.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ",
         r"cannot read safetensors file .*garbage\.safetensors"),
    ],
)
def test_unreadable_files_give_one_line_errors(tmp_path, filename, content, expected):
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_weights(create_model("resnet8", 10), path)
    assert re.search(expected, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_torch_file_is_reported(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(create_model("resnet8", 10).state_dict(), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"cannot read PyTorch file .*cut\.pt: corrupt"):
        read_state_dict(cut)


def test_folder_and_non_state_dict_contents_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="is a folder"):
        read_state_dict(tmp_path)
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match=r"holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pt")
    torch.save({"epoch": 3, "weights": torch.zeros(1)}, tmp_path / "mixed.pt")
    with pytest.raises(WeightsError, match=r"not a state dict.*'epoch'.*'state_dict' or 'model'"):
        read_state_dict(tmp_path / "mixed.pt")


def test_save_handles_shared_tensors(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(4, 4, bias=False)
            self.decoder = nn.Linear(4, 4, bias=False)
            self.decoder.weight = self.encoder.weight  # two names, one tensor

    model = Tied()
    path = save_weights(model, tmp_path / "tied.safetensors")
    loaded = load_file(str(path))
    assert torch.equal(loaded["encoder.weight"], model.encoder.weight)
    assert torch.equal(loaded["decoder.weight"], model.encoder.weight)

    view_state = {"whole": torch.arange(6.0), "part": torch.arange(6.0)[::2]}  # a strided view
    save_weights(view_state, tmp_path / "views.safetensors")
    assert torch.equal(load_file(str(tmp_path / "views.safetensors"))["part"], torch.tensor([0.0, 2.0, 4.0]))


def test_save_refuses_bad_targets(tmp_path):
    model = create_model("resnet8", 10)
    with pytest.raises(WeightsError, match=r"ending in \.safetensors, not 'w\.pt'"):
        save_weights(model, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=r"folder .* does not exist"):
        save_weights(model, tmp_path / "nope" / "w.safetensors")
    with pytest.raises(WeightsError, match=r"cannot save 'epoch': it is a int"):
        save_weights({"w": torch.zeros(1), "epoch": 3}, tmp_path / "w.safetensors")
    assert not list(tmp_path.iterdir())


def test_save_writes_metadata(tmp_path):
    from safetensors import safe_open

    path = save_weights(create_model("resnet8", 10), tmp_path / "m.safetensors", metadata={"model": "resnet8"})
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"model": "resnet8"}
