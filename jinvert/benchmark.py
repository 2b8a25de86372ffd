"""The accelerator benchmark: the inversion engine against the matmul peak and other ways.

Workload: mnist-mlp (784-256-256-10), class-logit objective, box [0, 1] by projection, plain
SGD, T = 10 targets x R restarts x S steps, all in one compiled call. Work per image-step is
counted as 2 x MACs of the forward pass plus 2 x MACs of the backward pass to the input
(elementwise work is not counted): 4 x (784*256 + 256*256 + 256*10) = 1,075,200 FLOP.

References, timed in the same process on the same device with the same weights:
  seed_loop      seed 003's Keras answer: one image at a time, a Python loop over steps, one
                 jitted gradient call per step;
  class_loop     the same loop on one class at a time, its R restarts batched in each call;
  torch_eager    PyTorch, all targets and restarts batched, eager autograd per step;
  torch_compile  the same step under torch.compile.
Each is timed on fewer steps when slow and reported as image-steps per second.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinvert import invert, models, objectives, parameterizations
from jinvert.timing import time_compiled

PRECISIONS = {"highest": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}
LEARNING_RATE = 0.1


def dense_layers(params):
  p = params["params"]
  return [p[name] for name in sorted(k for k in p if k.startswith("dense")) + ["out"]]


def flops_per_image_step(params) -> int:
  """4 x MACs of the dense layers: forward plus backward to the input."""
  return 4 * sum(int(np.prod(layer["kernel"].shape)) for layer in dense_layers(params))


def workload(params, restarts: int, steps: int, shard: bool = False):
  """(compiled-ready jitted fn, targets, keys) for the benchmark inversion."""
  module = models.get_model("mnist-mlp").module()
  run = jax.jit(invert.make_inversion(module.apply, objectives.class_logit(),
                                      optax.sgd(LEARNING_RATE), parameterizations.pixels(), steps,
                                      (28, 28), record_every=0))
  targets = jnp.arange(10)
  keys = invert.lane_keys(jax.random.key(0), 10, restarts)
  if shard:
    keys = jax.device_put(keys, invert.restart_sharding(restarts))
  return run, targets, keys


def matmul_peak(n: int, repeats: int = 5) -> float:
  """Median GFLOP/s of an n x n x n float32 matrix product under the current precision."""
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
  _, _, times = time_compiled(jax.jit(jnp.matmul), (a, b), repeats, warmup=True)
  return 2 * n ** 3 / statistics.median(times) / 1e9


def python_loop_rate(params, batch: int, steps: int, calls: int) -> float:
  """Image-steps per second of a Python loop over steps, one jitted gradient call per step on
  `batch` images of one class (batch 1 is seed 003's loop; batch R is one class at a time)."""
  module = models.get_model("mnist-mlp").module()

  @jax.jit
  def grad(x, c):
    return jax.grad(lambda x: jnp.sum(module.apply(params, x)[:, c]))(x)

  x = jax.random.uniform(jax.random.key(0), (batch, 28, 28))
  jax.block_until_ready(grad(x, 0))
  t = time.perf_counter()
  for c in range(calls):
    x = jax.random.uniform(jax.random.key(c), (batch, 28, 28))
    for _ in range(steps):
      x = jnp.clip(x + LEARNING_RATE * grad(x, c % 10), 0.0, 1.0)
    jax.block_until_ready(x)
  return calls * batch * steps / (time.perf_counter() - t)


def torch_rates(params, restarts: int, steps: int, device: str, compile_steps: bool):
  """Image-steps per second of PyTorch eager and torch.compile, or None when not installed."""
  try:
    import torch
  except ImportError:
    return None
  dev = "cuda" if device == "gpu" else "cpu"
  weights = [(torch.tensor(np.asarray(l["kernel"]), device=dev),
              torch.tensor(np.asarray(l["bias"]), device=dev)) for l in dense_layers(params)]
  targets = torch.arange(10, device=dev).repeat_interleave(restarts)[:, None]

  def step(x):
    x = x.detach().requires_grad_(True)
    h = x.reshape(x.shape[0], -1)
    for i, (w, b) in enumerate(weights):
      h = h @ w + b
      if i < len(weights) - 1:
        h = torch.relu(h)
    loss = h.gather(1, targets).sum()
    (g,) = torch.autograd.grad(loss, x)
    return (x + LEARNING_RATE * g).clamp(0.0, 1.0).detach()

  def rate(fn, n_steps):
    x = torch.rand(10 * restarts, 28, 28, device=dev, generator=torch.Generator(dev).manual_seed(0))
    for _ in range(3):
      x = fn(x)  # warm-up (and compilation)
    if dev == "cuda":
      torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n_steps):
      x = fn(x)
    if dev == "cuda":
      torch.cuda.synchronize()
    return 10 * restarts * n_steps / (time.perf_counter() - t)

  rates = {"torch_eager": rate(step, steps), "torch_compile": None}
  if compile_steps:
    rates["torch_compile"] = rate(torch.compile(step), steps)
  return rates


