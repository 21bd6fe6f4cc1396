"""evaluate_model: top-1, top-5, per-class accuracy and the confusion matrix, against a hand count."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from featdistill_core.analysis import AnalysisCancelled, evaluate_model, per_class_accuracy, render_confusion
from featdistill_core.data import DataBundle


def _bundle(labels, classes=6):
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    labels = torch.tensor(labels, dtype=torch.int64)
    return DataBundle(images, labels, images, labels, classes, [f"c{i}" for i in range(classes)],
                      (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "fake")


class Lookup(nn.Module):
    """Gives fixed logits per image, read off the image's first pixel (its index / 255)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(logits, dtype=torch.float32))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        index = torch.round(x[:, 0, 0, 0] * 255).long()
        return self.table[index] * self.scale


def test_counts_match_a_hand_count():
    rng = np.random.default_rng(0)
    labels = list(rng.integers(0, 6, size=23))
    logits = rng.normal(size=(23, 6))
    result = evaluate_model(Lookup(logits), _bundle(labels), batch_size=5)
    predicted = logits.argmax(1)
    confusion = np.zeros((6, 6), dtype=np.int64)
    for t, p in zip(labels, predicted):
        confusion[t, p] += 1
    top5 = np.mean([t in np.argsort(-row)[:5] for t, row in zip(labels, logits)]) * 100
    assert np.array_equal(result.confusion, confusion)
    assert result.top1 == pytest.approx(100 * np.mean(predicted == np.array(labels)))
    assert result.top5 == pytest.approx(top5) and result.topk == 5 and result.count == 23
    for c in range(6):
        members = [i for i, t in enumerate(labels) if t == c]
        expected = 100 * np.mean([predicted[i] == c for i in members]) if members else math.nan
        got = result.per_class[c]
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_fewer_than_five_classes_and_a_class_without_images(tmp_path):
    labels = [0, 0, 1, 1]
    logits = [[2, 1, 0], [0, 2, 1], [0, 2, 1], [2, 0, 1]]
    data = _bundle(labels, classes=3)
    result = evaluate_model(Lookup(logits), data)
    assert result.topk == 3 and result.top5 == 100.0 and result.top1 == 50.0
    accs = per_class_accuracy(Lookup(logits), data)
    assert accs["c0"] == 50.0 and accs["c1"] == 50.0 and math.isnan(accs["c2"])
    rows = result.write_confusion_csv(tmp_path / "c.csv").read_text().splitlines()
    assert rows[0].startswith("true \\ predicted,c0,c1,c2") and rows[3].endswith("nan")
    assert render_confusion(result, tmp_path / "c.png").stat().st_size > 0
    assert "top-1 50.00%" in result.format_summary()


def test_wrong_outputs_split_and_cancel_are_refused():
    data = _bundle([0, 1, 2, 3])
    with pytest.raises(ValueError, match="6 classes"):
        evaluate_model(Lookup(np.zeros((4, 4))), data)
    with pytest.raises(ValueError, match="split"):
        evaluate_model(Lookup(np.zeros((4, 6))), data, split="val")
    with pytest.raises(AnalysisCancelled):
        evaluate_model(Lookup(np.zeros((4, 6))), data, cancel=lambda: True)
    model = Lookup(np.zeros((4, 6))).train()
    evaluate_model(model, data)
    assert model.training


def test_a_streamed_image_folder_is_evaluated_on_its_test_split(tmp_path):
    from PIL import Image

    from featdistill_core.data import load_dataset

    rng = np.random.default_rng(0)
    for c in ("cats", "dogs", "owls"):
        (tmp_path / c).mkdir()
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    data = load_dataset("imagefolder", str(tmp_path), image_size=16, loader="stream", workers=0)
    assert data.loader == "stream"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    result = evaluate_model(model, data, batch_size=2)
    assert result.count == len(data.test_labels) == int(result.confusion.sum()) and result.class_names == ("cats", "dogs", "owls")
    with pytest.raises(ValueError, match="streamed"):
        evaluate_model(model, data, split="train")
    data.close()
