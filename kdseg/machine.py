"""What machine a measurement ran on: CPU model, cores and the vector instruction sets that
decide TensorFlow's and PyTorch's CPU kernels (AVX2, AVX-512, bf16, AMX)."""
from __future__ import annotations

import os
import platform

FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def describe() -> dict:
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as handle:
      for line in handle:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("", platform.machine()):
          model = value.strip()
        elif key.strip() == "flags" and not flags:
          flags = set(value.split())
  except OSError:
    pass
  return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(),
          "instruction_sets": [name for name in FEATURES if name in flags]}
