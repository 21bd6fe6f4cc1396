"""GPU speed of a distillation step: library / hand-written ratio and images/s, resnet32x4 -> resnet8x4.

For batch 64 and 256, each with and without AMP (``mixed_precision``, ``amp_dtype = "auto"``: bfloat16
on Ampere and later, else float16 with a gradient scaler), with AMP also with ``channels_last``, and
each with and without ``torch.compile`` (``compile = "default"``), it runs :func:`bench_step.measure` (the real trainer
and a hand-written loop, interleaved step by step, both timed by wall clock after a CUDA
synchronise; see ``bench_step.py``) and prints one row per setting. An option the trainer does not
use yet is reported as such, and then both sides run without it.

    python benchmarks/bench_gpu.py                 # on a machine with a CUDA GPU (~3-6 minutes)
    python benchmarks/bench_gpu.py --quick         # fewer steps (~1-3 minutes)
    python benchmarks/bench_gpu.py --cpu-smoke     # the whole script on the CPU with tiny settings (a check, not a figure)

Without CUDA (and without ``--cpu-smoke``) it exits at once with status 2 and says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402


def settings(batches, amp_choices, compile_choices):
    """(batch, amp, channels_last, compile) rows: NHWC only with AMP, where tensor cores want it."""
    for batch in batches:
        for amp in amp_choices:
            for channels_last in ((False, True) if amp else (False,)):
                for mode in compile_choices:
                    yield batch, amp, channels_last, mode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="run end to end on the CPU with tiny settings")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--steps", type=int, default=None, help="timed pairs per setting")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile settings")
    args = parser.parse_args(argv)

    if args.cpu_smoke:
        device, batches, steps, warmup = "cpu", args.batches or [2], args.steps or 1, 1
        amp_choices = [False, True]  # bf16 autocast on the CPU: slow (emulated), but the path runs
    else:
        if not torch.cuda.is_available():
            print("bench_gpu: no CUDA GPU is visible to this torch "
                  f"({torch.__version__}); run it on a GPU machine, or use --cpu-smoke to check the script",
                  file=sys.stderr)
            return 2
        device, batches = "cuda", args.batches or [64, 256]
        steps, warmup = args.steps or (20 if args.quick else 60), 10
        amp_choices = [False, True]
        torch.backends.cudnn.benchmark = True
    compile_choices = ["off"] if args.no_compile else ["off", "default"]
    from bench_step import Options, describe_machine, measure     # the library, once CUDA is known to be there

    print(describe_machine(torch.get_num_threads()))
    print("resnet32x4 -> resnet8x4, AT x3 + KD + CE, SGD; per setting: median ms/step of each side, "
          "images/s, median ratio library / hand-written [quartiles] (min-max)")
    out = tempfile.mkdtemp(prefix="featdistill-gpu-bench-")
    header = f"{'batch':>5} {'amp':>5} {'nhwc':>5} {'compile':>8} | {'library':>16} {'hand':>16} | ratio"
    print(header)
    print("-" * len(header))
    notes = set()
    started = time.perf_counter()
    for batch, amp, channels_last, mode in settings(batches, amp_choices, compile_choices):
        row = f"{batch:>5} {str(amp):>5} {str(channels_last):>5} {mode:>8}"
        if (amp and "amp_dtype" in notes) or (mode != "off" and "compile" in notes) or (
                channels_last and "channels_last" in notes):
            print(f"{row} | skipped: the trainer does not use this option yet")
            continue
        compile_warmup = 1 if args.cpu_smoke else 5       # compiled steps before timing (the compiles)
        options = Options(device=device, batch=batch, steps=steps, warmup=warmup if mode == "off" else warmup + compile_warmup,
                          amp=amp, channels_last=channels_last, compile=mode)
        try:
            result = measure(options, out)
        except Exception as exc:      # noqa: BLE001 - one failing setting must not hide the others
            print(f"{row} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            continue
        s = result.summary()
        print(f"{row} | {s['library_ms']:6.2f} ms {s['library_ips']:6.0f}/s "
              f"{s['hand_ms']:6.2f} ms {s['hand_ips']:6.0f}/s | {s['ratio']:.3f} [{s['q1']:.3f}-{s['q3']:.3f}] "
              f"({s['min']:.3f}-{s['max']:.3f})", flush=True)
        notes.update(result.ignored)
    for name in sorted(notes):
        print(f"note: {name} was asked for, but the trainer does not use that run-file option yet; "
              "those rows ran without it on both sides")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
