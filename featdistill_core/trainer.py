"""The training loop: teacher first if asked, then the student with every distillation term.

Read :meth:`Trainer._run` top to bottom for the whole run and :meth:`Trainer._train_stage` for one
stage's loop. The trainer emits the events of :mod:`featdistill_core.events` to its subscribers and
writes the run folder (:mod:`featdistill_core.runfolder`) as it goes. Stop and pause may be requested
from another thread; they take effect at the next step.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.config import ConfigError, RunConfig
from featdistill_core.control import RunControl, StopRequested
from featdistill_core.data import load_dataset
from featdistill_core.device import resolve_device
from featdistill_core.distiller import Distiller
from featdistill_core.events import (
    AttentionSnapshot, EpochEvent, Failed, Finished, StageStarted, StepEvent,
)
from featdistill_core.models import save_weights
from featdistill_core.optim import make_optimizer, make_schedule
from featdistill_core.runfolder import RunWriter, new_run_dir
from featdistill_core.validate import build_model, count_classes, validate_run


class Trainer:
    def __init__(self, config: RunConfig, run_dir: str | Path | None = None):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir else new_run_dir(config)
        self._subscribers: list[Callable] = []
        self._control = RunControl()
        self.metrics: dict = {}

    # ---- control, callable from any thread ------------------------------------------------
    def subscribe(self, callback: Callable) -> None:
        self._subscribers.append(callback)

    def request_stop(self) -> None:
        self._control.request_stop()

    def pause(self) -> None:
        self._control.pause()

    def resume(self) -> None:
        self._control.resume()

    @property
    def paused(self) -> bool:
        return self._control.paused

    def emit(self, event) -> None:
        for callback in self._subscribers:
            callback(event)

    # ---- the run -----------------------------------------------------------------------------
    def run(self) -> Finished:
        """Run to the end (or to a stop request). On an error: emit :class:`Failed`, then re-raise."""
        writer = RunWriter(self.run_dir, self.config)
        self._subscribers.insert(0, writer)
        try:
            try:
                self._run()
                finished = Finished(metrics=self.metrics, run_dir=str(self.run_dir))
            except StopRequested:
                self._save_models()
                finished = Finished(metrics=self.metrics, run_dir=str(self.run_dir), stopped=True)
            self.emit(finished)
            return finished
        except Exception as exc:
            self._save_models()
            self.emit(Failed(error=_one_line(exc), kind=type(exc).__name__, run_dir=str(self.run_dir),
                             details=traceback.format_exc()))
            raise
        finally:
            if getattr(self, "distiller", None) is not None:
                self.distiller.close()
            writer.close()

    def _run(self) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        num_classes = count_classes(cfg)
        self.student = build_model(cfg, "student", num_classes)
        self.teacher = build_model(cfg, "teacher", num_classes) if cfg.uses_teacher or cfg.trains_teacher else None
        plan = validate_run(cfg, teacher=self.teacher, student=self.student)
        self.data = load_dataset(cfg.data.name, cfg.data.path or None, image_size=cfg.data.image_size,
                                 demo_train=cfg.data.demo_train, demo_test=cfg.data.demo_test, seed=cfg.seed)
        if self.data.num_classes != num_classes:
            raise ConfigError("data.path", f"found {self.data.num_classes} classes, expected {num_classes}")
        self.student.to(self.device)

        if self.teacher is not None:
            self.teacher.to(self.device)
            if cfg.trains_teacher:
                self._train_stage("teacher", self.teacher, cfg.teacher.train_epochs, self._teacher_losses,
                                  list(self.teacher.parameters()))
                save_weights(self.teacher, self.run_dir / "teacher.safetensors")
            else:
                self.metrics["teacher_test_acc"] = self.evaluate(self.teacher)
            self.teacher.eval().requires_grad_(False)

        self.distiller = Distiller(cfg, self.teacher, self.student, plan.teacher_layers, plan.student_layers).to(self.device)
        probe, labels, probe_display = self.data.probe_images(cfg.monitor.probe_images, seed=cfg.seed)
        self._probe = (probe.to(self.device), tuple(int(v) for v in labels), np.asarray(probe_display, dtype=np.float32))
        params = self.distiller.trainable_parameters()
        if any(pair.stage == "init" for pair in cfg.pairs):
            self._train_stage("init", self.student, cfg.init_epochs, self._init_losses, params)
        if cfg.epochs > 0:
            self._train_stage("student", self.student, cfg.epochs, self._student_losses, params)
        self._save_models()

    # ---- what each stage minimises -------------------------------------------------------------
    def _teacher_losses(self, images, labels):
        logits = self.teacher(images)
        return logits, {"ce": F.cross_entropy(logits, labels)}

    def _init_losses(self, images, labels):
        return self.distiller(images, labels, stage="init")

    def _student_losses(self, images, labels):
        return self.distiller(images, labels, stage="student")

    # ---- one stage -----------------------------------------------------------------------------
    def _train_stage(self, stage: str, model: nn.Module, epochs: int, compute_losses, params) -> None:
        cfg = self.config
        loader = self.data.train_loader(cfg.batch_size, augment=cfg.data.augment, seed=cfg.seed, device=self.device)
        total_steps = epochs * len(loader)
        optimizer = make_optimizer(cfg.optim, params)
        schedule = make_schedule(optimizer, cfg.optim, epochs, len(loader))
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.mixed_precision and self.device.type == "cuda")
        self.emit(StageStarted(stage, epochs, len(loader), total_steps, str(self.run_dir)))

        step = 0
        for epoch in range(1, epochs + 1):
            model.train()
            meter = StepMeter()
            for images, labels in loader:
                self._control.checkpoint()                      # pause / stop take effect here
                step += 1
                with self._autocast():
                    logits, losses = compute_losses(images, labels)
                    total = sum(losses.values())
                lr = optimizer.param_groups[0]["lr"]           # the rate this step uses
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                meter.add(losses, total, logits, labels)

                if step % cfg.monitor.log_every == 0 or step == total_steps:
                    self.emit(meter.step_event(stage, step, epoch, total_steps, lr))
                if stage != "teacher" and cfg.monitor.snapshot_every and step % cfg.monitor.snapshot_every == 0:
                    self._snapshot(stage, step, epoch)
            test_acc = self.evaluate(model)
            self.metrics[f"{stage}_test_acc"] = test_acc
            self.emit(EpochEvent(stage, epoch, epochs, meter.train_acc(), test_acc,
                                 teacher_acc=self.metrics.get("teacher_test_acc") if stage != "teacher" else None))
            if stage != "teacher" and not (cfg.monitor.snapshot_every and step % cfg.monitor.snapshot_every == 0):
                self._snapshot(stage, step, epoch)

    def _snapshot(self, stage: str, step: int, epoch: int) -> None:
        images, labels, display = self._probe
        with self._autocast():
            pairs = self.distiller.attention_maps(images)
        if pairs:
            self.emit(AttentionSnapshot(stage, step, epoch, display, labels, pairs))

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        """Top-1 accuracy in percent on the test split."""
        was_training = model.training
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        count = 0
        for images, labels in self.data.test_loader(self.config.batch_size * 2, device=self.device):
            self._control.checkpoint()
            with self._autocast():
                correct += (model(images).argmax(1) == labels).sum()
            count += len(labels)
        model.train(was_training)
        return 100.0 * correct.item() / max(count, 1)

    def _autocast(self):
        if not self.config.mixed_precision:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _save_models(self) -> None:
        student = getattr(self, "student", None)
        if student is not None:
            save_weights(student, self.run_dir / "student.safetensors")
        distiller = getattr(self, "distiller", None)
        if distiller is not None and len(list(distiller.pair_losses.parameters())):
            save_weights(distiller.pair_losses, self.run_dir / "adapters.safetensors")


class StepMeter:
    """Averages the loss components over the steps between two step events, and train accuracy."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._total = None
        self._steps = 0
        self._images = 0
        self._since = time.perf_counter()
        self._correct = None
        self._seen = 0

    def add(self, losses: dict, total: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        for name, value in losses.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._total = total.detach().float() if self._total is None else self._total + total.detach().float()
        self._steps += 1
        self._images += len(labels)
        correct = (logits.detach().argmax(1) == labels).sum()
        self._correct = correct if self._correct is None else self._correct + correct
        self._seen += len(labels)

    def step_event(self, stage, step, epoch, total_steps, lr) -> StepEvent:
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        event = StepEvent(
            stage=stage, step=step, epoch=epoch, total_steps=total_steps,
            losses={name: value.item() / self._steps for name, value in self._sums.items()},
            total=self._total.item() / self._steps, lr=float(lr), images_per_sec=self._images / elapsed,
        )
        self._sums, self._total, self._steps, self._images = {}, None, 0, 0
        self._since = time.perf_counter()
        return event

    def train_acc(self) -> float:
        return 100.0 * (self._correct.item() if self._correct is not None else 0) / max(self._seen, 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{text[0] if text else type(exc).__name__}"
