"""Which devices exist, and what ``device = "auto"`` means (CUDA, then MPS, then CPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


class DeviceError(ValueError):
    """A device that was asked for but is not present."""


@dataclass(frozen=True)
class DeviceOption:
    spec: str        # what goes in the run file: "auto", "cpu", "cuda:0", "mps"
    label: str       # for people: "CUDA 0 — NVIDIA H100"
    available: bool


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[DeviceOption]:
    """Every device choice, with ``available`` False for those this machine lacks."""
    options = [DeviceOption("auto", f"auto ({resolve_device('auto')})", True)]
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_count:
        for i in range(cuda_count):
            options.append(DeviceOption(f"cuda:{i}", f"CUDA {i} — {torch.cuda.get_device_name(i)}", True))
    else:
        options.append(DeviceOption("cuda", "CUDA (no CUDA GPU found)", False))
    options.append(DeviceOption("mps", "Apple MPS" if _mps_available() else "Apple MPS (not available)",
                                _mps_available()))
    options.append(DeviceOption("cpu", "CPU", True))
    return options


def resolve_device(spec: str) -> torch.device:
    """Turn a run file's ``device`` into a torch device, refusing one that is not present."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise DeviceError("device: 'mps' is not available on this machine; use 'auto' or 'cpu'")
        return torch.device("mps")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device: {spec!r} asked for, but this torch sees no CUDA GPU; use 'auto' or 'cpu'")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device: {spec!r} does not exist; this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", index)
    raise DeviceError(f"device: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {spec!r}")
