"""Evaluating a model on a data set: top-1, top-5, per-class accuracy and the confusion matrix.

:func:`evaluate_model` runs any classifier over a split of a :class:`~featdistill_core.data.DataBundle`
(normalised exactly as training feeds it) and returns an :class:`Evaluation`. ``featdistill eval`` prints
it and writes the confusion matrix; the window's run summary shows the per-class accuracies of teacher
and student side by side (:func:`per_class_accuracy`).

Conventions: ``confusion[i, j]`` counts images of true class i predicted as class j. Top-5 is top-k
with k = min(5, number of classes) (with fewer than 5 classes it is 100 %). A class without images in
the split has accuracy NaN.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from .similarity import AnalysisCancelled, Cancel, Progress

SPLITS = ("test", "train")


@dataclass(frozen=True, eq=False)
class Evaluation:
    """What :func:`evaluate_model` measured."""

    top1: float                    # percent
    top5: float                    # percent, top-k with k = topk
    topk: int
    count: int                     # images evaluated
    confusion: np.ndarray          # (C, C) int64: rows true class, columns predicted
    class_names: tuple[str, ...]
    split: str = "test"

    @property
    def per_class(self) -> np.ndarray:
        """Accuracy of each class in percent (NaN for a class with no images)."""
        totals = self.confusion.sum(axis=1)
        hits = np.diag(self.confusion).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, 100.0 * hits / np.maximum(totals, 1), np.nan)

    def per_class_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in zip(self.class_names, self.per_class)}

    def write_confusion_csv(self, path: str | Path) -> Path:
        """The confusion matrix as CSV: a header of predicted classes, one row per true class, then
        each class's accuracy in the last column."""
        path = Path(path)
        rows = [["true \\ predicted", *self.class_names, "accuracy %"]]
        for name, counts, acc in zip(self.class_names, self.confusion.tolist(), self.per_class):
            rows.append([name, *counts, "nan" if math.isnan(acc) else f"{acc:.2f}"])
        partial = path.with_name(path.name + ".partial")
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
        partial.replace(path)
        return path

    def format_summary(self, worst: int = 5) -> str:
        lines = [f"top-1 {self.top1:.2f}%  top-{self.topk} {self.top5:.2f}%  ({self.count} {self.split} images, "
                 f"{len(self.class_names)} classes)"]
        accs = self.per_class
        order = [i for i in np.argsort(np.nan_to_num(accs, nan=np.inf)) if not math.isnan(accs[i])][:worst]
        if order and len(self.class_names) > 1:
            lines.append("lowest per-class accuracy: " + ", ".join(f"{self.class_names[i]} {accs[i]:.1f}%" for i in order))
        return "\n".join(lines)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def evaluate_model(model: nn.Module, data, *, split: str = "test", batch_size: int = 256, device=None,
                   progress: Progress = None, cancel: Cancel = None) -> Evaluation:
    """Top-1, top-5 and the confusion matrix of ``model`` on a split of ``data`` (a ``DataBundle``, or for the
    test split a streamed ``StreamBundle``), normalised and ordered as the trainer's evaluation.

    The model is moved to ``device`` (default: where its parameters are) and put in eval mode (its
    mode is restored). ``progress(done, total)`` after each batch; ``cancel()`` before each (True
    raises :class:`~.similarity.AnalysisCancelled`). Raises ValueError when the model's outputs do not
    have one logit per class.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive whole number; got {batch_size!r}")
    device = torch.device(device) if device is not None else _device_of(model)
    classes = int(data.num_classes)
    from featdistill_core.data import BatchLoader

    if split == "test":
        loader, total = data.test_loader(batch_size, device=device), len(data.test_labels)   # in order, not augmented
    elif hasattr(data, "train_images"):
        loader = BatchLoader(data.train_images, data.train_labels, batch_size, shuffle=False, augment=False,
                             mean=data.mean, std=data.std, drop_last=False, device=device)
        total = len(data.train_labels)
    else:
        raise ValueError("the train split of a data set streamed from disk is not evaluated; use the test split")
    k = min(5, classes)
    confusion = torch.zeros((classes, classes), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    done = 0
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for batch in loader:
                if cancel is not None and cancel():
                    raise AnalysisCancelled("evaluation cancelled")
                logits = model(batch.images)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != classes:
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ValueError(f"the model gives outputs of shape {shape}; the data set has {classes} classes, "
                                     f"so it should give (batch, {classes}) logits")
                predicted = logits.argmax(dim=1)
                confusion += torch.bincount(batch.labels * classes + predicted,
                                            minlength=classes * classes).reshape(classes, classes)
                top = logits.topk(k, dim=1).indices
                top5 += (top == batch.labels[:, None]).any(dim=1).sum()
                done += len(batch.labels)
                if progress is not None:
                    progress(done, total)
    finally:
        model.train(was_training)
        close = getattr(loader, "close", None)
        if callable(close):
            close()
    matrix = confusion.cpu().numpy()
    count = int(matrix.sum())
    names = tuple(data.class_names) if len(data.class_names) == classes else tuple(str(i) for i in range(classes))
    return Evaluation(
        top1=100.0 * float(np.trace(matrix)) / max(count, 1), top5=100.0 * float(top5.item()) / max(count, 1),
        topk=k, count=count, confusion=matrix, class_names=names, split=split,
    )


def per_class_accuracy(model: nn.Module, data, *, split: str = "test", device=None,
                       cancel: Cancel = None) -> dict[str, float]:
    """``{class name: accuracy %}`` of ``model`` on a split of ``data`` (NaN for a class with no images)."""
    return evaluate_model(model, data, split=split, device=device, cancel=cancel).per_class_dict()


__all__ = ["Evaluation", "SPLITS", "evaluate_model", "per_class_accuracy"]
