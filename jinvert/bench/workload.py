"""The benchmark's workload and how it is timed: the engine's call at each size, the square
matmul peak, the products bound, seed 003's Python loop, and interleaved rounds.

Workload: mnist-mlp (784-256-256-10), class-logit objective, box [0, 1] by projection, plain
SGD, T = 10 targets x R restarts x S steps, all in one compiled call. Work per image-step is
counted as 2 x MACs of the forward pass plus 2 x MACs of the backward pass to the input
(elementwise work is not counted): 4 x (784*256 + 256*256 + 256*10) = 1,075,200 FLOP.
"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinvert import engine, memory, models, objectives, parameterizations
from jinvert.timing import compile_timed, time_calls, time_compiled

PRECISIONS = {"highest": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}
LEARNING_RATE = 0.1


def dense_layers(params):
  p = params["params"]
  return [p[name] for name in sorted(k for k in p if k.startswith("dense")) + ["out"]]


def flops_per_image_step(params) -> int:
  """4 x MACs of the dense layers: forward plus backward to the input."""
  return 4 * sum(int(np.prod(layer["kernel"].shape)) for layer in dense_layers(params))


def workload(params, restarts: int, steps: int, devices=None):
  """(compiled-ready jitted fn, targets, keys) for the benchmark inversion; with several
  `devices`, the lanes split over them as `invert` splits them (`engine.lane_sharding`)."""
  module = models.get_model("mnist-mlp").module()
  run = jax.jit(engine.make_inversion(module.apply, objectives.class_logit(),
                                       optax.sgd(LEARNING_RATE), parameterizations.pixels(),
                                       steps, (28, 28), record_every=0))
  targets = jnp.arange(10)
  keys = engine.lane_keys(jax.random.key(0), 10, restarts,
                           engine.lane_sharding(10, restarts, devices) if devices else None)
  return run, targets, keys


def matmul_peak(n: int, repeats: int = 5) -> float:
  """GFLOP/s of the fastest of `repeats` n x n x n float32 matrix products under the current
  precision: a peak is the best the machine did, so a slow repeat on a shared host must not
  lower it (and flatter the fractions measured against it)."""
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
  _, _, times = time_compiled(jax.jit(jnp.matmul), (a, b), repeats, warmup=True)
  return 2 * n ** 3 / min(times) / 1e9


def python_loop(params, batch: int, steps: int, calls: int):
  """Seed 003's loop: one class at a time, a Python loop over steps, each step one compiled
  call that hands the loss and the gradient back as host arrays, and the update (here with the
  box's clip) done in numpy. Batch 1 is the seed's one image; batch R is one class at a time.

  Returns:
    (image-steps per pass, a function that runs `calls` such loops and returns its seconds).
  """
  module = models.get_model("mnist-mlp").module()
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda x, c: jnp.sum(module.apply(params, x)[:, c])))
  start = np.random.default_rng(0).random((calls, batch, 28, 28), dtype=np.float32)

  def run():
    t = time.perf_counter()
    for c in range(calls):
      x = start[c]
      for _ in range(steps):
        _loss, grads_val = jax.device_get(loss_and_grad(x, c % 10))
        x = np.clip(x + LEARNING_RATE * grads_val, 0.0, 1.0)
    return time.perf_counter() - t

  return calls * batch * steps, run


def product_shapes(params, batch: int) -> list:
  """The six matrix products of one step, as (m, k, n): the forward pass and the backward pass
  to the input, for a batch of `batch` images."""
  dims = [int(np.prod(dense_layers(params)[0]["kernel"].shape[:1]))] + \
      [int(l["kernel"].shape[1]) for l in dense_layers(params)]
  forward = [(batch, a, b) for a, b in zip(dims, dims[1:])]
  backward = [(batch, b, a) for a, b in reversed(list(zip(dims, dims[1:])))]
  return forward + backward


def products_seconds(params, batch: int, steps: int, devices=None) -> dict:
  """Seconds per step of the step's six products alone, at its exact shapes, in a loop of
  `steps` chained steps (each product reads the last, so none can be hoisted): with XLA (a
  compiled scan) on one device, and with its rows split over `devices` as the engine splits
  its lanes (when their count divides `batch` / 10).

  Returns:
    {"xla": s on one device, "xla_split": s split (None when not split)}.
  """
  layers = dense_layers(params)
  kernels = [jnp.asarray(l["kernel"]) for l in layers]
  x0 = jax.random.uniform(jax.random.key(0), (batch, kernels[0].shape[0]))
  sharding = engine.lane_sharding(10, batch // 10, devices) if devices else None

  def chain(x, _):
    h = x
    for w in kernels:
      h = h @ w
    for w in reversed(kernels):
      h = jax.lax.dot_general(h, w, (((1,), (1,)), ((), ())))
    return x + 1e-30 * h, None

  run = jax.jit(lambda x: jax.lax.scan(chain, x, None, length=steps)[0])
  per_step = lambda x: min(time_compiled(run, (x,), repeats=3, warmup=True)[2]) / steps
  seconds = {"xla": per_step(x0), "xla_split": None}
  if sharding is not None:  # rows are lanes in target-major order: split them alike
    seconds["xla_split"] = per_step(jax.device_put(x0, jax.sharding.NamedSharding(
        sharding.mesh, jax.sharding.PartitionSpec("lanes", None))))
  return seconds


def interleaved_rates(timers: dict, rounds: int):
  """Times every timer once per round, in turn, so that a shared machine's drifting speed
  touches all of them alike; each timed pass follows an untimed pass of its own.

  The untimed pass keeps one timer's leftovers out of the next one's time: one-time costs
  (compiling eager operations), and the worker threads a library leaves spinning after it
  returns. On 2 cores jinvert's R = 1 pass ran at 90,000 image-steps/s right after a torch
  pass and at 154,000 right after its own (`experiments/BENCHMARKS.md`).

  Args:
    timers: name -> (image-steps per pass, function running one pass and returning seconds);
      must hold "jinvert".
    rounds: timed passes per timer.

  Returns:
    (name -> median image-steps per second, name -> median over rounds of jinvert's rate over
    that timer's rate in the same round).
  """
  per_round = {name: [] for name in timers}
  for _ in range(rounds):
    for name, (work, run) in timers.items():
      run()
      per_round[name].append(work / run())
  rates = {name: statistics.median(r) for name, r in per_round.items()}
  ratios = {name: statistics.median(j / r for j, r in zip(per_round["jinvert"], per_round[name]))
            for name in timers}
  return rates, ratios


def memory_stats(device) -> dict:
  """The device's memory statistics, or {} where the backend keeps none (the CPU)."""
  return (device.memory_stats() if hasattr(device, "memory_stats") else None) or {}


def run_size(params, restarts: int, steps: int, repeats: int, devices=None):
  """Times one size.

  Returns:
    (a dict of the measurements, the last call's InversionResult, a function that times one
    more call of the same executable and returns its seconds).
  """
  fn, targets, keys = workload(params, restarts, steps, devices)
  args = (params, targets, keys)
  compiled, compile_seconds = compile_timed(fn, args)
  memory.require(memory.compiled_bytes(compiled), memory.available_bytes(),
                 f"R={restarts}", "use a smaller --restarts or --sizes")
  result, times = time_calls(compiled, args, repeats, warmup=True)
  median = statistics.median(times)
  image_steps = 10 * restarts * steps
  peak = memory_stats(next(iter(result.inputs.devices()))).get("peak_bytes_in_use")
  return {"restarts": restarts, "steps": steps, "compile_seconds": compile_seconds,
          "seconds_median": median, "seconds_min": min(times), "seconds_max": max(times),
          "image_steps_per_s": image_steps / median,
          "gflops": image_steps * flops_per_image_step(params) / median / 1e9,
          "peak_bytes": peak}, result, lambda: time_calls(compiled, args)[1][0]


def largest_restarts(params, steps: int, start: int, stop: int, device, log=None,
                     devices=None) -> dict | None:
  """The largest R, doubling from `start` up to `stop`, whose inversion of S = `steps` runs.

  Each size is compiled for `device` (which must be the default device), skipped when XLA's
  memory estimate exceeds the memory free (`jinvert.memory.available_bytes`), and
  otherwise run once; the first size that does not fit (or fails with out-of-memory) ends the
  search.

  Returns:
    {"restarts", "compiled_bytes", "peak_bytes", "seconds", "image_steps_per_s"} of the largest
    size that ran, or None when even `start` did not.
  """
  log = log or log_line
  limit = memory.available_bytes(device)
  best, r = None, start
  while r <= stop:
    fn, targets, keys = workload(params, r, steps, devices)
    args = (params, targets, keys)
    try:
      compiled, _ = compile_timed(fn, args)
      need = memory.compiled_bytes(compiled)
      if limit and need and need > limit:
        log(f"R={r}: needs {need:,} bytes, over the {limit:,} free")
        break
      _, (seconds,) = time_calls(compiled, args)
    except Exception as e:  # XLA reports out-of-memory as a runtime error
      log(f"R={r}: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
      break
    best = {"restarts": r, "compiled_bytes": need,
            "peak_bytes": memory_stats(device).get("peak_bytes_in_use"),
            "seconds": seconds, "image_steps_per_s": 10 * r * steps / seconds}
    log(f"R={r}: ran in {seconds:.2f} s, compiled bytes {need}, peak bytes {best['peak_bytes']}")
    r *= 2
  return best


def log_line(line):
  """Progress and notes: stderr, so that stdout keeps the tables and the JSON line."""
  print(line, file=sys.stderr, flush=True)
