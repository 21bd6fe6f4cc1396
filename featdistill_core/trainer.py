"""The training loop: the run's stage plan (teacher first if asked, an initialisation stage if a term
asks for one, then the student with every distillation term), run from one :class:`RunState`.

Read :meth:`Trainer._run` top to bottom for the whole run and :meth:`Trainer._train_stage` for one
stage's loop. The trainer emits the events of :mod:`featdistill_core.events` to its subscribers and
writes the run folder (:mod:`featdistill_core.runfolder`) as it goes. Stop and pause may be requested
from another thread; they take effect at the next step.

A :class:`Trainer` runs a :class:`~featdistill_core.validate.ValidatedRun`. Given a plain
:class:`~featdistill_core.config.RunConfig`, it validates it first (every problem raised together as
one :class:`~featdistill_core.errors.ConfigError`), so the Python API refuses exactly what
``featdistill check`` refuses.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.analysis import record_pair_cka
from featdistill_core.config import ConfigError, RunConfig
from featdistill_core.control import RunControl, StopRequested
from featdistill_core.data import load_dataset
from featdistill_core.distiller import Distiller
from featdistill_core.events import AttentionSnapshot, EpochEvent, Failed, Finished, StageStarted
from featdistill_core.losses import TrainingProgress
from featdistill_core.models import save_weights
from featdistill_core.optim import make_optimizer, make_schedule
from featdistill_core.progress import step_event_due
from featdistill_core.runfolder import RunWriter, new_run_dir
from featdistill_core.runstate import RunState, restore_rng
from featdistill_core.stages import PlannedStage, Stage
from featdistill_core.validate import ValidatedRun, validate_run


class Trainer:
    def __init__(self, run: RunConfig | ValidatedRun, run_dir: str | Path | None = None):
        self.validated = run if isinstance(run, ValidatedRun) else validate_run(run)
        self.config = self.validated.config
        self.stages: tuple[PlannedStage, ...] = self.validated.stages
        self.run_dir = Path(run_dir) if run_dir else new_run_dir(self.config)
        self._subscribers: list[Callable] = []
        self._control = RunControl()
        self.state: RunState | None = None
        self._teacher_frozen = False

    @property
    def metrics(self) -> dict:
        return self.state.metrics if self.state is not None else {}

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
                finished = Finished(metrics=dict(self.metrics), run_dir=str(self.run_dir))
            except StopRequested:
                self._save_models()
                finished = Finished(metrics=dict(self.metrics), run_dir=str(self.run_dir), stopped=True)
            self.emit(finished)
            return finished
        except Exception as exc:
            self._save_models()
            self.emit(_failed_event(exc, self.run_dir))
            raise
        finally:
            if getattr(self, "distiller", None) is not None:
                self.distiller.close()
            writer.close()

    def _run(self) -> None:
        v, cfg = self.validated, self.config
        self.device = v.device
        self.data = load_dataset(cfg.data.name, cfg.data.path or None, image_size=cfg.data.image_size,
                                 demo_train=cfg.data.demo_train, demo_test=cfg.data.demo_test, seed=cfg.seed,
                                 loader=cfg.data.loader, workers=cfg.data.workers)
        if self.data.num_classes != v.num_classes:
            raise ConfigError("data.path", f"found {self.data.num_classes} classes, expected {v.num_classes}")
        self.student = v.student.to(self.device)
        self.teacher = v.teacher.to(self.device) if v.teacher is not None else None
        restore_rng(v.rng_state)          # adapters are drawn where building the two models left the stream
        self.distiller = Distiller(
            v.terms, self.teacher, self.student, ce_weight=cfg.ce_weight, num_classes=v.num_classes,
            dataset_size=len(self.data.train_labels), device=self.device,
            teacher_name=cfg.teacher.arch, student_name=cfg.student.arch,
        ).to(self.device)
        self.state = RunState(teacher=self.teacher, student=self.student, terms=self.distiller.term_losses)
        self.loader = self.data.train_loader(cfg.batch_size, augment=cfg.data.augment, seed=cfg.seed,
                                             device=self.device)
        probe, labels, probe_display = self.data.probe_images(cfg.monitor.probe_images, seed=cfg.seed)
        self._probe = (probe.to(self.device), tuple(int(v) for v in labels),
                       np.asarray(probe_display, dtype=np.float32))

        for index, planned in enumerate(self.stages):
            if index < self.state.stage_index:
                continue                                  # done before a resume
            if planned.stage is not Stage.TEACHER:
                self._freeze_teacher()
            self._train_stage(planned)
            if planned.stage is Stage.TEACHER:
                save_weights(self.teacher, self.run_dir / "teacher.safetensors")
            self.state.finish_stage()
        self._freeze_teacher()
        self._save_models()
        record_pair_cka(self.run_dir, v, self.teacher, self.student, self.data, device=self.device,
                        cancel=lambda: self._control.stop_requested)     # pair_cka.json: each pair's CKA before/after

    def _freeze_teacher(self) -> None:
        """Before the student's stages: the teacher is measured once (if not trained here) and frozen."""
        if self.teacher is None or self._teacher_frozen:
            return
        if not self.config.trains_teacher and "teacher_test_acc" not in self.state.metrics:
            self.state.metrics["teacher_test_acc"] = self.evaluate(self.teacher)
        self.teacher.eval().requires_grad_(False)
        self._teacher_frozen = True

    # ---- one stage -----------------------------------------------------------------------------
    def _stage_objects(self, planned: PlannedStage):
        """Optimizer, schedule and gradient scaler of a stage, fresh."""
        cfg = self.config
        params = (list(self.teacher.parameters()) if planned.trains == "teacher"
                  else self.distiller.trainable_parameters())
        optimizer = make_optimizer(cfg.optim, params)
        schedule = make_schedule(optimizer, cfg.optim, planned.epochs, len(self.loader))
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.mixed_precision and self.device.type == "cuda")
        return optimizer, schedule, scaler

    def _train_stage(self, planned: PlannedStage) -> None:
        cfg, state = self.config, self.state
        stage = planned.stage
        model = self.teacher if planned.trains == "teacher" else self.student
        if not state.stage_started:
            state.optimizer, state.schedule, state.scaler = self._stage_objects(planned)
        steps_per_epoch = len(self.loader)
        total_steps = planned.epochs * steps_per_epoch
        self.emit(StageStarted(stage, planned.epochs, steps_per_epoch, total_steps, str(self.run_dir)))
        if planned.trains == "student":                 # one-off term preparation (FT, OFD); skipped once done
            self.distiller.prepare(stage, self.loader, checkpoint=self._control.checkpoint)

        for epoch_index in range(state.epoch, planned.epochs):
            epoch = epoch_index + 1
            model.train()
            for batch in self.loader.epoch_batches(epoch_index, start=state.batch):
                self._control.checkpoint()                      # pause / stop take effect here
                state.step += 1
                progress = TrainingProgress(stage, epoch, planned.epochs, state.step, total_steps, steps_per_epoch)
                with self._autocast():
                    logits, losses = self._losses(planned, batch, progress)
                    total = sum(losses.values())
                lr = state.optimizer.param_groups[0]["lr"]      # the rate this step uses
                state.optimizer.zero_grad(set_to_none=True)
                state.scaler.scale(total).backward()
                state.scaler.step(state.optimizer)
                state.scaler.update()
                state.schedule.step()
                if planned.trains == "student":
                    self.distiller.after_step()
                state.batch += 1
                state.trained[planned.trains] = True
                state.meter.add(losses, total, logits, batch.labels)

                if step_event_due(state.step, cfg.monitor.log_every, total_steps):
                    self.emit(state.meter.step_event(stage, state.step, epoch, total_steps, lr))
                if self._snapshot_due(stage, state.step):
                    self._snapshot(stage, state.step, epoch)
            test_acc = self.evaluate(model)
            state.metrics[f"{stage}_test_acc"] = test_acc
            train_acc = state.meter.train_acc()
            state.history.append({"stage": str(stage), "epoch": epoch, "train_acc": train_acc, "test_acc": test_acc})
            self.emit(EpochEvent(stage, epoch, planned.epochs, train_acc, test_acc,
                                 teacher_acc=state.metrics.get("teacher_test_acc") if stage is not Stage.TEACHER else None))
            if stage is not Stage.TEACHER and not self._snapshot_due(stage, state.step):
                self._snapshot(stage, state.step, epoch)
            state.finish_epoch()

    def _losses(self, planned: PlannedStage, batch, progress: TrainingProgress):
        """The logits and weighted loss components of one step of ``planned``'s stage."""
        if planned.stage is Stage.TEACHER:
            logits = self.teacher(batch.images)
            return logits, {"ce": F.cross_entropy(logits, batch.labels)}
        return self.distiller(batch.images, batch.labels, batch.indices, progress)

    def _snapshot_due(self, stage: Stage, step: int) -> bool:
        every = self.config.monitor.snapshot_every
        return stage is not Stage.TEACHER and bool(every) and step % every == 0

    def _snapshot(self, stage: Stage, step: int, epoch: int) -> None:
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
        for batch in self.data.test_loader(self.config.batch_size * 2, device=self.device):
            self._control.checkpoint()
            with self._autocast():
                correct += (model(batch.images).argmax(1) == batch.labels).sum()
            count += len(batch.labels)
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
        if distiller is not None and len(list(distiller.term_losses.parameters())):
            save_weights(distiller.term_losses, self.run_dir / "adapters.safetensors")


def _failed_event(exc: BaseException, run_dir) -> Failed:
    problems = tuple(tuple(p) for p in exc.problems) if isinstance(exc, ConfigError) else ()
    return Failed(error=_one_line(exc), kind=type(exc).__name__, run_dir=str(run_dir),
                  details=traceback.format_exc(), field=getattr(exc, "field", "") if problems else "",
                  problems=problems)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{text[0] if text else type(exc).__name__}"
