import pytest
import torch
from torch import nn

from featdistill_core.layers import (
    FeatureHooks, LayerPathError, format_layer_table, get_module, list_layers, suggest_pairs,
)


class Net(nn.Module):
    def __init__(self, widths=(4, 8, 16)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(widths[0], widths[1], 3, stride=2, padding=1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(widths[1], widths[2], 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def test_list_layers_gives_every_module_with_its_shape():
    layers = {info.path: info for info in list_layers(Net(), (3, 32, 32))}
    assert layers["layer1"].shape == (4, 32, 32)
    assert layers["layer2.0"].shape == (8, 16, 16)
    assert layers["layer3"].shape == (16, 8, 8)
    assert layers["fc"].shape == (10,)
    assert layers["layer2.0"].type_name == "Conv2d"
    assert layers["layer2.0"].depth == 2
    assert layers[""].num_params == sum(p.numel() for p in Net().parameters())


def test_list_layers_other_input_size_and_keeps_training_mode():
    net = Net().train()
    layers = {info.path: info for info in list_layers(net, (3, 64, 48))}
    assert layers["layer3"].shape == (16, 16, 12)
    assert net.training


def test_hooks_capture_outputs_and_are_removed():
    net = Net()
    x = torch.randn(2, 3, 32, 32)
    with FeatureHooks(net, ["layer2", "layer3.1"]) as hooks:
        net(x)
        expected = net.layer2(net.layer1(net.conv1(x)))
        assert torch.allclose(hooks.features["layer2"], expected)
        assert hooks.features["layer3.1"].shape == (2, 16, 8, 8)
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_unknown_path_suggests_closest():
    with pytest.raises(LayerPathError) as info:
        get_module(Net(), "layer4", "mynet")
    message = str(info.value)
    assert "no layer 'layer4' in mynet" in message
    assert "layer1" in message
    with pytest.raises(LayerPathError, match="layer2.0"):
        FeatureHooks(Net(), ["layer2.O"])


def test_suggest_pairs_matches_stages_by_spatial_size():
    teacher = list_layers(Net((16, 32, 64)))
    student = list_layers(Net())
    assert suggest_pairs(teacher, student) == [("layer1", "layer1"), ("layer2", "layer2"), ("layer3", "layer3")]


def test_layer_table_lists_paths_and_shapes():
    table = format_layer_table(list_layers(Net()))
    assert "layer2.0" in table and "8×16×16" in table and "Conv2d" in table
