"""PyTorch references for the benchmark: the same step written the way a torch expert would.

Torch is an optional dependency (`pip install 'jinvert[bench]'`): every function here takes the
imported `torch` module, and nothing in jinvert imports torch at module level.

  torch_eager    autograd, op by op, every target and restart batched;
  torch_compile  the whole step (forward, `torch.func.grad` of the summed target logits, the
                 update and the clip) under torch.compile(fullgraph=True); on a GPU with
                 mode="reduce-overhead" (CUDA graphs).
"""

import contextlib
import time

import numpy as np

from jinvert import engine, parameterizations
from jinvert.bench.workload import LEARNING_RATE, dense_layers, workload

# torch.set_float32_matmul_precision's names for jinvert's three settings, so that PyTorch is
# compared in the precision jinvert runs in.
TORCH_PRECISIONS = {"highest": "highest", "tf32": "high", "bf16": "medium"}


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
  """The benchmark's step in PyTorch, every target and restart batched: `torch_eager` and
  `torch_compile` (see the module docstring).

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


def reference_differences(torch, params, restarts: int, steps: int, device: str) -> dict:
  """Each PyTorch step, run `steps` times from jinvert's own starting images, against
  jinvert's result: {name: max |image difference|}. No reference may skip work unseen."""
  fn, targets, keys = workload(params, restarts, steps)
  result = fn(params, targets, keys)
  start = engine.starting_inputs(parameterizations.pixels(), keys, (28, 28))
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


def products_seconds(torch, params, batch: int, steps: int, device: str) -> float:
  """Seconds per step of the step's six products with torch's matmuls, op by op, chained as in
  `workload.products_seconds`."""
  dev = "cuda" if device == "gpu" else "cpu"
  ws = [torch.tensor(np.asarray(l["kernel"]), device=dev) for l in dense_layers(params)]
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
  return min(timed() for _ in range(3)) / steps
