"""Library distillation step vs a hand-written minimal PyTorch loop doing the same computation.

resnet32x4 teacher -> resnet8x4 student, attention transfer on the three stages (β = 1000 each)
plus KD (T = 4), cross-entropy, SGD with momentum, batch 64, CPU, float32. Both sides train on the
same batches from the same loader; they alternate in rounds so that drift in machine load hits both.

The library side is the real :class:`featdistill_core.trainer.Trainer` running a run file: per-step
time is taken from its own step events (``log_every = 1``: each event's images/s covers exactly one
step, including data loading, hooks, loss bookkeeping and event emission). The hand-written side is
the loop a person would write: three forward hooks, the AT and KD formulas inline, an optimizer step.

    python benchmarks/bench_step.py [--rounds 3] [--steps 12] [--warmup 2] [--threads N]

Prints per-round medians and the overall median ratio library / hand-written (target ≤ 1.05).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featdistill_core.config import (  # noqa: E402
    DataConfig, KDConfig, MonitorConfig, OptimConfig, PairConfig, RunConfig, StudentConfig, TeacherConfig, checked,
)
from featdistill_core.data import load_dataset  # noqa: E402
from featdistill_core.models import create_model, save_weights  # noqa: E402
from featdistill_core.trainer import Trainer  # noqa: E402
from featdistill_core.events import StepEvent  # noqa: E402

STAGES = ["layer1", "layer2", "layer3"]
BATCH = 64


def library_config(steps: int, teacher_file: str, out: str) -> RunConfig:
    return checked(RunConfig(
        name="bench", seed=0, device="cpu", epochs=1, batch_size=BATCH, output_dir=out,
        teacher=TeacherConfig(arch="resnet32x4", weights=teacher_file),
        student=StudentConfig(arch="resnet8x4"),
        data=DataConfig(name="demo", demo_train=BATCH * steps, demo_test=10, augment=True),
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="constant"),
        kd=KDConfig(weight=1.0, temperature=4.0),
        monitor=MonitorConfig(log_every=1, snapshot_every=0, probe_images=1),
        pairs=[PairConfig("at", [s], [s], 1000.0, "joint", {"p": 2, "normalize": "l2"}) for s in STAGES],
    ))


def library_round(steps: int, teacher_file: str, out: str) -> list[float]:
    times = []
    trainer = Trainer(library_config(steps, teacher_file, out))
    trainer.subscribe(lambda e: times.append(BATCH / e.images_per_sec) if isinstance(e, StepEvent) else None)
    trainer.run()
    return times


def hand_written_round(steps: int, teacher_file: str) -> list[float]:
    from featdistill_core.models import load_weights

    torch.manual_seed(0)
    student = create_model("resnet8x4", 10)
    teacher = create_model("resnet32x4", 10)
    load_weights(teacher, teacher_file)
    teacher.eval().requires_grad_(False)
    data = load_dataset("demo", demo_train=BATCH * steps, demo_test=10, seed=0)
    loader = data.train_loader(BATCH, augment=True, seed=0)

    feats_s, feats_t = {}, {}
    for name in STAGES:
        student.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: feats_s.__setitem__(n, o))
        teacher.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: feats_t.__setitem__(n, o))

    def at(f):
        return F.normalize(f.pow(2).mean(1).flatten(1))

    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    student.train()
    times = []
    start = time.perf_counter()
    for images, labels in loader:
        with torch.no_grad():
            t_logits = teacher(images)
        s_logits = student(images)
        loss = F.cross_entropy(s_logits, labels)
        loss = loss + F.kl_div(F.log_softmax(s_logits / 4, 1), F.softmax(t_logits / 4, 1), reduction="batchmean") * 16
        for name in STAGES:
            loss = loss + 1000.0 * (at(feats_s[name]) - at(feats_t[name])).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each round")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out = tempfile.mkdtemp(prefix="featdistill-bench-")
    teacher_file = str(Path(out) / "teacher.safetensors")
    save_weights(create_model("resnet32x4", 10), teacher_file)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} threads, python {platform.python_version()}")
    print(f"resnet32x4 -> resnet8x4, AT on {', '.join(STAGES)} + KD + CE, batch {BATCH}, CPU float32")
    lib_all, hand_all = [], []
    for r in range(args.rounds):
        order = (("library", library_round), ("hand", hand_written_round)) if r % 2 == 0 else \
                (("hand", hand_written_round), ("library", library_round))
        medians = {}
        for name, fn in order:
            times = fn(args.steps, teacher_file, out) if name == "library" else fn(args.steps, teacher_file)
            times = times[args.warmup:]
            (lib_all if name == "library" else hand_all).extend(times)
            medians[name] = statistics.median(times)
        print(f"round {r + 1}: library {medians['library'] * 1000:7.1f} ms/step   hand-written "
              f"{medians['hand'] * 1000:7.1f} ms/step   ratio {medians['library'] / medians['hand']:.3f}")
    lib, hand = statistics.median(lib_all), statistics.median(hand_all)
    print(f"overall median: library {lib * 1000:.1f} ms/step, hand-written {hand * 1000:.1f} ms/step, "
          f"ratio {lib / hand:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
