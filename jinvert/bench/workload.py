"""The benchmark's workload and how it is timed: the engine's call at each size, the square
matmul peak, the products bound, seed 003's Python loop, and interleaved rounds.

Workload: a classifier (mnist-mlp, 784-256-256-10, by default; any zoo classifier or ONNX
file), class-logit objective, box [0, 1] by projection, plain SGD, T = 10 targets x R restarts
x S steps, all in one compiled call. Work per image-step is 2 x MACs of the step's matrix
products (forward and backward to the input; a convolution is one product of its patches,
`jinvert.convolution`), elementwise work not counted: for mnist-mlp 4 x (784*256 + 256*256 +
256*10) = 1,075,200 FLOP.
"""

import dataclasses
import math
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinvert import engine, memory, models, objectives, parameterizations
from jinvert.errors import JinvertError
from jinvert.timing import compile_timed, time_calls, time_compiled

PRECISIONS = {"highest": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}
LEARNING_RATE = 0.1
TARGETS = 10


@dataclasses.dataclass(frozen=True)
class Subject:
  """The model under benchmark: a zoo name (its initial weights, seed 0) or an ONNX file.

  Attributes:
    name: the zoo name, or the file's stem.
    apply_fn: `fn(params, x) -> logits` over a batch of inputs shaped `input_shape`.
    params: its weights.
    input_shape: one input's shape.
    zoo: whether it is a zoo model (PyTorch twins exist only for those).
  """
  name: str
  apply_fn: Callable
  params: Any
  input_shape: tuple
  zoo: bool = True


def subject(model: str = "mnist-mlp") -> Subject:
  """The `Subject` named by `model`: a zoo classifier's name or an `.onnx` file."""
  from jinvert import classifiers
  if classifiers.is_onnx(model):
    c = classifiers.load_model(model, "--model")
    found = Subject(c.name, lambda p, x: c.apply_fn(p, x)[0], c.params, tuple(c.input_shape),
                    zoo=False)
    classes = c.n_classes
  else:
    spec = models.get_model(model)
    if spec.task != "classifier":
      raise JinvertError(f"--model {model}: an {spec.task} model, not a classifier")
    found = Subject(spec.name, spec.module().apply, spec.init_params(jax.random.key(0)),
                    tuple(spec.input_shape))
    classes = spec.n_classes
  if classes < TARGETS:
    raise JinvertError(f"--model {model}: {classes} classes; the benchmark inverts {TARGETS}")
  return found


def workload(model: Subject, restarts: int, steps: int, devices=None):
  """(compiled-ready jitted fn, targets, keys) for the benchmark inversion; with several
  `devices`, the lanes split over them as `invert` splits them (`engine.lane_sharding`)."""
  run = jax.jit(engine.make_inversion(model.apply_fn, objectives.class_logit(),
                                       optax.sgd(LEARNING_RATE), parameterizations.pixels(),
                                       steps, model.input_shape, record_every=0))
  targets = jnp.arange(TARGETS)
  keys = engine.lane_keys(jax.random.key(0), TARGETS, restarts,
                           engine.lane_sharding(TARGETS, restarts, devices) if devices else None)
  return run, targets, keys


def _summed_target_logits(model: Subject):
  return lambda x: jnp.sum(model.apply_fn(model.params, x)[:, 0])


def _products(jaxpr) -> list:
  """(batch, m, k, n) of every dot_general in `jaxpr`, nested calls included; of a
  conditional's branches, the one with the most work (the CPU's `jinvert.convolution`)."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
      a, b = (v.aval.shape for v in eqn.invars)
      size = lambda shape, axes: math.prod(shape[i] for i in axes)
      free = lambda shape, used: math.prod(d for i, d in enumerate(shape) if i not in used)
      found.append((size(a, lb), free(a, {*lc, *lb}), size(a, lc), free(b, {*rc, *rb})))
    elif eqn.primitive.name == "cond":
      branches = [_products(branch) for branch in engine.nested_jaxprs(eqn)]
      found += max(branches, key=lambda ps: sum(math.prod(p) for p in ps))
    else:
      for inner in engine.nested_jaxprs(eqn):
        found += _products(inner)
  return found


def product_shapes(model: Subject, batch: int) -> list:
  """The matrix products of one step for a batch of `batch` images, as (batch, m, k, n): the
  forward pass and the backward pass to the input, read from the step's own program."""
  x = jax.ShapeDtypeStruct((batch,) + model.input_shape, jnp.float32)
  return _products(jax.make_jaxpr(jax.grad(_summed_target_logits(model)))(x).jaxpr)


def flops_per_image_step(model: Subject) -> int:
  """2 x MACs of the step's products, per image."""
  return sum(2 * math.prod(shape) for shape in product_shapes(model, TARGETS)) // TARGETS


