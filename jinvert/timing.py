"""Timing compiled JAX calls: compilation apart from the calls, each call blocked until ready."""

import time

import jax


def time_compiled(jitted, args, repeats: int = 1, warmup: bool = False):
  """Compiles `jitted` for `args` (`lower().compile()`), then times `repeats` calls.

  Args:
    jitted: a `jax.jit`-wrapped function.
    args: its positional arguments.
    repeats: timed calls.
    warmup: make one untimed call first.

  Returns:
    (the last call's result, compile seconds, [seconds of each timed call]).
  """
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_seconds = time.perf_counter() - t0
  if warmup:
    jax.block_until_ready(compiled(*args))
  result, times = None, []
  for _ in range(repeats):
    t = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
  return result, compile_seconds, times
