"""PyTorch references for the benchmark: the same step written the way a torch expert would.

Torch is an optional dependency (`pip install 'jinvert[bench]'`): every function here takes the
imported `torch` module, and nothing in jinvert imports torch at module level.

  torch_eager    autograd, op by op, every target and restart batched, convolutions in
                 channels_last (BatchNorm folded into them);
  torch_compile  the whole step (forward, `torch.func.grad` of the summed target logits, the
                 update and the clip) under torch.compile(fullgraph=True); on a GPU with
                 mode="reduce-overhead" (CUDA graphs).
"""

import contextlib
import time

import numpy as np

from jinvert import engine, parameterizations
from jinvert.bench.workload import LEARNING_RATE, TARGETS, product_shapes, workload

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


def _tensor(torch, a, dev):
  return torch.tensor(np.asarray(a), device=dev)


def _conv_weights(torch, conv, dev, bn=None, stats=None):
  """A flax HWIO kernel as torch's OIHW (channels_last), BatchNorm's inference affine folded
  in, as a torch user serving the model would."""
  w, b = np.asarray(conv["kernel"]).transpose(3, 2, 0, 1), np.asarray(conv["bias"])
  if bn is not None:
    scale = np.asarray(bn["scale"]) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
    w, b = w * scale[:, None, None, None], (b - np.asarray(stats["mean"])) * scale + bn["bias"]
  return (_tensor(torch, w, dev).contiguous(memory_format=torch.channels_last),
          _tensor(torch, b, dev))


def _mlp(torch, params, dev):
  p = params["params"]
  weights = [(_tensor(torch, p[n]["kernel"], dev), _tensor(torch, p[n]["bias"], dev))
             for n in sorted(k for k in p if k.startswith("dense")) + ["out"]]

  def forward(x):
    h = x.reshape(x.shape[0], -1)
    for i, (w, b) in enumerate(weights):
      h = h @ w + b
      if i < len(weights) - 1:
        h = torch.relu(h)
    return h
  return forward


def _dense_head(torch, p, dev):
  head = [(_tensor(torch, p[n]["kernel"], dev), _tensor(torch, p[n]["bias"], dev))
          for n in ("dense1", "out")]
  return lambda h: torch.relu(h @ head[0][0] + head[0][1]) @ head[1][0] + head[1][1]


def _convnet(torch, params, dev):
  """mnist-cnn (`models.ConvNet`): conv 3x3 same, BatchNorm, ReLU, max-pool, twice; dense."""
  import torch.nn.functional as F
  p, stats = params["params"], params["batch_stats"]
  convs = [_conv_weights(torch, p[f"conv{i}"], dev, p[f"bn{i}"], stats[f"bn{i}"]) for i in (1, 2)]
  head = _dense_head(torch, p, dev)

  def forward(x):
    h = x[:, None].contiguous(memory_format=torch.channels_last)
    for w, b in convs:
      h = F.max_pool2d(torch.relu(F.conv2d(h, w, b, padding=1)), 2)
    return head(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1))  # flax flattens H, W, C
  return forward


def _lenet5(torch, params, dev):
  """LeNet-5 (`models.LeNet5`): 28x28 padded to 32; conv 5x5, ReLU, max-pool, twice; conv 5x5,
  ReLU; dense."""
  import torch.nn.functional as F
  p = params["params"]
  convs = [_conv_weights(torch, p[f"conv{i}"], dev) for i in (1, 2, 3)]
  head = _dense_head(torch, p, dev)

  def forward(x):
    h = F.pad(x, (2, 2, 2, 2))[:, None].contiguous(memory_format=torch.channels_last)
    for i, (w, b) in enumerate(convs):
      h = torch.relu(F.conv2d(h, w, b))
      if i < 2:
        h = F.max_pool2d(h, 2)
    return head(h.reshape(h.shape[0], -1))  # 1 x 1 x 120: every order is the same
  return forward


# The zoo's classifiers written in torch, from their flax parameters.
TWINS = {"mnist-mlp": _mlp, "fashion-mlp": _mlp, "mnist-cnn": _convnet, "lenet5": _lenet5,
         "lenet5-half": _lenet5}


def torch_steps(torch, model, restarts: int, device: str) -> dict:
  """The benchmark's step in PyTorch, every target and restart batched: `torch_eager` and
  `torch_compile` (see the module docstring), on `model`'s twin (`TWINS`).

  Returns:
    {name: step(x) -> x}, x shaped (10 R,) + the input shape, rows in target-major order (as
    jinvert's (T, R) lanes flattened).
  """
  dev = "cuda" if device == "gpu" else "cpu"
  forward = TWINS[model.name](torch, model.params, dev)
  targets = torch.arange(TARGETS, device=dev).repeat_interleave(restarts)[:, None]

  def summed_target_logits(x):
    return forward(x).gather(1, targets).sum()

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


def reference_differences(torch, model, restarts: int, steps: int, device: str) -> dict:
  """Each PyTorch step, run `steps` times from jinvert's own starting images, against
  jinvert's result: {name: max |image difference|}. No reference may skip work unseen."""
  fn, targets, keys = workload(model, restarts, steps)
  result = fn(model.params, targets, keys)
  shape = (-1,) + model.input_shape
  start = engine.starting_inputs(parameterizations.pixels(), keys, model.input_shape)
  x0 = torch.tensor(np.asarray(start).reshape(shape), device="cuda" if device == "gpu" else "cpu")
  want = np.asarray(result.inputs).reshape(shape)
  differences = {}
  for name, step in torch_steps(torch, model, restarts, device).items():
    x = x0
    for _ in range(steps):
      x = step(x)
    differences[name] = float(np.max(np.abs(x.detach().cpu().numpy() - want)))
  return differences


def products_seconds(torch, model, batch: int, steps: int, device: str) -> float:
  """Seconds per step of the step's products (`workload.product_shapes`) with torch's
  matmuls, op by op, chained as in `workload.products_seconds`."""
  dev = "cuda" if device == "gpu" else "cpu"
  shapes = product_shapes(model, batch)
  lhs = [torch.rand(b, m, k, device=dev) for b, m, k, n in shapes]
  rhs = [torch.rand(b, k, n, device=dev) for b, m, k, n in shapes]

  def chain_torch(carry):
    total = carry
    for a, w in zip(lhs, rhs):
      total = total + 1e-30 * torch.matmul(a, w + carry).sum()
    return total

  _, timed = torch_timer(torch, chain_torch, torch.zeros(1, device=dev), steps, device)
  timed()
  return min(timed() for _ in range(3)) / steps
