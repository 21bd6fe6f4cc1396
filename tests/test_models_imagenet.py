"""The ImageNet networks of the distillation tables: parameter counts, stages, and the two standard
pairs validated on a tiny generated image folder at 224×224."""

from __future__ import annotations

import pytest
import torch

from featdistill_core import cli
from featdistill_core.config import DataConfig, PairConfig, RunConfig, StudentConfig, TeacherConfig, checked, save_config
from featdistill_core.models import create_model, list_models

from tests.test_data_stream import make_jpeg_tree
from tests.test_models import forward_with_version_check

# torchvision's counts for its ImageNet models (1000 classes), which the tables quote as 11.7M, 21.8M,
# 25.6M; MobileNet-V1 as in the paper (4.2M) and mdistiller's model (4,231,976).
PUBLISHED_1000 = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenetv1": 4_231_976,
}
# channels and side of each stage's output on a 224x224 input
STAGES_224 = {
    "resnet18": [(64, 56), (128, 28), (256, 14), (512, 7)],
    "resnet34": [(64, 56), (128, 28), (256, 14), (512, 7)],
    "resnet50": [(256, 56), (512, 28), (1024, 14), (2048, 7)],
    "mobilenetv1": [(128, 56), (256, 28), (512, 14), (1024, 7)],
}


@pytest.mark.parametrize("name, published", PUBLISHED_1000.items())
def test_parameter_counts_match_the_published_networks(name, published):
    model = create_model(name, 1000)
    assert sum(p.numel() for p in model.parameters()) == published


def test_registry_lists_them_with_their_families():
    families = {m.name: m.family for m in list_models()}
    assert families["resnet18"] == families["resnet34"] == families["resnet50"] == "resnet-imagenet"
    assert families["mobilenetv1"] == "mobilenet"


@pytest.mark.parametrize("name", list(STAGES_224))
def test_stage_outputs_at_224_and_smaller_inputs(name):
    model = create_model(name, 5).eval()
    shapes = {}
    hooks = [model.get_submodule(s).register_forward_hook(lambda m, i, o, s=s: shapes.__setitem__(s, o.shape))
             for s in model.stage_names]
    with torch.no_grad():
        logits, _ = forward_with_version_check(model, torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 5)
    assert [(shapes[s][1], shapes[s][2]) for s in model.stage_names] == STAGES_224[name]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)       # adaptive pooling: any side >= 32
    for hook in hooks:
        hook.remove()


def test_gradients_reach_every_parameter():
    model = create_model("mobilenetv1", 3)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def _imagenet_run(tmp_path, teacher, student, pairs):
    tree = make_jpeg_tree(tmp_path / "tree", train=2, test=1)
    config = RunConfig(
        name="imagenet", device="cpu", epochs=1, batch_size=2, output_dir=str(tmp_path / "runs"),
        teacher=TeacherConfig(arch=teacher, train_epochs=1), student=StudentConfig(arch=student),
        data=DataConfig(name="imagefolder", path=str(tree), image_size=224),
        pairs=[PairConfig(method, [t], [s]) for method, t, s in pairs],
    )
    return save_config(checked(config), tmp_path / "run.toml")


@pytest.mark.parametrize("teacher, student, pairs", [
    ("resnet34", "resnet18", [("at", "layer3", "layer3"), ("hint", "layer4", "layer4")]),
    ("resnet50", "mobilenetv1", [("at", "layer2", "layer2"), ("hint", "layer4", "layer4"),
                                 ("ofd", "layer3.5.preact", "layer3.5.preact")]),
])
def test_the_imagenet_pairs_validate_at_224(capsys, tmp_path, teacher, student, pairs):
    path = _imagenet_run(tmp_path, teacher, student, pairs)
    code = cli.main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"ok ({len(pairs)} distillation terms, 3 classes" in out and "held in memory" in out
    assert "hint:layer4<-layer4: adapter" in out


def test_layers_lists_the_imagenet_stages(capsys):
    assert cli.main(["layers", "mobilenetv1", "--input", "3x224x224", "--num-classes", "1000"]) == 0
    out = capsys.readouterr().out
    assert "layer4" in out and "1024×7×7" in out and "layer3.5.conv_pw" in out
    assert cli.main(["layers", "resnet50", "--input", "3x224x224"]) == 0
    out = capsys.readouterr().out
    assert "layer1.0.downsample.0" in out and "2048×7×7" in out
