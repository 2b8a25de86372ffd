"""The accelerator benchmark (`jinvert bench`): the inversion engine against the machine's
limits and against other ways of writing the same search, on mnist-mlp or any classifier
(`--model NAME|FILE.onnx`).

The workload and its timers are in `workload`; the PyTorch references (optional:
`pip install 'jinvert[bench]'`) in `torch_reference`; the printed tables in `report`. Every
reference is timed in the same process on the same device with the same weights, in rounds
interleaved with jinvert's call of that size, each timed pass after an untimed one of its own:
  seed_loop      seed 003's Keras answer: one image at a time, a Python loop over steps, one
                 compiled gradient call per step handing numpy arrays back;
  class_loop     the same loop on one class at a time, its R restarts batched in each call;
  torch_eager, torch_compile   PyTorch at its best (`torch_reference`; zoo models only: an
                 ONNX file has no PyTorch twin here).
Measured results, and the commands for a GPU: experiments/BENCHMARKS.md.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jinvert import engine, memory
from jinvert.bench import report
from jinvert.bench.workload import (PRECISIONS, TARGETS, Subject, flops_per_image_step,
                                    interleaved_rates, largest_restarts, log_line, matmul_peak,
                                    products_seconds, python_loop, run_size, subject)
from jinvert.errors import JinvertError

TORCH_NAMES = ("torch_eager", "torch_compile")


def _checked(model, restarts, steps, device, precision, sizes, repeats, largest_up_to):
  """(headline R, the sizes to time, the device) after checking every argument."""
  if precision not in PRECISIONS:
    raise JinvertError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
  if steps <= 0 or repeats <= 0:
    raise JinvertError("steps and repeats must be positive")
  try:
    target_device = jax.local_devices(backend=device)[0]  # this process's
  except RuntimeError:
    raise JinvertError(f"no {device} device visible to jax (backend {jax.default_backend()})") from None
  restarts = restarts or (4096 if device == "gpu" else 256)
  if largest_up_to is not None and largest_up_to < restarts:
    raise JinvertError(f"--largest-up-to ({largest_up_to}) must be at least the headline R "
                       f"({restarts}): the search doubles R from there")
  sizes = sorted(set(sizes or ([1, 32, 256, 1024] + ([4096] if device == "gpu" else []))) | {restarts})
  memory.require(engine.result_bytes(TARGETS, restarts, steps, model.input_shape, TARGETS,
                                    record_every=0),
                 memory.host_available_bytes(), f"R={restarts} (the headline)",
                 "use a smaller --restarts")
  return restarts, sizes, target_device


def _has_twin(model: Subject, log) -> bool:
  from jinvert.bench import torch_reference
  if model.zoo and model.name in torch_reference.TWINS:
    return True
  log(f"{model.name}: no PyTorch twin of this model here (zoo: "
      f"{', '.join(torch_reference.TWINS)}): its PyTorch references are skipped")
  return False


def _torch(wanted: bool, log):
  if not wanted:
    return None
  try:
    import torch
  except ImportError:
    log("PyTorch is not installed (pip install 'jinvert[bench]'): its references are skipped")
    return None
  return torch


def products_bound(model: Subject, batch: int, steps: int, torch=None, device: str = "cpu",
                   devices=None) -> dict:
  """Seconds per step of the step's products alone, at its exact shapes: with XLA on one
  device and split over `devices` (`workload.products_seconds`), and with torch's matmuls
  when `torch` is given (`torch_reference.products_seconds`).

  Returns:
    {"xla": s, "xla_split": s or None, "torch": s or None}.
  """
  bound = dict(products_seconds(model, batch, steps, devices), torch=None)
  if torch is not None:
    from jinvert.bench import torch_reference
    bound["torch"] = torch_reference.products_seconds(torch, model, batch, steps, device)
  return bound


def _size_table(model, sizes, restarts, steps, repeats, peak, torch, device, devices, log):
  """Times every size; prints the table. Returns (rows, {R: a function timing one more pass},
  the headline's InversionResult)."""
  report.size_table_head()
  rows, passes, headline_result = [], {}, None
  for r in sizes:
    try:
      row, result, one_pass = run_size(model, r, steps, repeats, devices)
    except Exception as e:  # out of memory: above the headline, stop growing; else refuse
      reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
      if r <= restarts:
        raise JinvertError(f"R={r} cannot run ({reason})") from None
      log(f"R={r}: {reason}")
      break
    row["peak_fraction"] = row["gflops"] / peak
    # products split over this process's devices: a bound that needs no other process
    # with several processes, each one's share of the products on its own devices: a bound
    # that needs no collective (the lanes need none)
    share = TARGETS * r // jax.process_count() if TARGETS * r % jax.process_count() == 0 \
        else TARGETS * r
    bound = products_bound(model, share, steps, torch, device,
                           [d for d in devices if d.process_index == jax.process_index()])
    row["products_seconds"] = bound
    row["bound_image_steps_per_s"] = TARGETS * r / min(t for t in bound.values() if t)
    row["bound_fraction"] = row["image_steps_per_s"] / row["bound_image_steps_per_s"]
    rows.append(row)
    passes[r] = one_pass
    report.size_row(row)
    if r == restarts:
      headline_result = result
  return rows, passes, headline_result


def _references_at(model, row, passes, restarts, steps, repeats, torch, device, precision):
  """One size's interleaved rounds: jinvert, the seed loops (at the headline R) and torch."""
  from jinvert.bench import torch_reference
  r, ref_steps = row["restarts"], min(steps, 50)
  timers = {"jinvert": (TARGETS * r * steps, passes[r])}
  if r == restarts:
    timers["seed_loop"] = python_loop(model, 1, ref_steps, calls=TARGETS)
    timers["class_loop"] = python_loop(model, restarts, ref_steps, calls=TARGETS)
  if torch is None:
    rates, ratios = interleaved_rates(timers, repeats)
  else:
    with torch_reference.torch_matmul_precision(torch, precision):
      start = torch.rand((TARGETS * r,) + model.input_shape,
                         generator=torch.Generator().manual_seed(0)).to(
          "cuda" if device == "gpu" else "cpu")
      for name, step in torch_reference.torch_steps(torch, model, r, device).items():
        timers[name] = torch_reference.torch_timer(torch, step, start, ref_steps, device)
      rates, ratios = interleaved_rates(timers, repeats)
  best = max((n for n in rates if n in TORCH_NAMES), key=rates.get, default=None)
  bound_rate = row["bound_image_steps_per_s"]
  return {"rates": rates, "ratios": ratios, "best_torch": best,
          "jinvert_over_best_torch": ratios[best] if best else None,
          "jinvert_bound_fraction": rates["jinvert"] / bound_rate,
          "best_torch_bound_fraction": rates[best] / bound_rate if best else None}


def _reference_tables(model, rows, passes, restarts, steps, repeats, torch, device, precision,
                      log):
  """Checks that every torch reference computes jinvert's step, then times all references
  at every size. Returns (by_size, the headline's ratios, the checked differences)."""
  log(f"references: {min(steps, 50)} steps each, timed at every size in {repeats} rounds "
      "interleaved with jinvert's call of that size")
  differences = None
  if torch is not None:
    from jinvert.bench import torch_reference
    with torch_reference.torch_matmul_precision(torch, precision):
      differences = torch_reference.reference_differences(torch, model, restarts, 5, device)
    report.differences_line(restarts, differences)
  report.reference_table_head(repeats)
  by_size, ratios = {}, {}
  for row in rows:
    measured = _references_at(model, row, passes, restarts, steps, repeats, torch, device,
                              precision)
    by_size[row["restarts"]] = measured
    report.reference_row(row["restarts"], measured)
    if row["restarts"] == restarts:
      ratios = {name: v for name, v in measured["ratios"].items() if name != "jinvert"}
  return by_size, ratios, differences


def _precision_drift(model, restarts, steps, headline_result):
  """How far a lower matmul precision moves the headline's images and probabilities."""
  with jax.default_matmul_precision("highest"):
    _, exact, _ = run_size(model, restarts, steps, 1)
  probs = lambda res: jax.nn.softmax(res.outputs)[jnp.arange(TARGETS), :, jnp.arange(TARGETS)]
  return {"max_abs_image": float(jnp.max(jnp.abs(headline_result.inputs - exact.inputs))),
          "max_abs_target_prob": float(jnp.max(jnp.abs(probs(headline_result) - probs(exact))))}


def run_benchmark(restarts: int | None = None, steps: int = 200, device: str = "cpu",
                  precision: str = "highest", sizes=None, repeats: int = 3,
                  references: bool = True, largest_up_to: int | None = None,
                  log=log_line, model: str = "mnist-mlp") -> dict:
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
    log: where progress and notes go.
    model: a zoo classifier's name (its seed-0 initial weights) or an ONNX file.
  """
  model = subject(model)
  restarts, sizes, target_device = _checked(model, restarts, steps, device, precision, sizes,
                                            repeats, largest_up_to)
  devices = jax.devices(device)  # every process's: the workload's lanes split over all
  if references and jax.process_count() > 1:
    log(f"a run of {jax.process_count()} processes times jinvert alone: the references (seed "
        "loops, PyTorch) are one process's, so they are skipped")
    references = False
  by_size, ratios, differences, drift, largest = {}, {}, None, None, None
  with jax.default_device(target_device), jax.default_matmul_precision(PRECISIONS[precision]):
    peak_n = 8192 if device == "gpu" else 2048
    peak = matmul_peak(peak_n)
    if jax.process_count() > 1:  # the run's peak: every process's, measured at once, summed
      from jax.experimental import multihost_utils
      peak = float(multihost_utils.process_allgather(np.float64(peak)).sum())
    report.header(model.name, steps, target_device.device_kind, jax.default_backend(),
                  jax.__version__, precision, flops_per_image_step(model), peak, peak_n,
                  len(devices), device)
    torch = _torch(references and _has_twin(model, log), log)
    rows, passes, headline_result = _size_table(model, sizes, restarts, steps, repeats, peak,
                                                torch, device, devices, log)
    headline = next(row for row in rows if row["restarts"] == restarts)
    if references:
      by_size, ratios, differences = _reference_tables(model, rows, passes, restarts, steps,
                                                       repeats, torch, device, precision, log)
    if precision != "highest":
      drift = _precision_drift(model, restarts, steps, headline_result)
      report.drift_line(precision, drift)
    if largest_up_to:
      log(f"largest R for S={steps}: doubling from {restarts} up to {largest_up_to}")
      largest = largest_restarts(model, steps, restarts, largest_up_to, target_device, log,
                                 devices)
      if largest:
        report.largest_line(steps, largest_up_to, largest)
  return {"model": model.name, "backend": jax.default_backend(),
          "device_kind": target_device.device_kind, "restarts": restarts, "steps": steps, "precision": precision,
          "image_steps_per_s": headline["image_steps_per_s"], "gflops": headline["gflops"],
          "matmul_peak_gflops": peak, "peak_fraction": headline["peak_fraction"],
          "compile_seconds": headline["compile_seconds"],
          "ratios": {name: ratios.get(name) for name in ("seed_loop", "class_loop") + TORCH_NAMES},
          "by_size": {str(r): {k: v[k] for k in ("jinvert_over_best_torch", "best_torch",
                                                 "jinvert_bound_fraction",
                                                 "best_torch_bound_fraction")}
                      for r, v in by_size.items()},
          "reference_differences": differences, "precision_drift": drift,
          "devices": len(devices), "largest": largest, "sizes": rows}
