"""``--precision``: fp32, or bf16 autocast where the hardware runs bf16 matrix products faster.

A GPU that supports bf16 does, so ``auto`` takes bf16 there. On a CPU, bf16 is fast only with bf16 dot-product
instructions (AVX512-BF16) or AMX tiles (``cpu_has_fast_bf16``), and even there it depends on the sizes: at
d_model 256 trilogy's training steps ran 1.5-1.8x faster in bf16 (``python benchmarks/train.py``), at d_model
128 no faster than fp32 on an AMX Xeon. So on a CPU ``trilogy train --precision auto`` keeps fp32 (pass
``--precision bf16`` for wide models on such CPUs), and ``trilogy demo`` times both and trains in the faster
(``demo/run.py``). A CPU without those instructions (AVX2 only) emulates bf16 many times slower.

Training on a CPU flushes denormal floats to zero (``denormals_flushed``), as TensorFlow does by default: values
in the denormal range (below 1.2e-38 in fp32) are handled in microcode, many times slower. In bf16 they made
the training steps of small models many times slower after their first few on an AMX Xeon; in fp32 they made
T5's fine-tuning from its denoising weights 1.3x slower (and slower as it went on). The setting belongs to a
thread, and torch's worker threads copy it from the main thread when they start: ``trilogy train`` and
``trilogy demo`` set it before any parallel work, so that every worker flushes; the training loop sets it
again for whoever calls it from Python (where, in a process that already ran parallel work, only the main
thread's share is flushed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from ..errors import TrilogyError

PRECISIONS = ("auto", "fp32", "bf16")
_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names, where torch cannot tell


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16) or AMX tiles."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # torch.cpu's, in recent releases
        if getattr(torch.cpu, probe, lambda: False)():
            return True
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.is_file() else []
    return any(flag in flags for flag in _CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16" for ``precision`` ("auto", "fp32" or "bf16") on ``device``: "auto" is bf16 on a GPU
    that supports it, else fp32."""
    if precision not in PRECISIONS:
        raise TrilogyError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[None]:
    """While active (and ``enabled``), denormal floats are flushed to zero on the CPU; afterwards they are kept
    again, torch's default."""
    if not enabled or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
