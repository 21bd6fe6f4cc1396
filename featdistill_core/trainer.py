"""The training loop: the run's stage plan (teacher first if asked, an initialisation stage if a term
asks for one, then the student with every distillation term), run from one :class:`RunState`.

Read :meth:`Trainer._run` top to bottom for the whole run, :meth:`Trainer._train_stage` for one
stage's loop and :meth:`Trainer._step` for one step. The trainer emits the events of
:mod:`featdistill_core.events` to its subscribers and writes the run folder
(:mod:`featdistill_core.runfolder`) as it goes. Stop and pause may be requested from another thread
(or by a signal, :mod:`featdistill_core.signals`); they take effect at the next step.

Surviving: the whole run state is checkpointed (:mod:`featdistill_core.checkpoint`) at the end of every
epoch, every ``checkpoint.every_minutes`` and when the run stops or fails between two steps;
:meth:`Trainer.resume_from` continues a run folder from its last checkpoint, exactly (on the CPU, the
same losses and accuracies as a run never interrupted). A NaN or infinite loss or gradient is caught
before it reaches the weights (:mod:`featdistill_core.guard`). Weights that were never trained or are
not finite are never saved as a result.

A :class:`Trainer` runs a :class:`~featdistill_core.validate.ValidatedRun`. Given a plain
:class:`~featdistill_core.config.RunConfig`, it validates it first (every problem raised together as
one :class:`~featdistill_core.errors.ConfigError`), so the Python API refuses exactly what
``featdistill check`` refuses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from featdistill_core import distributed
from featdistill_core.balance import calibrate
from featdistill_core.analysis import record_pair_cka
from featdistill_core.atomic import WriteError
from featdistill_core.checkpoint import CHECKPOINT_BEST, CHECKPOINT_LAST, CheckpointError, checkpoint_summary, \
    read_checkpoint, save_checkpoint
from featdistill_core.config import CheckpointConfig, ConfigError, RunConfig, config_to_toml, load_config
from featdistill_core.control import RunControl, StopRequested
from featdistill_core.data import load_dataset
from featdistill_core.distiller import Distiller
from featdistill_core.events import (
    AttentionSnapshot, Checkpointed, EpochEvent, Failed, Finished, Resumed, StageStarted,
)
from featdistill_core.guard import BufferBackup, NonFiniteError, NonFiniteGuard, TermInfo, nonfinite_names
from featdistill_core.losses import TrainingProgress
from featdistill_core.models import save_weights
from featdistill_core.optim import make_optimizer, make_schedule
from featdistill_core.progress import step_event_due
from featdistill_core.runfolder import (
    ADAPTERS_FILE, STUDENT_FILE, TEACHER_FILE, RunFolderError, RunLock, RunWriter, holds_a_run, new_run_dir,
    run_status, write_run_file,
)
from featdistill_core.runstate import RunState, restore_rng
from featdistill_core.speed import amp_plan, compile_in_place, to_channels_last
from featdistill_core.stages import PlannedStage, Stage
from featdistill_core.validate import ValidatedRun, validate_run

MODEL_FILES = {"teacher": TEACHER_FILE, "student": STUDENT_FILE}


class Trainer:
    def __init__(self, run: RunConfig | ValidatedRun, run_dir: str | Path | None = None, *, _resuming: bool = False):
        self.dist = distributed.current()     # under torchrun: this rank; otherwise the one process
        self.validated = self.dist.everywhere(lambda: run if isinstance(run, ValidatedRun) else validate_run(run))
        self.config = self.validated.config
        self.stages: tuple[PlannedStage, ...] = self.validated.stages
        self.run_dir = self.dist.from_main(lambda: self._open_run_dir(run_dir, _resuming))   # rank 0 writes
        self._resuming = _resuming
        self._subscribers: list[Callable] = []
        self._control = RunControl()
        self.state: RunState | None = None
        self._teacher_frozen = False
        self._between_steps = True            # False while a step is under way (its state is not whole)
        self._last_checkpoint = time.monotonic()
        self._not_saved: dict[str, str] = {}  # file name -> why it was not written
        self.finished: Finished | None = None
        self.failed: Failed | None = None
        self._amp = amp_plan("cpu", False)
        self._ddp: dict[str, nn.Module] = {}  # under torchrun: "teacher"/"student" -> its DistributedDataParallel
        self._forward: nn.Module | None = None
        self._shard = {"rank": self.dist.rank, "world_size": self.dist.world_size}   # this rank's share of a batch

    def _open_run_dir(self, run_dir, resuming: bool) -> Path:
        if run_dir is None:
            path = new_run_dir(self.config)
        else:
            path = Path(run_dir).absolute()
            if not resuming and path.is_dir() and holds_a_run(path):
                raise RunFolderError(f"{path} holds a run already: resume it (featdistill train --resume "
                                     f"{path}) or give another folder")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WriteError(path, exc) from exc
        if not resuming:
            write_run_file(path, self.config)   # a run folder from the moment it exists
        return path

    @classmethod
    def resume_from(cls, run_dir: str | Path, *, checkpoint_minutes: float | None = None) -> "Trainer":
        """A trainer that continues the run in ``run_dir`` from its last checkpoint when :meth:`run` is
        called (from the start, in the same folder, if it has none), appending to its ``metrics.jsonl``.

        Raises :class:`~featdistill_core.runfolder.RunFolderError` for a folder that is not a run, is
        being written by another process, or has finished; :class:`ConfigError` when its run file no
        longer validates (a weights file it names has gone, say)."""
        run_dir = Path(run_dir).absolute()
        status = distributed.current().from_main(lambda: run_status(run_dir))
        if status.state == "running":
            raise RunFolderError(f"{run_dir} is being written by another featdistill process; wait for it or stop it")
        if status.state == "finished":
            raise RunFolderError(f"{run_dir} has finished: there is nothing to resume")
        try:
            config = load_config(run_dir / "run.toml")
        except ConfigError as exc:
            raise RunFolderError(f"{run_dir / 'run.toml'} cannot be read: {exc}") from None
        if checkpoint_minutes is not None:
            config.checkpoint.every_minutes = checkpoint_minutes
        return cls(config, run_dir, _resuming=True)

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
        """Un-pause (to continue a run folder from its checkpoint, see :meth:`resume_from`)."""
        self._control.resume()

    @property
    def paused(self) -> bool:
        return self._control.paused

    def emit(self, event) -> None:
        for callback in self._subscribers:
            callback(event)

    def _emit_quietly(self, event) -> list[str]:
        """Emit to every subscriber even if some raise (after a failure); return their errors."""
        errors = []
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as exc:  # noqa: BLE001 - the first error is the one reported
                errors.append(str(exc))
        return errors

    # ---- the run -----------------------------------------------------------------------------
    def run(self) -> Finished:
        """Run to the end (or to a stop request). On an error: emit :class:`Failed` (also kept as
        :attr:`failed`), then re-raise the error itself, never one met while reporting it."""
        main = self.dist.is_main                # only rank 0 locks and writes the run folder
        with RunLock(self.run_dir) if main else contextlib.nullcontext():
            writer = RunWriter(self.run_dir, resuming=self._resuming) if main else None
            if writer is not None:
                self._subscribers.insert(0, writer)
            try:
                try:
                    self._run()
                    stopped = False
                except StopRequested:
                    self._save_after_stop()
                    stopped = True
                self.finished = Finished(metrics=dict(self.metrics), run_dir=str(self.run_dir), stopped=stopped)
                self.emit(self.finished)
                return self.finished
            except Exception as exc:
                self.failed = self._fail(exc)
                self._emit_quietly(self.failed)
                raise
            finally:
                if getattr(self, "distiller", None) is not None:
                    self.distiller.close()
                if writer is not None:
                    writer.close()
                    self._subscribers.remove(writer)

    def _run(self) -> None:
        v, cfg = self.validated, self.config
        self.device = self.dist.device(v.device)          # under torchrun on CUDA: cuda:LOCAL_RANK
        self._amp = amp_plan(self.device, cfg.mixed_precision, cfg.amp_dtype)
        self.data = load_dataset(cfg.data.name, cfg.data.path or None, image_size=cfg.data.image_size,
                                 demo_train=cfg.data.demo_train, demo_test=cfg.data.demo_test, seed=cfg.seed,
                                 test_fraction=cfg.data.test_fraction, loader=cfg.data.loader, workers=cfg.data.workers)
        if self.data.num_classes != v.num_classes:
            raise ConfigError("data.path", f"found {self.data.num_classes} classes, expected {v.num_classes}")
        self.student = v.student.to(self.device)
        if self.dist.active and cfg.sync_batchnorm:       # before the hooks: it replaces the BatchNorm modules
            self.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
        self.teacher = v.teacher.to(self.device) if v.teacher is not None else None
        restore_rng(v.rng_state)          # adapters are drawn where building the two models left the stream
        self.distiller = Distiller(
            v.terms, self.teacher, self.student, ce_weight=cfg.ce_weight, num_classes=v.num_classes,
            dataset_size=len(self.data.train_labels), device=self.device,
            teacher_name=cfg.teacher.arch, student_name=cfg.student.arch,
        ).to(self.device)
        if cfg.channels_last:
            for module in (self.student, self.teacher, self.distiller):
                to_channels_last(module)
        for module in (self.student, self.teacher):      # in place, after the hooks: names and hooks unchanged
            compile_in_place(module, cfg.compile)
        self.state = RunState(teacher=self.teacher, student=self.student, terms=self.distiller.term_losses)
        self.loader = self.data.train_loader(cfg.batch_size, augment=cfg.data.augment, seed=cfg.seed,
                                             device=self.device, **self._shard)
        probe, labels, probe_display = self.data.probe_images(cfg.monitor.probe_images, seed=cfg.seed)
        probe = to_channels_last(probe) if cfg.channels_last else probe
        self._probe = (probe.to(self.device), tuple(int(v) for v in labels),
                       np.asarray(probe_display, dtype=np.float32))
        if self._resuming:
            self._restore()                       # the state of the last checkpoint, RNGs included
        self._last_checkpoint = time.monotonic()

        for index, planned in enumerate(self.stages):
            if index < self.state.stage_index:
                continue                                  # done before a resume
            if planned.stage is not Stage.TEACHER:
                self._freeze_teacher()
            self._train_stage(planned)
            if planned.stage is Stage.TEACHER:
                self._save_model("teacher")
            self.state.finish_stage()
        self._freeze_teacher()
        self._save_models()
        if self.dist.is_main:
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
        optim = cfg.optim
        if cfg.lr_scaling == "linear" and self.dist.active:       # asked for in the run file, never implied
            optim = dataclasses.replace(optim, lr=optim.lr * self.dist.world_size)
        optimizer = make_optimizer(optim, params)
        schedule = make_schedule(optimizer, optim, planned.epochs, len(self.loader))
        return optimizer, schedule, self._amp.grad_scaler()

    def _train_stage(self, planned: PlannedStage) -> None:
        cfg, state = self.config, self.state
        stage = planned.stage
        model = self.teacher if planned.trains == "teacher" else self.student
        if not state.stage_started:
            state.optimizer, state.schedule, state.scaler = self._stage_objects(planned)
        self._guard = self._make_guard(planned)
        steps_per_epoch = len(self.loader)
        total_steps = planned.epochs * steps_per_epoch
        self.emit(StageStarted(stage, planned.epochs, steps_per_epoch, total_steps, str(self.run_dir)))
        if planned.trains == "student":                 # one-off term preparation (FT, OFD); skipped once done
            self._between_steps = False                 # a half-prepared term is not checkpointed
            self.distiller.prepare(stage, self.loader, checkpoint=self._control.checkpoint)
            self.dist.broadcast_module(self.distiller.term_losses)   # every rank takes rank 0's preparation
            calibrate(self.distiller, self.loader, cfg, stage=stage, emit=self.emit, run_dir=self.run_dir)  # loss balance, auto weights
            if self.dist.active:    # each rank measured its own share: every rank trains with rank 0's weights
                weights = self.dist.from_main(lambda: [plan.weight for plan in self.distiller.terms])
                self.distiller.terms = [dataclasses.replace(plan, weight=w) for plan, w in zip(self.distiller.terms, weights)]
            self._guard = self._make_guard(planned)     # its messages name the weights calibration chose
            self._between_steps = True
        self._forward = self._parallel(planned)

        for epoch_index in range(state.epoch, planned.epochs):
            epoch = epoch_index + 1
            model.train()
            for batch in self.loader.epoch_batches(epoch_index, start=state.batch):
                self._control.checkpoint()                      # pause / stop / a signal take effect here
                self._between_steps = False
                state.step += 1
                progress = TrainingProgress(stage, epoch, planned.epochs, state.step, total_steps, steps_per_epoch)
                lr = state.optimizer.param_groups[0]["lr"]      # the rate this step uses
                done = self._step(planned, batch, progress)
                state.batch += 1
                if done is not None:                            # None: a non-finite step, skipped
                    logits, losses, total = done
                    state.trained[planned.trains] = True
                    state.meter.add(*self._across_ranks(losses, total, logits, batch.labels))
                if step_event_due(state.step, cfg.monitor.log_every, total_steps) and state.meter.steps:
                    self.emit(state.meter.step_event(stage, state.step, epoch, total_steps, lr))
                if self._snapshot_due(stage, state.step):
                    self._snapshot(stage, state.step, epoch)
                self._between_steps = True
                if self._timed_checkpoint_due():
                    self._checkpoint("timed")
            for module in self._trained_modules(planned):      # every rank takes rank 0's BatchNorm statistics
                self.dist.broadcast_module(module, buffers_only=True)
            test_acc = self.evaluate(model)
            state.metrics[f"{stage}_test_acc"] = test_acc
            train_acc = state.meter.train_acc()
            state.history.append({"stage": str(stage), "epoch": epoch, "train_acc": train_acc, "test_acc": test_acc})
            self.emit(EpochEvent(stage, epoch, planned.epochs, train_acc, test_acc,
                                 teacher_acc=state.metrics.get("teacher_test_acc") if stage is not Stage.TEACHER else None))
            if stage is not Stage.TEACHER and not self._snapshot_due(stage, state.step):
                self._snapshot(stage, state.step, epoch)
            state.finish_epoch()
            self._checkpoint("epoch", best=self._best_so_far(planned, test_acc))

    def _step(self, planned: PlannedStage, batch, progress: TrainingProgress):
        """One optimizer step: (logits, weighted loss components, their sum), or None when the guard
        skipped a non-finite step (``on_nonfinite = "skip"``)."""
        state = self.state
        backup = BufferBackup(self._trained_modules(planned)) if self._guard.mode == "skip" else None
        with self._autocast():
            logits, losses = self._losses(planned, batch, progress)
            total = sum(losses.values())
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(total).backward()
        if not self._guard.check(losses, total, self._named_trainable, gradients=not state.scaler.is_enabled(),
                                 stage=str(planned.stage), step=state.step, epoch=progress.epoch,
                                 first_step=state.step == 1):
            backup.restore()
            state.optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():          # "lr_scheduler.step() before optimizer.step()"
                warnings.simplefilter("ignore")
                state.schedule.step()                # the schedule keeps counting steps
            state.metrics["skipped_steps"] = state.metrics.get("skipped_steps", 0) + 1
            return None
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.schedule.step()
        if planned.trains == "student":
            self.distiller.after_step()
        return logits, losses, total

    def _losses(self, planned: PlannedStage, batch, progress: TrainingProgress):
        """The logits and weighted loss components of one step of ``planned``'s stage."""
        images = to_channels_last(batch.images) if self.config.channels_last else batch.images
        if planned.stage is Stage.TEACHER:
            logits = self._forward(images)
            return logits, {"ce": F.cross_entropy(logits, batch.labels)}
        return self._forward(images, batch.labels, batch.indices, progress)

    def _parallel(self, planned: PlannedStage) -> nn.Module:
        """What a step calls: the teacher (its own stage) or the Distiller (student and adapters), inside
        one DistributedDataParallel module under torchrun, so that every trained gradient, the adapters'
        included, is averaged over the ranks. Hooks, snapshots, evaluation, checkpoints and saved files
        use the modules themselves, never the wrapper: no ``module.`` prefix anywhere."""
        module = self.teacher if planned.trains == "teacher" else self.distiller
        if not self.dist.active:
            return module
        if planned.trains not in self._ddp:      # an init stage leaves the student's last layers without gradient
            unused = planned.trains == "student" and any(p.stage is Stage.INIT for p in self.stages)
            self._ddp[planned.trains] = DistributedDataParallel(module, find_unused_parameters=unused)
        return self._ddp[planned.trains]

    def _across_ranks(self, losses: dict, total: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor):
        """What the step meter adds for one step: the loss components and their sum (means over the
        ranks), correct predictions and images (sums over the ranks); one all-reduce under torchrun,
        so that every rank's meter, events and checkpoint agree. It carries each rank's stop request
        too, so that a signal to one rank stops every rank at the same step."""
        correct = (logits.detach().argmax(1) == labels).sum()
        if not self.dist.active:
            return losses, total, correct, len(labels)
        names = list(losses)
        stop = torch.tensor(float(self._control.stop_requested), device=correct.device)
        packed = torch.stack([losses[n].detach().float() for n in names] + [total.detach().float(), correct.float(), stop])
        summed = self.dist.sum(packed)
        if summed[-1].item() > 0:                   # one rank was asked to stop: all stop after this same step
            self._control.request_stop()
        n = self.dist.world_size
        return ({name: summed[i] / n for i, name in enumerate(names)}, summed[-3] / n, summed[-2].round().long(),
                len(labels) * n)                    # (validation makes every share batch_size / world_size)

    def _trained_modules(self, planned: PlannedStage) -> list[nn.Module]:
        return [self.teacher] if planned.trains == "teacher" else [self.student, self.distiller.term_losses]

    def _make_guard(self, planned: PlannedStage) -> NonFiniteGuard:
        terms = {"ce": TermInfo("", self.config.ce_weight)}
        named = [(f"the teacher's {n}", p) for n, p in self.teacher.named_parameters()] \
            if planned.trains == "teacher" else [(f"the student's {n}", p) for n, p in self.student.named_parameters()]
        if planned.trains == "student":
            for plan, module in zip(self.distiller.terms, self.distiller.term_losses):
                terms[plan.name] = TermInfo(plan.field, plan.weight)
                named += [(f"{plan.name}'s adapter {n}", p) for n, p in module.named_parameters()]
        self._named_trainable = named
        return NonFiniteGuard(self.config.on_nonfinite, terms, self.config.optim.lr, role=planned.trains)

    def _snapshot_due(self, stage: Stage, step: int) -> bool:
        every = self.config.monitor.snapshot_every
        return stage is not Stage.TEACHER and bool(every) and step % every == 0

    def _snapshot(self, stage: Stage, step: int, epoch: int) -> None:
        if not self.dist.is_main:                      # snapshots are run-folder records: rank 0's
            return
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
        counts = torch.zeros(2, dtype=torch.long, device=self.device)     # correct, images
        try:
            for batch in self.data.test_loader(self.config.batch_size * 2, device=self.device, **self._shard):
                self._control.checkpoint()
                images = to_channels_last(batch.images) if self.config.channels_last else batch.images
                with self._autocast():
                    counts[0] += (model(images).argmax(1) == batch.labels).sum()
                counts[1] += len(batch.labels)
        finally:
            model.train(was_training)
        correct, count = self.dist.sum(counts).tolist()        # this rank's share of the test split, summed
        return 100.0 * correct / max(count, 1)

    def _autocast(self):
        return self._amp.autocast()

    # ---- checkpoints and resuming ------------------------------------------------------------------
    def _fingerprint(self) -> str:
        """What must not change between a checkpoint and its resume: the run file, less the output
        folder and the checkpoint settings (which change no number)."""
        same = dataclasses.replace(self.config, output_dir="", checkpoint=CheckpointConfig())
        return hashlib.sha256(config_to_toml(same).encode("utf-8")).hexdigest()

    def _timed_checkpoint_due(self) -> bool:
        minutes = self.config.checkpoint.every_minutes
        return minutes > 0 and time.monotonic() - self._last_checkpoint >= 60.0 * minutes

    def _best_so_far(self, planned: PlannedStage, test_acc: float) -> bool:
        """Whether the epoch just ended is the best (test accuracy) of the run's last stage so far."""
        if planned is not self.stages[-1]:
            return False
        earlier = [h["test_acc"] for h in self.state.history[:-1] if h["stage"] == str(planned.stage)]
        return not earlier or test_acc > max(earlier)

    def _checkpoint(self, reason: str, best: bool = False) -> bool:
        """Write the run state as the last checkpoint (and the best); False when the models hold
        non-finite values, so that the last good checkpoint stays."""
        state = self.state
        for module in (state.student, state.teacher, state.terms):
            if module is not None and nonfinite_names(module):
                return False
        if self.dist.is_main:                  # every rank holds the same state; rank 0 writes it
            save_checkpoint(self.run_dir, state.state_dict(), reason=reason, fingerprint=self._fingerprint(), best=best)
        self._last_checkpoint = time.monotonic()
        stage = self._stage_at(state.stage_index)
        self.emit(Checkpointed(CHECKPOINT_LAST, reason, stage, state.epoch, state.batch, state.step, best))
        return True

    def _stage_at(self, index: int) -> Stage:
        return self.stages[min(index, len(self.stages) - 1)].stage if self.stages else Stage.STUDENT

    def _restore(self) -> None:
        """Load the last checkpoint into the run state (none: start over in the same folder)."""
        path = self.run_dir / CHECKPOINT_LAST
        state = self.state
        if not path.exists():
            self.emit(Resumed(self._stage_at(0), 0, 0, 0, "", str(self.run_dir)))
            return
        payload = read_checkpoint(path)
        if payload.get("fingerprint") != self._fingerprint():
            raise CheckpointError(f"{self.run_dir / 'run.toml'} was changed after checkpoint {path} was written; "
                                  "a checkpoint resumes only the run that wrote it")
        try:
            state.load_state_dict(payload["state"], lambda: self._stage_objects(self.stages[state.stage_index]),
                                  self.device)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this run: {_one_line(exc)}") from None
        stage, step = self._stage_at(state.stage_index), state.step
        if state.stage_index >= len(self.stages):            # every stage was done
            step = self.stages[-1].epochs * len(self.loader) if self.stages else 0
        self.emit(Resumed(stage, state.epoch, state.batch, step, CHECKPOINT_LAST, str(self.run_dir)))

    # ---- what the folder keeps -------------------------------------------------------------------
    def _save_model(self, role: str) -> None:
        """Save the teacher or the student as a result, if this run trained it and it is finite."""
        model = self.teacher if role == "teacher" else self.student
        name = MODEL_FILES[role]
        if model is None or not self.state.trained.get(role):
            self._not_saved[name] = f"not written: this run did not train the {role}"
            return
        bad = nonfinite_names(model)
        if bad:
            self._not_saved[name] = f"not written: the {role}'s values are not finite ({bad[0]} …)"
            return
        if self.dist.is_main:
            save_weights(model, self.run_dir / name)
        self._not_saved.pop(name, None)

    def _save_models(self) -> None:
        if self.state is None:
            return
        if self.config.trains_teacher:
            self._save_model("teacher")
        self._save_model("student")
        terms = self.distiller.term_losses
        if (self.dist.is_main and self.state.trained.get("student") and len(list(terms.parameters()))
                and not nonfinite_names(terms)):
            save_weights(terms, self.run_dir / ADAPTERS_FILE)

    def _save_after_stop(self) -> None:
        if self._between_steps:                 # (a stop during a term's preparation keeps the last checkpoint)
            self._checkpoint("stop")
        self._save_models()

    def _fail(self, exc: BaseException) -> Failed:
        """The Failed event of ``exc``, after saving what can be saved; never raises."""
        details = traceback.format_exc()
        also = []
        if self.state is not None and self._between_steps and not isinstance(exc, (NonFiniteError, CheckpointError)):
            try:
                self._checkpoint("failure")
            except Exception as error:  # noqa: BLE001 - the first error is the one reported
                also.append(f"the checkpoint could not be written either: {error}")
        try:
            self._save_models()
        except Exception as error:  # noqa: BLE001
            also.append(f"the models could not be saved either: {error}")
        if also:
            details += "\n" + "\n".join(also)
        problems = tuple(tuple(p) for p in exc.problems) if isinstance(exc, ConfigError) else ()
        return Failed(error=self.dist.describe(exc, _one_line(exc)), kind=type(exc).__name__,   # (a rank lost: said so)
                      run_dir=str(self.run_dir), details=details,
                      field=getattr(exc, "field", "") or "", problems=problems, where=self.where(),
                      holds=self._holdings())

    def where(self) -> str:
        """Where the run is, in words: ``student stage, epoch 2 of 8, step 13``."""
        state = self.state
        if state is None:
            return "before training (loading the data)"
        return self._position({"stage_index": state.stage_index, "epoch": state.epoch, "step": state.step})

    def _position(self, position: dict) -> str:
        index, epoch, step = position["stage_index"], position["epoch"], position["step"]
        if index >= len(self.stages):
            return "the end of the last stage"
        planned = self.stages[index]
        if epoch >= planned.epochs:
            return f"the end of the {planned.stage} stage ({planned.epochs} epochs, step {step})"
        return f"{planned.stage} stage, epoch {epoch + 1} of {planned.epochs}, step {step}"

    def _holdings(self) -> tuple[tuple[str, str], ...]:
        """(file, what it holds) for the run folder's results, for error.txt and the window."""
        items = []
        summary = checkpoint_summary(self.run_dir / CHECKPOINT_LAST)
        if summary is not None:
            items.append((CHECKPOINT_LAST, f"the run state at {self._position(summary)}; featdistill train "
                                           f"--resume {self.run_dir} continues from there"))
        else:
            items.append((CHECKPOINT_LAST, "not written: no checkpoint was reached; a resume starts over"))
        if (self.run_dir / CHECKPOINT_BEST).exists():
            items.append((CHECKPOINT_BEST, "the run state at the end of its best epoch so far"))
        teacher_done = (self.state is not None and self.stages and self.stages[0].stage is Stage.TEACHER
                        and self.state.stage_index > 0)
        for name in (TEACHER_FILE, STUDENT_FILE, ADAPTERS_FILE):
            if name in self._not_saved:
                items.append((name, self._not_saved[name]))
            elif (self.run_dir / name).exists():
                complete = name == TEACHER_FILE and teacher_done
                items.append((name, f"the teacher after all {self.stages[0].epochs} epochs of its stage" if complete
                              else "as trained when the run ended (not the result of a finished run)"))
        return tuple(items)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{text[0] if text else type(exc).__name__}"
