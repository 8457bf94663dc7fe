"""Peak memory while a unit trains, measured: on a GPU the CUDA allocator's peak, on Linux CPUs the process's
peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``); elsewhere nothing is claimed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def describe(device: torch.device) -> str:
    return "peak CUDA memory allocated" if device.type == "cuda" else "peak resident memory of the process"


def peak_from_now(device: torch.device) -> Callable[[], int | None]:
    """Reset the peak and return a function that reads it later: bytes at the peak since now, or None where
    the peak cannot be reset and read."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return lambda: int(torch.cuda.max_memory_allocated(device))
    try:
        CLEAR_REFS.write_text("5")  # Linux >= 4.0: the peak RSS starts again from the current RSS
    except OSError:
        return lambda: None
    return _peak_rss


def _peak_rss() -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