def matmul_peak(n: int, repeats: int = 5) -> float:
  """GFLOP/s of the fastest of `repeats` n x n x n float32 matrix products under the current
  precision: a peak is the best the machine did, so a slow repeat on a shared host must not
  lower it (and flatter the fractions measured against it)."""
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
  _, _, times = time_compiled(jax.jit(jnp.matmul), (a, b), repeats, warmup=True)
  return 2 * n ** 3 / min(times) / 1e9


def python_loop(model: Subject, batch: int, steps: int, calls: int):
  """Seed 003's loop: one class at a time, a Python loop over steps, each step one compiled
  call that hands the loss and the gradient back as host arrays, and the update (here with the
  box's clip) done in numpy. Batch 1 is the seed's one image; batch R is one class at a time.

  Returns:
    (image-steps per pass, a function that runs `calls` such loops and returns its seconds).
  """
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda x, c: jnp.sum(model.apply_fn(model.params, x)[:, c])))
  start = np.random.default_rng(0).random((calls, batch) + model.input_shape, dtype=np.float32)

  def run():
    t = time.perf_counter()
    for c in range(calls):
      x = start[c]
      for _ in range(steps):
        _loss, grads_val = jax.device_get(loss_and_grad(x, c % TARGETS))
        x = np.clip(x + LEARNING_RATE * grads_val, 0.0, 1.0)
    return time.perf_counter() - t

  return calls * batch * steps, run


def products_seconds(model: Subject, batch: int, steps: int, devices=None) -> dict:
  """Seconds per step of the step's products alone, at its exact shapes (`product_shapes`),
  in a loop of `steps` chained steps (each step's products read a scalar carried from the
  last, so none can be hoisted): with XLA (a compiled scan) on one device, and with their rows
  split over `devices` as the engine splits its lanes (when their count divides `batch` / 10
  and every product's rows).

  Returns:
    {"xla": s on one device, "xla_split": s split (None when not split)}.
  """
  shapes = product_shapes(model, batch)
  keys = jax.random.split(jax.random.key(0), 2 * len(shapes))
  lhs = [jax.random.uniform(keys[2 * i], (b, m, k)) for i, (b, m, k, n) in enumerate(shapes)]
  rhs = [jax.random.uniform(keys[2 * i + 1], (b, k, n)) for i, (b, m, k, n) in enumerate(shapes)]

  def chained(carry, lhs, rhs):
    def step(carry, _):
      total = carry
      for a, w in zip(lhs, rhs):
        total = total + 1e-30 * jnp.sum(jnp.matmul(a, w + carry))
      return total, None
    return jax.lax.scan(step, carry, None, length=steps)[0]

  run = jax.jit(chained)
  per_step = lambda lhs: min(time_compiled(run, (jnp.float32(0), lhs, rhs), repeats=3,
                                           warmup=True)[2]) / steps
  seconds = {"xla": per_step(lhs), "xla_split": None}
  n = len(devices or ())
  if (n > 1 and engine.lane_sharding(TARGETS, batch // TARGETS, devices) is not None
      and all(m % n == 0 for _, m, _, _ in shapes)):  # rows are lanes (x positions): split alike
    rows = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), ("rows",)),
                                      jax.sharding.PartitionSpec(None, "rows", None))
    seconds["xla_split"] = per_step([jax.device_put(a, rows) for a in lhs])
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


def run_size(model: Subject, restarts: int, steps: int, repeats: int, devices=None):
  """Times one size.

  Returns:
    (a dict of the measurements, the last call's InversionResult, a function that times one
    more call of the same executable and returns its seconds).
  """
  fn, targets, keys = workload(model, restarts, steps, devices)
  args = (model.params, targets, keys)
  compiled, compile_seconds = compile_timed(fn, args)
  memory.require(memory.compiled_bytes(compiled), memory.available_bytes(),
                 f"R={restarts}", "use a smaller --restarts or --sizes")
  result, times = time_calls(compiled, args, repeats, warmup=True)
  median = statistics.median(times)
  image_steps = TARGETS * restarts * steps
  peak = memory_stats(next(d for d in result.inputs.devices()
                          if d.process_index == jax.process_index())).get("peak_bytes_in_use")
  return {"restarts": restarts, "steps": steps, "compile_seconds": compile_seconds,
          "seconds_median": median, "seconds_min": min(times), "seconds_max": max(times),
          "image_steps_per_s": image_steps / median,
          "gflops": image_steps * flops_per_image_step(model) / median / 1e9,
          "peak_bytes": peak}, result, lambda: time_calls(compiled, args)[1][0]


def largest_restarts(model: Subject, steps: int, start: int, stop: int, device, log=None,
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
    fn, targets, keys = workload(model, r, steps, devices)
    args = (model.params, targets, keys)
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
            "seconds": seconds, "image_steps_per_s": TARGETS * r * steps / seconds}
    log(f"R={r}: ran in {seconds:.2f} s, compiled bytes {need}, peak bytes {best['peak_bytes']}")
    r *= 2
  return best


def log_line(line):
  """Progress and notes: stderr, so that stdout keeps the tables and the JSON line."""
  print(line, file=sys.stderr, flush=True)
