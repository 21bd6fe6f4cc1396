"""The embedded demo: teacher, distilled student and an undistilled baseline on the demo dataset.

:func:`demo_config` is the distillation run that the window opens with and that ``featdistill demo``
runs first: it trains ``demo_teacher`` on the procedurally generated shapes dataset, then trains
``demo_student`` with attention transfer and a FitNets hint from it. :func:`baseline_config` is the
same student trained with cross-entropy alone, for comparison.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from featdistill_core.config import (
    DataConfig, KDConfig, checked, MonitorConfig, OptimConfig, PairConfig, RunConfig, StudentConfig, TeacherConfig,
)

DEMO_EPOCHS = 4
DEMO_TEACHER_EPOCHS = 8


def demo_config(seed: int = 0, output_dir: str = "runs") -> RunConfig:
    return checked(RunConfig(
        name="demo-distill",
        seed=seed,
        device="auto",
        epochs=DEMO_EPOCHS,
        batch_size=32,
        output_dir=output_dir,
        teacher=TeacherConfig(arch="demo_teacher", train_epochs=DEMO_TEACHER_EPOCHS),
        student=StudentConfig(arch="demo_student"),
        data=DataConfig(name="demo", demo_train=4000, demo_test=2000, augment=False),
        optim=OptimConfig(name="adamw", lr=3e-3, weight_decay=5e-4, schedule="cosine"),
        kd=KDConfig(weight=0.0, temperature=4.0),
        monitor=MonitorConfig(log_every=10, snapshot_every=50, probe_images=8),
        pairs=[
            PairConfig(method="at", teacher=["layer2"], student=["layer2"], weight=10.0, options={"p": 2, "normalize": "l2"}),
            PairConfig(method="at", teacher=["layer3"], student=["layer3"], weight=10.0, options={"p": 2, "normalize": "l2"}),
            PairConfig(method="hint", teacher=["layer3"], student=["layer3"], weight=1.0, options={"regressor": "conv_bn_relu"}),
        ],
    ))


def baseline_config(distill: RunConfig) -> RunConfig:
    """The same student, data and schedule without any teacher."""
    baseline = copy.deepcopy(distill)
    baseline.name = distill.name.replace("distill", "baseline")
    baseline.pairs = []
    baseline.kd.weight = 0.0
    baseline.teacher.train_epochs = 0
    baseline.teacher.weights = ""
    return baseline


@dataclass
class DemoResult:
    teacher_acc: float
    distilled_acc: float
    baseline_acc: float
    distill_dir: Path
    baseline_dir: Path

    @property
    def gain(self) -> float:
        return self.distilled_acc - self.baseline_acc

    def table(self) -> str:
        rows = [("teacher (demo_teacher)", self.teacher_acc),
                ("student distilled (AT + hint)", self.distilled_acc),
                ("student baseline (no teacher)", self.baseline_acc)]
        lines = [f"{'model':32s} {'test top-1':>10s}", "-" * 43]
        lines += [f"{name:32s} {acc:9.2f}%" for name, acc in rows]
        lines += ["-" * 43, f"{'gain from distillation':32s} {self.gain:+9.2f} points"]
        return "\n".join(lines)


def run_demo(seed: int = 0, output_dir: str = "runs", subscribe: Callable | None = None,
             config: RunConfig | None = None) -> DemoResult:
    """Run the distillation and the baseline; ``subscribe(trainer)`` may attach listeners to each."""
    from featdistill_core.trainer import Trainer

    distill = config or demo_config(seed, output_dir)
    trainer = Trainer(distill)
    if subscribe:
        subscribe(trainer)
    distilled = trainer.run()

    baseline = Trainer(baseline_config(distill))
    if subscribe:
        subscribe(baseline)
    base = baseline.run()
    return DemoResult(
        teacher_acc=distilled.metrics["teacher_test_acc"],
        distilled_acc=distilled.metrics["student_test_acc"],
        baseline_acc=base.metrics["student_test_acc"],
        distill_dir=Path(distilled.run_dir),
        baseline_dir=Path(base.run_dir),
    )
