"""Library distillation step vs a hand-written minimal PyTorch loop doing the same computation.

resnet32x4 teacher -> resnet8x4 student, attention transfer on the three stages (β = 1000 each)
plus KD (T = 4), cross-entropy, SGD with momentum, batch 64, float32 unless ``--amp``.

How it is timed (both sides the same way):

* The library side is the real :class:`featdistill_core.trainer.Trainer` running a run file
  (``log_every`` 10 as the run-file default, the run folder written as usual), on its own thread.
  The hand-written side is the loop a person would write (three forward hooks, the AT and KD formulas
  inline, an optimizer step, ``loss.item()``), on another thread.
* Each side stops at a gate at the top of every step (the trainer's yield point,
  ``RunControl.checkpoint``, which it calls once per step after fetching the batch; the same place in
  the hand-written loop). The main thread opens one gate, waits until that side is back at it
  (``torch.cuda.synchronize()`` first on a GPU) and reads the wall clock: one step, everything in it
  (data, forward, backward, optimizer, bookkeeping, events, run-folder writes). Steps alternate
  L H H L L H ..., so drift in machine load hits both sides alike, and each pair gives one ratio.
* Reported: each side's median ms/step, the median of the per-pair ratios library / hand-written
  with its quartiles and min/max, and the ratio of total times (which also counts the steps that
  emit an event). Target: median ratio ≤ 1.02.

``--amp``, ``--channels-last`` and ``--compile MODE`` set the run-file options ``mixed_precision``,
``channels_last`` and ``compile`` where they exist. Whether each took effect in the library is
*observed* (the dtype of the student's logits, the memory layout of its weights and input, whether
the student is a compiled module), and the hand-written side does exactly what the library did, so
the comparison stays like for like; the report says which options the trainer does not use yet.

    python benchmarks/bench_step.py [--steps 30] [--warmup 3] [--threads N] [--device cpu|cuda]
                                    [--batch 64] [--amp] [--channels-last] [--compile default]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featdistill_core.config import (  # noqa: E402
    DataConfig, KDConfig, MonitorConfig, OptimConfig, PairConfig, RunConfig, StudentConfig, TeacherConfig, checked,
)
from featdistill_core.control import StopRequested  # noqa: E402
from featdistill_core.data import load_dataset  # noqa: E402
from featdistill_core.events import StageStarted  # noqa: E402
from featdistill_core.models import create_model, load_weights, save_weights  # noqa: E402
from featdistill_core.trainer import Trainer  # noqa: E402

STAGES = ["layer1", "layer2", "layer3"]
TEACHER, STUDENT = "resnet32x4", "resnet8x4"


@dataclass
class Options:
    device: str = "cpu"
    batch: int = 64
    steps: int = 30            # timed pairs (one library step and one hand-written step each)
    warmup: int = 3            # untimed pairs first
    amp: bool = False
    channels_last: bool = False
    compile: str = "off"
    log_every: int = 10


@dataclass
class Result:
    options: Options
    library: list[float]
    hand: list[float]
    effects: dict[str, bool]                    # which asked-for options took effect in the library
    ignored: list[str] = field(default_factory=list)   # asked for, but the trainer does not use it yet

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.library, self.hand)]

    def summary(self) -> dict:
        ratios = sorted(self.ratios)
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        lib, hand = statistics.median(self.library), statistics.median(self.hand)
        return dict(
            library_ms=lib * 1e3, hand_ms=hand * 1e3, ratio=statistics.median(ratios), q1=q[0], q3=q[2],
            min=ratios[0], max=ratios[-1], total_ratio=sum(self.library) / sum(self.hand),
            library_ips=self.options.batch / lib, hand_ips=self.options.batch / hand,
        )


class Gate:
    """Lets a thread run one step at a time: it calls :meth:`wait` at the top of each step."""

    def __init__(self) -> None:
        self.armed = False
        self._go = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self.error: BaseException | None = None

    def wait(self) -> None:                      # on the stepped thread
        if self.armed:
            self._back.release()
            self._go.acquire()

    def first(self, timeout: float = 600.0) -> None:
        """Wait for the thread to reach its first gated step (untimed)."""
        if not self._back.acquire(timeout=timeout):
            raise RuntimeError("the stepped side never reached its first step")

    def step(self, sync: Callable[[], None]) -> float:
        """Run one step; its wall-clock seconds."""
        start = time.perf_counter()
        self._go.release()
        if not self._back.acquire(timeout=600.0):
            raise RuntimeError(f"a step did not come back within 600 s ({self.error!r})")
        sync()
        return time.perf_counter() - start

    def release(self) -> None:
        self.armed = False
        self._go.release()


def library_config(options: Options, teacher_file: str, out: str) -> RunConfig:
    steps = options.warmup + options.steps + 4
    config = RunConfig(
        name="bench", seed=0, device=options.device, epochs=1, batch_size=options.batch, output_dir=out,
        mixed_precision=options.amp,
        teacher=TeacherConfig(arch=TEACHER, weights=teacher_file),
        student=StudentConfig(arch=STUDENT),
        data=DataConfig(name="demo", demo_train=options.batch * steps, demo_test=10, augment=True),
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="constant"),
        kd=KDConfig(weight=1.0, temperature=4.0),
        monitor=MonitorConfig(log_every=options.log_every, snapshot_every=0, probe_images=1),
        pairs=[PairConfig("at", [s], [s], 1000.0, "student", {"p": 2, "normalize": "l2"}) for s in STAGES],
    )
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    if "channels_last" in fields:
        config.channels_last = options.channels_last
    if "compile" in fields:
        config.compile = options.compile
    return checked(config)


class LibrarySide:
    """The real trainer on a thread, gated at its yield point (RunControl.checkpoint, once per step)."""

    def __init__(self, options: Options, teacher_file: str, out: str) -> None:
        self.gate = Gate()
        self.trainer = Trainer(library_config(options, teacher_file, out))
        control = self.trainer._control
        original = control.checkpoint

        def checkpoint():
            self.gate.wait()
            original()

        control.checkpoint = checkpoint
        self.trainer.subscribe(self._on_event)
        self.seen: dict[str, object] = {}
        self.thread = threading.Thread(target=self._run, name="library", daemon=True)

    def _on_event(self, event) -> None:
        if isinstance(event, StageStarted) and event.stage == "student":
            self.gate.armed = True              # the teacher's evaluation before it is not timed
            student = self.trainer.student
            student.register_forward_pre_hook(self._look_at_input)
            student.register_forward_hook(self._look_at_output)

    def _look_at_input(self, module, inputs) -> None:
        self.seen["input_channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)

    def _look_at_output(self, module, inputs, output) -> None:
        self.seen["logits_dtype"] = output.dtype

    def _run(self) -> None:
        try:
            self.trainer.run()
        except StopRequested:
            pass
        except BaseException as exc:            # noqa: BLE001 - reported by the main thread
            self.gate.error = exc
            self.gate._back.release()

    def start(self) -> None:
        self.thread.start()
        self.gate.first()

    def effects(self) -> dict[str, object]:
        student = self.trainer.distiller.student
        plain = getattr(student, "_orig_mod", student)
        return {
            "amp_dtype": self.seen.get("logits_dtype") if self.seen.get("logits_dtype") != torch.float32 else None,
            "channels_last": bool(plain.conv1.weight.is_contiguous(memory_format=torch.channels_last)
                                  and self.seen.get("input_channels_last")),
            "compile": type(student).__name__ == "OptimizedModule",
        }

    def stop(self) -> None:
        self.trainer.request_stop()
        self.gate.release()
        self.thread.join(timeout=120)


class HandSide:
    """The loop a person would write, doing what the library did (``effects``), gated the same way."""

    def __init__(self, options: Options, teacher_file: str, effects: dict) -> None:
        self.gate = Gate()
        self.gate.armed = True
        self.options, self.effects = options, effects
        self.teacher_file = teacher_file
        self.stop_requested = False
        self.thread = threading.Thread(target=self._run, name="hand", daemon=True)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:            # noqa: BLE001
            self.gate.error = exc
            self.gate._back.release()

    def _loop(self) -> None:
        o, device = self.options, torch.device(self.options.device)
        torch.manual_seed(0)
        student = create_model(STUDENT, 10)
        teacher = create_model(TEACHER, 10)
        load_weights(teacher, self.teacher_file)
        teacher.eval().requires_grad_(False)
        student, teacher = student.to(device), teacher.to(device)
        channels_last = self.effects["channels_last"]
        if channels_last:
            student = student.to(memory_format=torch.channels_last)
            teacher = teacher.to(memory_format=torch.channels_last)
        feats_s, feats_t = {}, {}
        for name in STAGES:
            student.get_submodule(name).register_forward_hook(lambda m, i, out, n=name: feats_s.__setitem__(n, out))
            teacher.get_submodule(name).register_forward_hook(lambda m, i, out, n=name: feats_t.__setitem__(n, out))
        run_student, run_teacher = student, teacher
        if self.effects["compile"]:
            run_student, run_teacher = torch.compile(student, mode=None if o.compile == "default" else o.compile), \
                torch.compile(teacher, mode=None if o.compile == "default" else o.compile)
        steps = o.warmup + o.steps + 4
        data = load_dataset("demo", demo_train=o.batch * steps, demo_test=10, seed=0)
        loader = data.train_loader(o.batch, augment=True, seed=0, device=device)
        amp_dtype = self.effects["amp_dtype"]
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

        def at(f):
            return F.normalize(f.float().pow(2).mean(1).flatten(1))

        optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        student.train()
        epoch = 0
        while True:
            for images, labels, _ in loader.epoch_batches(epoch):
                self.gate.wait()
                if self.stop_requested:
                    return
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                    with torch.no_grad():
                        t_logits = run_teacher(images)
                    s_logits = run_student(images)
                    loss = F.cross_entropy(s_logits, labels)
                    loss = loss + F.kl_div(F.log_softmax(s_logits.float() / 4, 1), F.softmax(t_logits.float() / 4, 1),
                                           reduction="batchmean") * 16
                    for name in STAGES:
                        loss = loss + 1000.0 * (at(feats_s[name]) - at(feats_t[name])).pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss.item()
            epoch += 1

    def start(self) -> None:
        self.thread.start()
        self.gate.first()

    def stop(self) -> None:
        self.stop_requested = True
        self.gate.release()
        self.thread.join(timeout=120)


def teacher_weights(out: str) -> str:
    path = str(Path(out) / "teacher.safetensors")
    if not Path(path).exists():
        torch.manual_seed(1)
        save_weights(create_model(TEACHER, 10), path)
    return path


def measure(options: Options, out: str | None = None) -> Result:
    """Time ``options.steps`` interleaved pairs of steps (after ``options.warmup`` pairs)."""
    out = out or tempfile.mkdtemp(prefix="featdistill-bench-")
    teacher_file = teacher_weights(out)
    cuda = torch.device(options.device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    library = LibrarySide(options, teacher_file, out)
    library.start()
    library.gate.step(sync)                    # one library step shows which options took effect
    effects = library.effects()
    hand = HandSide(options, teacher_file, effects)
    hand.start()
    asked = {"amp_dtype": options.amp, "channels_last": options.channels_last, "compile": options.compile != "off"}
    ignored = [name for name, wanted in asked.items() if wanted and not effects[name]]
    lib_times, hand_times = [], []
    try:
        for i in range(options.warmup + options.steps):
            if i % 2 == 0:
                a, b = library.gate.step(sync), hand.gate.step(sync)
            else:
                b, a = hand.gate.step(sync), library.gate.step(sync)
            if i >= options.warmup:
                lib_times.append(a)
                hand_times.append(b)
    finally:
        library.stop()
        hand.stop()
    for side in (library, hand):
        if side.gate.error is not None:
            raise RuntimeError(f"{side.thread.name} side failed: {side.gate.error!r}") from side.gate.error
    return Result(options, lib_times, hand_times, effects, ignored)


def describe_machine(threads: int) -> str:
    try:
        load = "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "load average unknown"
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores{gpu}, {load}, "
            f"torch {torch.__version__}, {threads} threads, python {platform.python_version()}")


def print_result(result: Result) -> None:
    s = result.summary()
    print(f"library {s['library_ms']:8.1f} ms/step ({s['library_ips']:7.0f} images/s)   hand-written "
          f"{s['hand_ms']:8.1f} ms/step ({s['hand_ips']:7.0f} images/s)")
    print(f"ratio library / hand-written: median {s['ratio']:.3f} (quartiles {s['q1']:.3f}-{s['q3']:.3f}, "
          f"min {s['min']:.3f}, max {s['max']:.3f}, {len(result.ratios)} pairs); "
          f"total-time ratio {s['total_ratio']:.3f}   (target: median <= 1.02)")
    for name in result.ignored:
        print(f"note: {name} was asked for, but the trainer does not use that run-file option yet; "
              "both sides ran without it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed pairs of steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed pairs first")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--amp", action="store_true", help="mixed_precision = true")
    parser.add_argument("--channels-last", action="store_true", help="channels_last = true")
    parser.add_argument("--compile", default="off", help="compile = MODE (default, reduce-overhead, max-autotune)")
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_step: --device cuda asked for, but this torch sees no CUDA GPU")
    torch.set_num_threads(args.threads)
    options = Options(device=args.device, batch=args.batch, steps=args.steps, warmup=args.warmup, amp=args.amp,
                      channels_last=args.channels_last, compile=args.compile, log_every=args.log_every)
    print(describe_machine(args.threads))
    print(f"{TEACHER} -> {STUDENT}, AT on {', '.join(STAGES)} + KD + CE, batch {args.batch}, {args.device}, "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}, log_every {args.log_every}")
    print_result(measure(options))


if __name__ == "__main__":
    main()
