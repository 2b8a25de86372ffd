"""How much memory a compiled call needs, and how much there is: checked before anything runs.

XLA's own estimate (`compiled.memory_analysis()`: arguments, outputs and temporaries) is compared
with what the device has free: the GPU's `bytes_limit - bytes_in_use`, or on the CPU the kernel's
MemAvailable (capped by the cgroup's limit). `JINVERT_MEMORY_LIMIT` (e.g. `2G`, `500M`) caps it
further, for shared machines and for tests.

>>> parse_bytes("1.5G"), parse_bytes("500M")
(1610612736, 524288000)
>>> require(2 ** 31, 2 ** 30, "the results", "use fewer restarts")
Traceback (most recent call last):
...
jinvert.errors.JinvertError: the results would take about 2.00 GB, more than the 1.00 GB available; use fewer restarts
"""

import math
import os
import re
from pathlib import Path

import jax
import numpy as np

from jinvert.errors import JinvertError

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def parse_bytes(text: str) -> int:
  """`123`, `500M`, `2G`, `1.5T` (powers of 1024) -> bytes."""
  match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
  if not match:
    raise JinvertError(f"JINVERT_MEMORY_LIMIT: cannot read {text!r}; write e.g. 2G or 500M")
  return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _meminfo_available() -> int | None:
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _cgroup_available() -> int | None:
  try:
    limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    if limit == "max":
      return None
    return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
  except (OSError, ValueError):
    return None


def _cap(found: list) -> int | None:
  if os.environ.get("JINVERT_MEMORY_LIMIT"):
    found = found + [parse_bytes(os.environ["JINVERT_MEMORY_LIMIT"])]
  return min(found) if found else None


def host_available_bytes() -> int | None:
  """Bytes free in host memory (where results are gathered), or None when nothing says."""
  return _cap([b for b in (_meminfo_available(), _cgroup_available()) if b is not None])


def available_bytes(device=None) -> int | None:
  """Bytes free for one computation on `device` (default: the default device), or None when
  nothing says. A device without its own memory statistics (the CPU) uses host memory."""
  device = device or jax.local_devices()[0]  # this process's: another's are not readable
  stats = (device.memory_stats() if hasattr(device, "memory_stats") else None) or {}
  if stats.get("bytes_limit"):
    return _cap([stats["bytes_limit"] - stats.get("bytes_in_use", 0)])
  return host_available_bytes()


def tree_bytes(tree) -> int:
  """Bytes of every array (or ShapeDtypeStruct) in a pytree, in Python integers."""
  return sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree))


def compiled_bytes(compiled) -> int | None:
  """Bytes a compiled call needs (arguments, outputs and temporaries), if XLA says: one
  device's share, times the devices when they are CPU devices, which share the host's RAM."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  need = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
          - stats.alias_size_in_bytes)
  devices = {d for s in jax.tree.leaves(compiled.input_shardings) for d in s.device_set}
  return need * len(devices) if all(d.platform == "cpu" for d in devices) else need


def gigabytes(n: int) -> str:
  return f"{n / 2 ** 30:,.2f} GB" if n >= 2 ** 27 else f"{n / 2 ** 20:,.1f} MB"


def require(needed: int | None, available: int | None, what: str, hint: str):
  """Raises a JinvertError when `needed` bytes exceed `available` (either may be unknown)."""
  if needed is not None and available is not None and needed > available:
    raise JinvertError(f"{what} would take about {gigabytes(needed)}, more than the "
                       f"{gigabytes(max(available, 0))} available; {hint}")