def run_size(params, restarts: int, steps: int, repeats: int, shard: bool = False):
  """Times one size; returns a dict of the measurements and the final images and outputs."""
  fn, targets, keys = workload(params, restarts, steps, shard)
  result, compile_seconds, times = time_compiled(fn, (params, targets, keys), repeats, warmup=True)
  median = statistics.median(times)
  image_steps = 10 * restarts * steps
  memory = None
  stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
  if stats:
    memory = stats.get("peak_bytes_in_use")
  return {"restarts": restarts, "steps": steps, "compile_seconds": compile_seconds,
          "seconds_median": median, "seconds_min": min(times), "seconds_max": max(times),
          "image_steps_per_s": image_steps / median,
          "gflops": image_steps * flops_per_image_step(params) / median / 1e9,
          "peak_bytes": memory}, result


def _log(line):
  import sys
  print(line, file=sys.stderr, flush=True)


def run_benchmark(restarts: int | None = None, steps: int = 200, device: str = "cpu",
                  precision: str = "highest", sizes=None, repeats: int = 3,
                  references: bool = True, log=_log) -> dict:
  """Runs the whole benchmark and prints its tables; returns the JSON summary.

  Args:
    restarts: the headline size R (default 256 on the CPU, 4096 on a GPU); references run there.
    steps: S.
    device: `cpu` or `gpu`.
    precision: matmul precision, `highest` (float32), `tf32` or `bf16`.
    sizes: restart counts for the size table (default 1, 32, 256, 1024, and 4096 on a GPU).
    repeats: timed repeats after a warm-up; the median is reported, with min-max.
    references: also time the seed-style loop and PyTorch.
  """
  from jinvert.errors import JinvertError

  if precision not in PRECISIONS:
    raise JinvertError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
  if steps <= 0 or repeats <= 0:
    raise JinvertError("steps and repeats must be positive")
  try:
    target_device = jax.devices(device)[0]
  except RuntimeError:
    raise JinvertError(f"no {device} device visible to jax (backend {jax.default_backend()})") from None
  restarts = restarts or (4096 if device == "gpu" else 256)
  sizes = sorted(set(sizes or ([1, 32, 256, 1024] + ([4096] if device == "gpu" else []))) | {restarts})
  params = models.get_model("mnist-mlp").init_params(jax.random.key(0))
  flops = flops_per_image_step(params)
  with jax.default_device(target_device), jax.default_matmul_precision(PRECISIONS[precision]):
    peak_n = 8192 if device == "gpu" else 2048
    peak = matmul_peak(peak_n)
    print(f"jinvert bench: mnist-mlp inversion, T=10 x R x S={steps}, {target_device.device_kind} "
          f"({jax.default_backend()}), jax {jax.__version__}, precision {precision}")
    print(f"work per image-step: {flops:,} FLOP (2 x MACs forward + backward to the input); "
          f"matmul peak {peak:,.0f} GFLOP/s ({peak_n}^3 float32, precision {precision})")
    print("| R | compile s | median s (min-max) | image-steps/s | GFLOP/s | % of matmul peak | peak bytes |")
    print("|---|---|---|---|---|---|---|")
    rows, headline, headline_result = [], None, None
    for r in sizes:
      try:
        row, result = run_size(params, r, steps, repeats)
      except Exception as e:  # out of memory at the largest sizes: report and stop growing
        log(f"R={r}: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
        break
      row["peak_fraction"] = row["gflops"] / peak
      rows.append(row)
      print(f"| {r} | {row['compile_seconds']:.2f} | {row['seconds_median']:.4f} "
            f"({row['seconds_min']:.4f}-{row['seconds_max']:.4f}) | {row['image_steps_per_s']:,.0f} | "
            f"{row['gflops']:,.1f} | {100 * row['peak_fraction']:.1f}% | {row['peak_bytes'] or '-'} |")
      if r == restarts:
        headline, headline_result = row, result
    if headline is None:
      raise JinvertError(f"R={restarts} did not run (see the log)")

    ratios = {"seed_loop": None, "class_loop": None, "torch_eager": None, "torch_compile": None}
    if references:
      ref_steps = min(steps, 50)
      log(f"Python loops: {ref_steps} steps, one gradient call each")
      rates = {"seed_loop": python_loop_rate(params, 1, ref_steps, calls=10),
               "class_loop": python_loop_rate(params, restarts, ref_steps, calls=10)}
      for name, rate in rates.items():
        ratios[name] = headline["image_steps_per_s"] / rate
      torch = torch_rates(params, restarts, min(steps, 50), device, compile_steps=True)
      if torch is None:
        log("PyTorch is not installed (pip install 'jinvert[bench]'): its references are skipped")
      else:
        rates.update(torch)
        for name, rate in torch.items():
          ratios[name] = None if rate is None else headline["image_steps_per_s"] / rate
      print(f"\nreferences at R={restarts} (image-steps/s; jinvert's throughput over theirs):")
      print("| reference | image-steps/s | jinvert / reference |")
      print("|---|---|---|")
      print(f"| jinvert (one compiled call) | {headline['image_steps_per_s']:,.0f} | 1.00x |")
      for name, rate in rates.items():
        if rate is not None:
          print(f"| {name} | {rate:,.0f} | {ratios[name]:.2f}x |")

    drift = None
    if precision != "highest":
      with jax.default_matmul_precision("highest"):
        _, exact = run_size(params, restarts, steps, 1)
      probs = lambda res: jax.nn.softmax(res.outputs)[jnp.arange(10), :, jnp.arange(10)]
      drift = {"max_abs_image": float(jnp.max(jnp.abs(headline_result.inputs - exact.inputs))),
               "max_abs_target_prob": float(jnp.max(jnp.abs(probs(headline_result) - probs(exact))))}
      print(f"\n{precision} vs float32 (highest): max |image difference| "
            f"{drift['max_abs_image']:.3g}, max |target probability difference| "
            f"{drift['max_abs_target_prob']:.3g}")

    sharded = None
    if len(jax.devices(device)) > 1 and restarts % len(jax.devices(device)) == 0:
      row, _ = run_size(params, restarts, steps, repeats, shard=True)
      sharded = {"devices": len(jax.devices(device)), "image_steps_per_s": row["image_steps_per_s"]}
      print(f"\nsharded over {sharded['devices']} devices: {row['image_steps_per_s']:,.0f} "
            f"image-steps/s ({row['image_steps_per_s'] / headline['image_steps_per_s']:.2f}x one call "
            "unsharded)")

  return {"backend": jax.default_backend(), "device_kind": target_device.device_kind,
          "restarts": restarts, "steps": steps, "precision": precision,
          "image_steps_per_s": headline["image_steps_per_s"], "gflops": headline["gflops"],
          "matmul_peak_gflops": peak, "peak_fraction": headline["peak_fraction"],
          "compile_seconds": headline["compile_seconds"], "ratios": ratios,
          "precision_drift": drift, "sharded": sharded, "sizes": rows}
