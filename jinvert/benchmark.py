"""The accelerator benchmark: the inversion engine against the matmul peak and other ways.

Workload: mnist-mlp (784-256-256-10), class-logit objective, box [0, 1] by projection, plain
SGD, T = 10 targets x R restarts x S steps, all in one compiled call. Work per image-step is
counted as 2 x MACs of the forward pass plus 2 x MACs of the backward pass to the input
(elementwise work is not counted): 4 x (784*256 + 256*256 + 256*10) = 1,075,200 FLOP.

References, timed in the same process on the same device with the same weights:
  seed_loop      seed 003's Keras answer: one image at a time, a Python loop over steps, one
                 compiled gradient call per step handing numpy arrays back;
  class_loop     the same loop on one class at a time, its R restarts batched in each call;
  torch_eager    PyTorch, all targets and restarts batched, eager autograd per step;
  torch_compile  the whole step under torch.compile(fullgraph=True) (and the graph-breaking
                 variant earlier versions timed, `torch_compile_autograd`).
They run fewer steps than jinvert and are reported as image-steps per second, timed at every
size in rounds interleaved with jinvert's call of that size, each timed pass after an untimed
one of its own (`interleaved_rates`).
"""

import contextlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinvert import invert, memory, models, objectives, parameterizations
from jinvert.errors import JinvertError
from jinvert.timing import compile_timed, time_calls, time_compiled

PRECISIONS = {"highest": "highest", "tf32": "tensorfloat32", "bf16": "bfloat16"}
# torch.set_float32_matmul_precision's names for the same three settings, so that PyTorch is
# compared in the precision jinvert runs in.
TORCH_PRECISIONS = {"highest": "highest", "tf32": "high", "bf16": "medium"}
LEARNING_RATE = 0.1


def dense_layers(params):
  p = params["params"]
  return [p[name] for name in sorted(k for k in p if k.startswith("dense")) + ["out"]]


def flops_per_image_step(params) -> int:
  """4 x MACs of the dense layers: forward plus backward to the input."""
  return 4 * sum(int(np.prod(layer["kernel"].shape)) for layer in dense_layers(params))


def workload(params, restarts: int, steps: int, devices=None):
  """(compiled-ready jitted fn, targets, keys) for the benchmark inversion; with several
  `devices`, the lanes split over them as `invert` splits them (`invert.lane_sharding`)."""
  module = models.get_model("mnist-mlp").module()
  run = jax.jit(invert.make_inversion(module.apply, objectives.class_logit(),
                                      optax.sgd(LEARNING_RATE), parameterizations.pixels(), steps,
                                      (28, 28), record_every=0))
  targets = jnp.arange(10)
  keys = invert.lane_keys(jax.random.key(0), 10, restarts,
                          invert.lane_sharding(10, restarts, devices) if devices else None)
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


@contextlib.contextmanager
def torch_matmul_precision(torch, precision: str):
  """Runs PyTorch's float32 matmuls at jinvert's `precision`, restoring the setting after."""
  previous = torch.get_float32_matmul_precision()
  torch.set_float32_matmul_precision(TORCH_PRECISIONS[precision])
  try:
    yield
  finally:
    torch.set_float32_matmul_precision(previous)


