"""Cost of one distillation term per step: forward + backward + ``after_step``, on random tensors.

The terms of PKT, RKD, CC and CRD on embeddings (teacher 64, student 32 wide), SP and VID on 8×8 maps
(64 and 32 channels), at batch 64; CRD at the demo's 4000 training images (its K = 16384 capped at
3999) and at CIFAR's 50000 (K = 16384). Methods are interleaved in rounds so that drift in machine load
hits all of them; the median over rounds is printed.

    python benchmarks/bench_relational_terms.py [--rounds 9] [--threads 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from featdistill_core.losses import BuildContext, StepContext, TrainingProgress, build_term

EMBEDDING = ((64,), (32,))
MAPS = ((64, 8, 8), (32, 8, 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cases = {key: (key, shapes, 0) for key, shapes in
             (("pkt", EMBEDDING), ("rkd", EMBEDDING), ("cc", EMBEDDING), ("sp", MAPS), ("vid", MAPS))}
    cases["crd N=4000"] = ("crd", EMBEDDING, 4000)
    cases["crd N=50000"] = ("crd", EMBEDDING, 50000)
    terms = {
        name: (build_term(BuildContext(method=key, options={}, teacher_shapes=[t], student_shapes=[s],
                                       dataset_size=n)), (t, s), max(n, args.batch))
        for name, (key, (t, s), n) in cases.items()
    }
    progress = TrainingProgress("student", 1, 1, 1, 1, 1)
    times: dict[str, list[float]] = {name: [] for name in terms}
    for _ in range(args.rounds + 1):                    # the first round warms up
        for name, (term, (t_shape, s_shape), n) in terms.items():
            student = torch.randn(args.batch, *s_shape, requires_grad=True)
            teacher = torch.randn(args.batch, *t_shape)
            step = StepContext((student,), (teacher,), torch.zeros(args.batch, 10), None,
                               torch.zeros(args.batch), torch.randperm(n)[:args.batch], progress)
            start = time.perf_counter()
            term(step).backward()
            term.after_step(step)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        values = sorted(values[1:])
        print(f"{name:12s} median {1000 * values[len(values) // 2]:7.1f} ms/step  "
              f"(min {1000 * values[0]:.1f}, max {1000 * values[-1]:.1f})")


if __name__ == "__main__":
    main()
