"""The GPU benchmark refuses at once, with one clear line, on a machine without CUDA."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_bench_gpu_fails_fast_without_cuda():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and "--cpu-smoke" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
