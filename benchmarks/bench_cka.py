"""Time the CKA map, and show that its memory does not grow with the probe size.

For each network pair and probe size, a fresh subprocess computes ``cka_map`` (default layers
"blocks", batch 64, CPU, float32 forward passes, float64 CKA sums) on demo test images and reports
wall time, the same forward passes without any CKA (the floor), the layers compared and the
process's peak resident memory (ru_maxrss). Networks are
freshly initialised (no weights are downloaded): the time and memory do not depend on the weights.

    python benchmarks/bench_cka.py [--probes 128,512,2048] [--pairs demo_teacher:demo_student,resnet32x4:resnet8x4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from featdistill_core.analysis import cka_map
from featdistill_core.data import load_dataset
from featdistill_core.models import create_model
torch.manual_seed(0)
teacher, student = create_model({teacher!r}, 10), create_model({student!r}, 10)
data = load_dataset("demo", demo_train=16, demo_test={probe}, seed=0)
images, _, _ = data.probe_images({probe}, seed=0)
teacher.eval(); student.eval()
with torch.no_grad():                                  # the same forward passes without CKA, for comparison
    teacher(images[:64]); student(images[:64])         # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), 64):
        teacher(images[i:i + 64]); student(images[i:i + 64])
    forward = time.perf_counter() - start
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = cka_map(teacher, student, images, batch_size=64)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "forward": forward, "rows": len(result.teacher_layers),
                  "cols": len(result.student_layers), "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", default="128,512,2048")
    parser.add_argument("--pairs", default="demo_teacher:demo_student,resnet32x4:resnet8x4")
    parser.add_argument("--max-images", type=int, default=512, help="skip larger probes for resnet32x4 (slow on a CPU)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, {args.threads} threads")
    print(f"{'teacher -> student':28s} {'probe':>6s} {'layers':>7s} {'CKA map':>8s} {'forward only':>12s} {'peak RSS':>9s} {'growth':>8s}")
    for pair in args.pairs.split(","):
        teacher, student = pair.split(":")
        for probe in (int(p) for p in args.probes.split(",")):
            if teacher == "resnet32x4" and probe > args.max_images:
                continue
            code = _CHILD.format(root=str(ROOT), threads=args.threads, teacher=teacher, student=student, probe=probe)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{teacher + ' -> ' + student:28s} {probe:6d} {str(r['rows']) + '×' + str(r['cols']):>7s} "
                  f"{r['seconds']:7.2f}s {r['forward']:11.2f}s {r['peak_mb']:7.0f}MB {r['growth_mb']:6.0f}MB")


if __name__ == "__main__":
    main()
