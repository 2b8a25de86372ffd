"""Timing compiled JAX calls: compilation apart from the calls, each call blocked until ready."""

import time

import jax


def compile_timed(jitted, args):
  """Compiles `jitted` for `args` (`lower().compile()`); returns (executable, seconds)."""
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


def time_calls(compiled, args, repeats: int = 1, warmup: bool = False):
  """Times `repeats` calls of `compiled(*args)`, after one untimed call if `warmup`.

  Returns:
    (the last call's result, [seconds of each timed call]).
  """
  if warmup:
    jax.block_until_ready(compiled(*args))
  result, times = None, []
  for _ in range(repeats):
    t = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
  return result, times


def time_compiled(jitted, args, repeats: int = 1, warmup: bool = False):
  """Compiles `jitted` for `args`, then times `repeats` calls (`compile_timed`, `time_calls`).

  Args:
    jitted: a `jax.jit`-wrapped function.
    args: its positional arguments.
    repeats: timed calls.
    warmup: make one untimed call first.

  Returns:
    (the last call's result, compile seconds, [seconds of each timed call]).
  """
  compiled, compile_seconds = compile_timed(jitted, args)
  result, times = time_calls(compiled, args, repeats, warmup)
  return result, compile_seconds, times
