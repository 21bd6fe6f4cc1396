"""The CKA map of two networks (layer choice, hooks, progress, cancel, files) and the pair alignment."""

import itertools
import json
import math
import tomllib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from featdistill_core.analysis import (
    AnalysisCancelled, CKALayer, CKAResult, align_layers, best_alignment, choose_layers, cka_map, linear_cka,
    pairs_as_toml, render_cka, render_heatmap, suggest_pairs_by_cka,
)
from featdistill_core.config import config_from_dict
from featdistill_core.data import load_dataset
from featdistill_core.models import create_model


@pytest.fixture(scope="module")
def probe():
    data = load_dataset("demo", demo_train=32, demo_test=96, seed=0)
    images, _, _ = data.probe_images(96, seed=0)
    return images


def _nets(seed=0):
    torch.manual_seed(seed)
    return create_model("demo_teacher", 10), create_model("demo_student", 10)


def test_blocks_are_stages_and_blocks_in_depth_order_with_aliases():
    model = create_model("resnet20", 10).eval()
    layers = choose_layers(model, torch.randn(2, 3, 32, 32))
    paths = [layer.path for layer in layers]
    assert paths[0] == "conv1" and paths[-1] == "layer3"
    assert paths.index("layer1.0") < paths.index("layer1") < paths.index("layer2.0")
    stage = layers[paths.index("layer2")]
    assert stage.aliases == ("layer2.2",) and stage.shape == (32, 16, 16)   # a Sequential = its last block
    assert "layer2.2" not in paths and not any("bn" in p or "relu" in p or p == "fc" for p in paths)


def test_stages_all_and_explicit_lists():
    model = create_model("demo_teacher", 10).eval()
    x = torch.randn(2, 3, 32, 32)
    assert [l.path for l in choose_layers(model, x, "stages")] == ["layer1", "layer2", "layer3"]
    every = [l.path for l in choose_layers(model, x, "all")]
    assert "layer2.0.bn1" in every and "fc" in every and "layer1.0" not in every      # layer1.0 is layer1
    assert [l.path for l in choose_layers(model, x, ["fc", "layer2"])] == ["layer2", "fc"]   # depth order
    with pytest.raises(ValueError, match="closest"):
        choose_layers(model, x, ["layer9"])
    with pytest.raises(ValueError, match="must be one of"):
        choose_layers(model, x, "everything")


def test_in_place_activation_is_not_taken_for_an_alias():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.act = nn.ReLU(inplace=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.act(self.bn(self.conv(x)))
            return self.fc(x.mean((2, 3)))

    paths = [l.path for l in choose_layers(Net().eval(), torch.randn(2, 3, 8, 8), "all")]
    assert "bn" in paths and "act" in paths


def test_a_network_against_itself_has_ones_on_the_diagonal(probe):
    teacher, _ = _nets()
    result = cka_map(teacher, teacher, probe, batch_size=32)
    assert result.matrix.shape == (len(result.teacher_layers),) * 2
    assert np.allclose(np.diag(result.matrix), 1.0, atol=1e-9)
    assert np.allclose(result.matrix, result.matrix.T, atol=1e-9)


def test_map_cells_equal_cka_of_the_captured_features(probe):
    teacher, student = _nets(1)
    result = cka_map(teacher, student, probe, batch_size=32, teacher_layers=["layer2"], student_layers=["layer3", "fc"])
    grabbed = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, key=key: grabbed.__setitem__(key, o))
             for key, m in (("t", teacher.layer2), ("s", student.layer3), ("f", student.fc))]
    with torch.no_grad():
        teacher.eval()(probe)
        student.eval()(probe)
    for h in hooks:
        h.remove()
    assert result.value("layer2", "layer3") == pytest.approx(linear_cka(grabbed["t"], grabbed["s"], 32), abs=1e-9)
    assert result.value("layer2", "fc") == pytest.approx(linear_cka(grabbed["t"], grabbed["f"], 32), abs=1e-9)


def test_progress_cancel_and_modes_restored(probe):
    teacher, student = _nets()
    teacher.train()
    seen = []
    cka_map(teacher, student, probe, batch_size=32, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(32, 96), (64, 96), (96, 96)]
    assert teacher.training and student.training
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(AnalysisCancelled):
        cka_map(teacher, student, probe, batch_size=32, cancel=cancel)
    assert len(calls) == 2
    assert not teacher._forward_hooks and not teacher.layer1._forward_hooks      # hooks removed on cancel


def test_too_few_images_are_refused(probe):
    teacher, student = _nets()
    with pytest.raises(ValueError, match="at least 4"):
        cka_map(teacher, student, probe[:3])


