"""Which device fits: CUDA when asked for (or, under auto, when present), else the CPU.

The setting arrives by several names (`--device`, `CALIBRATION_DEVICE`, the `compute`
resource, a profile's `fit.device`); a refusal names the one the user set, and says what
this machine has instead of CUDA.
"""

from __future__ import annotations

import os
from typing import get_args

import torch

from pipeline.core.errors import InputError
from pipeline.fit.params import Device


def cuda_found() -> str:
    """What this process sees of CUDA, in words (for errors and metadata)."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (no CUDA support compiled in)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    count = torch.cuda.device_count()
    if count == 0:
        return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
                f"{where}")
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
    return f"{count} CUDA device(s): {names}{where}"


def resolve_device(device: str, setting: str = "device") -> torch.device:
    """The torch device for a device setting; `setting` names where it came from."""
    choices = get_args(Device)
    if device not in choices:
        raise InputError(None, setting, f"unknown device {device!r}",
                         f"use one of {list(choices)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, setting, f"CUDA requested but none was found: {cuda_found()}",
                         f"set {setting} to cpu (or auto, which takes CUDA only when "
                         "present), or run on a machine with an NVIDIA GPU and a CUDA build "
                         "of torch")
    return torch.device(device)


def describe(device: torch.device, threads: int | None = None) -> str:
    """The device a fit ran on, for its metadata: `cuda:0 (NVIDIA H100 ...)`, `cpu (2
    threads)`."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    n = threads or torch.get_num_threads()
    return f"cpu ({n} thread{'' if n == 1 else 's'})"