def torch_steps(torch, params, restarts: int, device: str) -> dict:
  """The benchmark's step in PyTorch, every target and restart batched, three ways:

    torch_eager              autograd, op by op;
    torch_compile_autograd   the same step under torch.compile: `torch.autograd.grad` inside
                             the compiled function breaks the graph (an earlier benchmark's
                             only compiled reference, kept for comparison);
    torch_compile            the whole step (forward, `torch.func.grad` of the summed target
                             logits, the update and the clip) under
                             torch.compile(fullgraph=True); on a GPU with
                             mode="reduce-overhead" (CUDA graphs): how a torch expert writes it.

  Returns:
    {name: step(x) -> x}, x shaped (10 R, 28, 28), rows in target-major order (as jinvert's
    (T, R) lanes flattened).
  """
  dev = "cuda" if device == "gpu" else "cpu"
  weights = [(torch.tensor(np.asarray(l["kernel"]), device=dev),
              torch.tensor(np.asarray(l["bias"]), device=dev)) for l in dense_layers(params)]
  targets = torch.arange(10, device=dev).repeat_interleave(restarts)[:, None]

  def summed_target_logits(x):
    h = x.reshape(x.shape[0], -1)
    for i, (w, b) in enumerate(weights):
      h = h @ w + b
      if i < len(weights) - 1:
        h = torch.relu(h)
    return h.gather(1, targets).sum()

  def autograd_step(x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(summed_target_logits(x), x)
    return (x + LEARNING_RATE * g).clamp(0.0, 1.0).detach()

  grad = torch.func.grad(summed_target_logits)

  def functional_step(x):
    return (x + LEARNING_RATE * grad(x)).clamp(0.0, 1.0)

  mode = "reduce-overhead" if dev == "cuda" else None
  return {"torch_eager": autograd_step,
          "torch_compile_autograd": torch.compile(autograd_step),
          "torch_compile": torch.compile(functional_step, fullgraph=True, mode=mode)}


def torch_timer(torch, step, start, steps: int, device: str):
  """(image-steps per pass, a function that runs `steps` steps from `start` and returns its
  seconds), after 3 warm-up steps (which compile)."""
  def synchronize():
    if device == "gpu":
      torch.cuda.synchronize()

  x = start
  for _ in range(3):
    x = step(x)

  def run():
    y = x
    synchronize()
    t = time.perf_counter()
    for _ in range(steps):
      y = step(y)
    synchronize()
    return time.perf_counter() - t

  return start.shape[0] * steps, run


def product_shapes(params, batch: int) -> list:
  """The six matrix products of one step, as (m, k, n): the forward pass and the backward pass
  to the input, for a batch of `batch` images."""
  dims = [int(np.prod(dense_layers(params)[0]["kernel"].shape[:1]))] + \
      [int(l["kernel"].shape[1]) for l in dense_layers(params)]
  forward = [(batch, a, b) for a, b in zip(dims, dims[1:])]
  backward = [(batch, b, a) for a, b in reversed(list(zip(dims, dims[1:])))]
  return forward + backward


def reference_differences(torch, params, restarts: int, steps: int, device: str) -> dict:
  """Each PyTorch step, run `steps` times from jinvert's own starting images, against
  jinvert's result: {name: max |image difference|}. No reference may skip work unseen."""
  fn, targets, keys = workload(params, restarts, steps)
  result = fn(params, targets, keys)
  start = invert.starting_inputs(parameterizations.pixels(), keys, (28, 28))
  x0 = torch.tensor(np.asarray(start).reshape(-1, 28, 28),
                    device="cuda" if device == "gpu" else "cpu")
  want = np.asarray(result.inputs).reshape(-1, 28, 28)
  differences = {}
  for name, step in torch_steps(torch, params, restarts, device).items():
    x = x0
    for _ in range(steps):
      x = step(x)
    differences[name] = float(np.max(np.abs(x.detach().cpu().numpy() - want)))
  return differences


def products_bound(params, batch: int, steps: int, torch=None, device: str = "cpu",
                   devices=None):
  """Seconds per step of the step's six products alone, at its exact shapes, in a loop of
  `steps` chained steps (each product reads the last, so none can be hoisted): with XLA (a
  compiled scan) on one device, and with its rows split over `devices` as the engine splits
  its lanes (when their count divides `batch` / 10), and with torch (its matmuls, op by op).

  Returns:
    {"xla": s on one device, "xla_split": s split (None when not split), "torch": s or None}.
  """
  layers = dense_layers(params)
  kernels = [jnp.asarray(l["kernel"]) for l in layers]
  x0 = jax.random.uniform(jax.random.key(0), (batch, kernels[0].shape[0]))
  sharding = invert.lane_sharding(10, batch // 10, devices) if devices else None

  def chain(x, _):
    h = x
    for w in kernels:
      h = h @ w
    for w in reversed(kernels):
      h = jax.lax.dot_general(h, w, (((1,), (1,)), ((), ())))
    return x + 1e-30 * h, None

  run = jax.jit(lambda x: jax.lax.scan(chain, x, None, length=steps)[0])
  per_step = lambda x: min(time_compiled(run, (x,), repeats=3, warmup=True)[2]) / steps
  bound = {"xla": per_step(x0), "xla_split": None, "torch": None}
  if sharding is not None:  # rows are lanes in target-major order: split them alike
    bound["xla_split"] = per_step(jax.device_put(x0, jax.sharding.NamedSharding(
        sharding.mesh, jax.sharding.PartitionSpec("lanes", None))))
  if torch is not None:
    dev = "cuda" if device == "gpu" else "cpu"
    ws = [torch.tensor(np.asarray(w), device=dev) for w in kernels]
    wts = [w.t().contiguous() for w in ws]
    xt = torch.rand(batch, ws[0].shape[0], device=dev)

    def chain_torch(x):
      h = x
      for w in ws:
        h = h @ w
      for w in reversed(wts):
        h = h @ w
      return x + 1e-30 * h

    _, timed = torch_timer(torch, chain_torch, xt, steps, device)
    timed()
    bound["torch"] = min(timed() for _ in range(3)) / steps
  return bound


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
  log = log or _log
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


def _log(line):
  import sys
  print(line, file=sys.stderr, flush=True)


def run_benchmark(restarts: int | None = None, steps: int = 200, device: str = "cpu",
                  precision: str = "highest", sizes=None, repeats: int = 3,
                  references: bool = True, largest_up_to: int | None = None, log=_log) -> dict:
  """Runs the whole benchmark and prints its tables; returns the JSON summary.

  Args:
    restarts: the headline size R (default 256 on the CPU, 4096 on a GPU); references run there.
    steps: S.
    device: `cpu` or `gpu`.
    precision: matmul precision, `highest` (float32), `tf32` or `bf16`.
    sizes: restart counts for the size table (default 1, 32, 256, 1024, and 4096 on a GPU).
    repeats: timed repeats after a warm-up; the median is reported, with min-max.
    references: also time the seed-style loop and PyTorch.
    largest_up_to: also find the largest R (doubling from the headline R, at most this) whose
      S-step inversion fits in device memory; None skips the search.
  """
  if precision not in PRECISIONS:
    raise JinvertError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
  if steps <= 0 or repeats <= 0:
    raise JinvertError("steps and repeats must be positive")
  try:
    target_device = jax.devices(device)[0]
  except RuntimeError:
    raise JinvertError(f"no {device} device visible to jax (backend {jax.default_backend()})") from None
  restarts = restarts or (4096 if device == "gpu" else 256)
  if largest_up_to is not None and largest_up_to < restarts:
    raise JinvertError(f"--largest-up-to ({largest_up_to}) must be at least the headline R "
                       f"({restarts}): the search doubles R from there")
  sizes = sorted(set(sizes or ([1, 32, 256, 1024] + ([4096] if device == "gpu" else []))) | {restarts})
  memory.require(invert.result_bytes(10, restarts, steps, (28, 28), 10, record_every=0),
                 memory.host_available_bytes(), f"R={restarts} (the headline)",
                 "use a smaller --restarts")
  params = models.get_model("mnist-mlp").init_params(jax.random.key(0))
  flops = flops_per_image_step(params)
  devices = jax.devices(device)
  with jax.default_device(target_device), jax.default_matmul_precision(PRECISIONS[precision]):
    peak_n = 8192 if device == "gpu" else 2048
    peak = matmul_peak(peak_n)
    print(f"jinvert bench: mnist-mlp inversion, T=10 x R x S={steps}, {target_device.device_kind} "
          f"({jax.default_backend()}), jax {jax.__version__}, precision {precision}")
    print(f"work per image-step: {flops:,} FLOP (2 x MACs forward + backward to the input); "
          f"matmul peak {peak:,.0f} GFLOP/s ({peak_n}^3 float32, precision {precision})")
    if len(devices) > 1:
      print(f"{len(devices)} {device} devices: each size's lanes split over them where their count "
            "divides the 10 targets or R (`invert.lane_sharding`), as `invert` runs them")
    try:
      import torch
    except ImportError:
      torch = None
      if references:
        log("PyTorch is not installed (pip install 'jinvert[bench]'): its references are skipped")
    print("| R | compile s | median s (min-max) | image-steps/s | GFLOP/s | % of matmul peak | "
          "products bound: XLA one device / XLA split / torch ms per step | % of the bound "
          "(the fastest of the three) | peak bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows, headline, headline_result = [], None, None
    passes = {}
    for r in sizes:
      try:
        row, result, one_pass = run_size(params, r, steps, repeats, devices)
      except Exception as e:  # out of memory: above the headline, stop growing; else refuse
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        if r <= restarts:
          raise JinvertError(f"R={r} cannot run ({reason})") from None
        log(f"R={r}: {reason}")
        break
      row["peak_fraction"] = row["gflops"] / peak
      bound = products_bound(params, 10 * r, steps, torch, device, devices)
      row["products_seconds"] = bound
      row["bound_image_steps_per_s"] = 10 * r / min(t for t in bound.values() if t)
      row["bound_fraction"] = row["image_steps_per_s"] / row["bound_image_steps_per_s"]
      rows.append(row)
      passes[r] = one_pass
      ms = lambda t: "-" if t is None else f"{1e3 * t:.3f}"
      print(f"| {r} | {row['compile_seconds']:.2f} | {row['seconds_median']:.4f} "
            f"({row['seconds_min']:.4f}-{row['seconds_max']:.4f}) | {row['image_steps_per_s']:,.0f} | "
            f"{row['gflops']:,.1f} | {100 * row['peak_fraction']:.1f}% | "
            f"{ms(bound['xla'])} / {ms(bound['xla_split'])} / {ms(bound['torch'])} | "
            f"{100 * row['bound_fraction']:.1f}% | "
            f"{row['peak_bytes'] or '-'} |")
      if r == restarts:
        headline, headline_result = row, result

    ratios = {"seed_loop": None, "class_loop": None, "torch_eager": None,
              "torch_compile_autograd": None, "torch_compile": None}
    by_size, differences = {}, None
    if references:
      ref_steps = min(steps, 50)
      log(f"references: {ref_steps} steps each, timed at every size in {repeats} rounds "
          "interleaved with jinvert's call of that size")
      if torch is not None:
        with torch_matmul_precision(torch, precision):
          differences = reference_differences(torch, params, restarts, 5, device)
        print(f"\nreferences against jinvert's step rule, 5 steps from the same start at "
              f"R={restarts}: max |image difference| " +
              ", ".join(f"{k} {v:.2g}" for k, v in differences.items()))
      print(f"\nreferences (image-steps/s, median of {repeats} interleaved rounds, each timed "
            "pass after an untimed one of its own; jinvert / reference is the median of the "
            "rounds' ratios; % of the bound: of the fastest products-alone time at that size):")
      print("| R | jinvert | seed_loop | class_loop | torch_eager | torch_compile_autograd "
            "(graph breaks) | torch_compile (whole step, fullgraph) | jinvert / best torch | "
            "jinvert % of bound | best torch % of bound |")
      print("|---|---|---|---|---|---|---|---|---|---|")
      for row in rows:
        r = row["restarts"]
        timers = {"jinvert": (10 * r * steps, passes[r])}
        if r == restarts:
          timers["seed_loop"] = python_loop(params, 1, ref_steps, calls=10)
          timers["class_loop"] = python_loop(params, restarts, ref_steps, calls=10)
        if torch is not None:
          with torch_matmul_precision(torch, precision):
            start = torch.rand(10 * r, 28, 28, generator=torch.Generator().manual_seed(0)).to(
                "cuda" if device == "gpu" else "cpu")
            for name, step in torch_steps(torch, params, r, device).items():
              timers[name] = torch_timer(torch, step, start, ref_steps, device)
            rates, measured = interleaved_rates(timers, repeats)
        else:
          rates, measured = interleaved_rates(timers, repeats)
        torch_names = [n for n in rates if n.startswith("torch")]
        best = max(torch_names, key=rates.get) if torch_names else None
        bound_rate = row["bound_image_steps_per_s"]
        by_size[r] = {"rates": rates, "ratios": measured, "best_torch": best,
                      "jinvert_over_best_torch": measured[best] if best else None,
                      "jinvert_bound_fraction": rates["jinvert"] / bound_rate,
                      "best_torch_bound_fraction": rates[best] / bound_rate if best else None}
        cell = lambda n: f"{rates[n]:,.0f} ({measured[n]:.2f}x)" if n in rates else "-"
        print(f"| {r} | {rates['jinvert']:,.0f} | {cell('seed_loop')} | {cell('class_loop')} | "
              f"{cell('torch_eager')} | {cell('torch_compile_autograd')} | {cell('torch_compile')} | "
              + (f"{measured[best]:.2f}x ({best}) | " if best else "- | ")
              + f"{100 * by_size[r]['jinvert_bound_fraction']:.1f}% | "
              + (f"{100 * by_size[r]['best_torch_bound_fraction']:.1f}% |" if best else "- |"))
        if r == restarts:
          ratios.update({name: measured[name] for name in ratios if name in measured})

    drift = None
    if precision != "highest":
      with jax.default_matmul_precision("highest"):
        _, exact, _ = run_size(params, restarts, steps, 1)
      probs = lambda res: jax.nn.softmax(res.outputs)[jnp.arange(10), :, jnp.arange(10)]
      drift = {"max_abs_image": float(jnp.max(jnp.abs(headline_result.inputs - exact.inputs))),
               "max_abs_target_prob": float(jnp.max(jnp.abs(probs(headline_result) - probs(exact))))}
      print(f"\n{precision} vs float32 (highest): max |image difference| "
            f"{drift['max_abs_image']:.3g}, max |target probability difference| "
            f"{drift['max_abs_target_prob']:.3g}")

    largest = None
    if largest_up_to:
      log(f"largest R for S={steps}: doubling from {restarts} up to {largest_up_to}")
      largest = largest_restarts(params, steps, restarts, largest_up_to, target_device, log,
                                 devices)
      if largest:
        print(f"\nlargest R that ran for S={steps} (at most {largest_up_to}): "
              f"{largest['restarts']:,} ({10 * largest['restarts']:,} images), "
              f"{largest['seconds']:.2f} s, {largest['image_steps_per_s']:,.0f} image-steps/s, "
              f"compiled bytes {largest['compiled_bytes']}, peak bytes {largest['peak_bytes']}")

  return {"backend": jax.default_backend(), "device_kind": target_device.device_kind,
          "restarts": restarts, "steps": steps, "precision": precision,
          "image_steps_per_s": headline["image_steps_per_s"], "gflops": headline["gflops"],
          "matmul_peak_gflops": peak, "peak_fraction": headline["peak_fraction"],
          "compile_seconds": headline["compile_seconds"], "ratios": ratios,
          "by_size": {str(r): {"jinvert_over_best_torch": v["jinvert_over_best_torch"],
                               "best_torch": v["best_torch"],
                               "jinvert_bound_fraction": v["jinvert_bound_fraction"],
                               "best_torch_bound_fraction": v["best_torch_bound_fraction"]}
                      for r, v in by_size.items()},
          "reference_differences": differences,
          "precision_drift": drift, "devices": len(devices), "largest": largest, "sizes": rows}
