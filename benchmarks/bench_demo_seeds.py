"""The embedded demo over several seeds: does distillation beat the undistilled student, and how long does it take?

For each seed this runs exactly what ``featdistill demo --seed N`` runs (:func:`featdistill_core.demo.run_demo`
on :func:`featdistill_core.demo.demo_config`: train the teacher, distil the student with attention
transfer + a FitNets hint, train the same student alone), in this process, into a temporary folder
that is removed afterwards. It prints per seed the teacher's, the distilled student's and the
baseline student's test accuracy, the gain and the wall time of the whole demo, then the mean gain.

    python benchmarks/bench_demo_seeds.py [--seeds 0,1,2] [--threads N] [--keep DIR]

The demo's target: a mean gain of at least 2 points over seeds 0, 1, 2 and one demo run (teacher +
distilled + baseline) in well under 3 minutes on a 2-core CPU. Wall times depend on what else the
machine is running, so the load average is printed before and after each seed. Like
``featdistill demo``, it runs PyTorch with one intra-op thread unless ``OMP_NUM_THREADS`` is set
(on a 2-core machine shared with other work, two spin-waiting threads can be several times slower);
``--threads N`` overrides it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featdistill_core.demo import demo_config, run_demo  # noqa: E402


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:                      # not available on Windows
        return "n/a"


def default_threads() -> int:
    """The thread count ``featdistill demo`` uses: 1, unless ``OMP_NUM_THREADS`` is set."""
    return torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else 1


def machine_info(threads: int) -> str:
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{platform.system()} {platform.release()}, python {platform.python_version()}, "
            f"torch {torch.__version__}, {threads} intra-op thread(s)")


def describe_demo() -> str:
    config = demo_config()
    pairs = ", ".join(f"{p.name} x{p.weight:g}" for p in config.pairs)
    kd = f", KD x{config.kd.weight:g}" if config.kd.weight > 0 else ""
    return (f"demo: {config.teacher.arch} {config.teacher.train_epochs} epochs -> {config.student.arch} "
            f"{config.epochs} epochs; {config.data.demo_train} train / {config.data.demo_test} test images, "
            f"augment={config.data.augment}, batch {config.batch_size}, {config.optim.name} lr {config.optim.lr:g} "
            f"{config.optim.schedule}; pairs: {pairs}{kd}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="PyTorch intra-op threads (default: 1 as in `featdistill demo`, "
                             "or PyTorch's choice when OMP_NUM_THREADS is set)")
    parser.add_argument("--keep", default="", help="write the run folders here and keep them")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated whole numbers; got {args.seeds!r}")
    if not seeds or any(s < 0 for s in seeds):
        parser.error(f"--seeds needs at least one seed >= 0; got {args.seeds!r}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1; got {args.threads}")
    torch.set_num_threads(args.threads)

    print(machine_info(args.threads))
    print(describe_demo())
    print()
    header = f"{'seed':>4s} {'teacher':>8s} {'distilled':>10s} {'baseline':>9s} {'gain':>7s} {'wall s':>7s}   load average before -> after"
    print(header)
    print("-" * len(header))

    output = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="featdistill-demo-seeds-"))
    gains, times = [], []
    try:
        for seed in seeds:
            before = load_average()
            started = time.perf_counter()
            result = run_demo(seed=seed, output_dir=str(output / f"seed{seed}"))
            elapsed = time.perf_counter() - started
            gains.append(result.gain)
            times.append(elapsed)
            print(f"{seed:4d} {result.teacher_acc:7.2f}% {result.distilled_acc:9.2f}% {result.baseline_acc:8.2f}% "
                  f"{result.gain:+7.2f} {elapsed:7.1f}   {before} -> {load_average()}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(output, ignore_errors=True)

    print("-" * len(header))
    positive = sum(g > 0 for g in gains)
    print(f"mean gain {statistics.mean(gains):+.2f} points over {len(gains)} seed(s) "
          f"(min {min(gains):+.2f}, {positive}/{len(gains)} positive); "
          f"wall time per demo: mean {statistics.mean(times):.1f} s, max {max(times):.1f} s")


if __name__ == "__main__":
    main()