def test_result_round_trips_and_writes_csv_and_png(probe, tmp_path):
    teacher, student = _nets()
    result = cka_map(teacher, student, probe, batch_size=48, teacher_name="demo_teacher", student_name="demo_student")
    again = CKAResult.load_json(result.save_json(tmp_path / "cka.json"))
    assert again.teacher_layers == result.teacher_layers and np.array_equal(again.matrix, result.matrix)
    rows = result.write_csv(tmp_path / "cka.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == list(result.student_paths)
    assert float(rows[1].split(",")[1]) == pytest.approx(result.matrix[0, 0], abs=1e-6)
    png = render_cka(result, tmp_path / "cka.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
    assert "demo_student" in result.format_table()
    with pytest.raises(ValueError, match="not a CKA map"):
        CKAResult.from_dict({"teacher_layers": []})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read"):
        CKAResult.load_json(tmp_path / "bad.json")


def test_heatmap_draws_nan_grey_and_refuses_wrong_labels(tmp_path):
    path = render_heatmap(np.array([[0.0, np.nan], [1.0, 0.5]]), ["a", "b"], ["c", "d"], tmp_path / "h.png",
                          vmin=0, vmax=1, cell=40, annotate=False)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels == (200, 200, 200)).all(axis=2).sum() > 30 * 30          # the NaN cell
    with pytest.raises(ValueError, match="2×3"):
        render_heatmap(np.zeros((2, 2)), ["a", "b"], ["c", "d", "e"], tmp_path / "x.png")


# ---- alignment -------------------------------------------------------------------------------


def _brute_force(matrix, k, allowed):
    rows, cols = matrix.shape
    best, best_pairs = -math.inf, []
    for count in range(min(k, rows, cols), 0, -1):
        for ti in itertools.combinations(range(rows), count):
            for sj in itertools.combinations(range(cols), count):
                if all(allowed[i, j] for i, j in zip(ti, sj)):
                    total = sum(matrix[i, j] for i, j in zip(ti, sj))
                    if total > best + 1e-12:
                        best, best_pairs = total, list(zip(ti, sj))
        if best_pairs:
            return best, best_pairs
    return 0.0, []


@pytest.mark.parametrize("seed", range(6))
def test_alignment_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-0.1, 1.0, size=(rng.integers(2, 6), rng.integers(2, 6)))
    allowed = rng.uniform(size=matrix.shape) > 0.3
    for k in (1, 2, 3, 4):
        pairs = best_alignment(matrix, k, allowed)
        best, expected = _brute_force(matrix, k, allowed)
        assert len(pairs) == len(expected)
        assert sum(matrix[i, j] for i, j in pairs) == pytest.approx(best)
        assert all(allowed[i, j] for i, j in pairs)
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(pairs, pairs[1:]))


def test_alignment_keeps_depth_order_even_against_a_greedy_choice():
    matrix = np.array([[0.1, 0.9],
                       [0.8, 0.2]])
    assert best_alignment(matrix, 2) == [(0, 0), (1, 1)]       # the crossing pair (0,1),(1,0) is not allowed
    assert best_alignment(matrix, 1) == [(0, 1)]
    assert best_alignment(np.array([[np.nan, 0.5]]), 3) == [(0, 1)]
    with pytest.raises(ValueError, match="positive"):
        best_alignment(matrix, 0)


def _result(matrix, t_shapes, s_shapes):
    return CKAResult(tuple(CKALayer(f"t{i}", s) for i, s in enumerate(t_shapes)),
                     tuple(CKALayer(f"s{j}", s) for j, s in enumerate(s_shapes)),
                     np.asarray(matrix, dtype=np.float64), 64, 64)


def test_alignment_only_offers_pairs_the_method_accepts():
    # the best cell pairs a map with a flat vector: attention transfer refuses it, FitNets' hint accepts it
    result = _result([[0.2, 0.95], [0.3, 0.1]], [(8, 16, 16), (16, 8, 8)], [(8, 16, 16), (10,)])
    at = align_layers(result, 1, method="at")
    assert [(p.teacher, p.student) for p in at] == [("t1", "s0")] and at[0].adapter
    hint = align_layers(result, 1, method="hint", options={"regressor": "conv_bn_relu"})
    assert (hint[0].teacher, hint[0].student) in {("t0", "s1"), ("t1", "s0")}
    assert suggest_pairs_by_cka(result, "at", 2) == [(["t1"], ["s0"])]
    for method, words in (("kd", "logits"), ("fsp", "2 layers")):
        with pytest.raises(ValueError, match=words):
            align_layers(result, 1, method=method)
    with pytest.raises(ValueError, match="unknown distillation method"):
        align_layers(result, 1, method="nope")


def test_suggested_pairs_are_valid_run_file_lines(probe):
    teacher, student = _nets()
    result = cka_map(teacher, student, probe, batch_size=48)
    pairs = align_layers(result, 3, method="at", options={"p": 2.0, "normalize": "l2"})
    assert len(pairs) == 3
    text = pairs_as_toml(pairs, "at", options={"p": 2.0, "normalize": "l2"})
    parsed = tomllib.loads(text)
    assert [p["teacher"] for p in parsed["pairs"]] == [[p.teacher] for p in pairs]
    config = config_from_dict({"teacher": {"train_epochs": 1}, "pairs": parsed["pairs"]})
    assert config.pairs[0].weight == 1000.0 and config.pairs[0].options == {"p": 2.0, "normalize": "l2"}
    assert json.dumps(result.to_dict())                      # plain JSON for the window


def test_cka_map_of_a_run_uses_its_networks_data_and_device(tmp_path):
    from featdistill_core.analysis import cka_map_of_run, default_pair_count
    from featdistill_core.validate import validate_run

    from tests._tiny import tiny_config

    run = validate_run(tiny_config(tmp_path))
    seen = []
    result = cka_map_of_run(run, probe=1000, layers="stages", progress=lambda d, t: seen.append(t))
    assert result.probe_size == 64 and seen[-1] == 64                  # capped at the 64 test images
    assert result.teacher_name == "demo_teacher" and result.student_paths == ("layer1", "layer2", "layer3")
    assert default_pair_count(run.teacher_layers.values(), run.student_layers.values()) == 3
    from featdistill_core.config import TeacherConfig

    no_teacher = validate_run(tiny_config(tmp_path, pairs=[], teacher=TeacherConfig("demo_teacher")))   # built here
    assert no_teacher.teacher is None
    assert cka_map_of_run(no_teacher, probe=16, layers="stages").matrix.shape == (3, 3)
