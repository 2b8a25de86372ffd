"""One CPU device per core: how the command line keeps every core of a small host busy.

XLA:CPU runs one device's program on its own thread pool, and on a 2-core host that leaves part
of an inversion step (small products, the elementwise kernels) on one core. Given one device per
core, the engine splits its lanes over them (`engine.lane_sharding`): each device runs its share
of the targets on its own thread, with the same results to rounding (what it gains:
experiments/BENCHMARKS.md).

The device count can only be chosen before JAX starts its backends, so it is the program's
choice: `jinvert`'s command line makes it; a program of your own calls `use_every_core()` (or
`jax.config.update("jax_num_cpu_devices", n)`) before its first JAX operation.
"""

import os
import re

import jax

_FORCED_COUNT = re.compile(r"--xla_force_host_platform_device_count\b")


def cores() -> int:
  """CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def use_every_core() -> int | None:
  """Asks JAX for one CPU device per core, unless a count was chosen already.

  Left as it is when `JAX_NUM_CPU_DEVICES` or XLA_FLAGS' `--xla_force_host_platform_device_count`
  is set (so `JAX_NUM_CPU_DEVICES=1` keeps one device), or when JAX's backends have started.

  Returns:
    The device count set, or None when nothing was changed.
  """
  if "JAX_NUM_CPU_DEVICES" in os.environ or _FORCED_COUNT.search(os.environ.get("XLA_FLAGS", "")):
    return None
  n = cores()
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:  # backends already started: the count is fixed for this process
    return None
  return n
