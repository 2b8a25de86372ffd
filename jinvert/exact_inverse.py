"""Exact inverses, which need no search: a dense layer by least squares, a sigmoid by its logit.

A dense layer y = x W + b is inverted through the pseudo-inverse (the minimum-norm preimage, or
the one nearest a reference input); a sigmoid by its logit, after checking that the target lies
strictly inside (0, 1). For the search, see `jinvert.engine`; for seed 002's learned inverse,
`jinvert.learned_inverse`.

>>> import jax.numpy as jnp
>>> kernel, bias = jnp.array([[2.0, 0.0], [0.0, 4.0]]), jnp.array([1.0, 1.0])
>>> dense_preimage(jnp.array([5.0, 9.0]), kernel, bias).tolist()
[2.0, 2.0]
>>> round(float(sigmoid_preimage(0.5)), 6)
0.0
"""

import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError

# The post's logit(p) = log(p / (1 - p)) is inf at 0 and 1 and NaN outside [0, 1]. Clipping
# p to [EPS, 1 - EPS] first bounds it by |logit| <= log((1 - EPS) / EPS), about 16.1 in float32.
EPS = 1e-7


def safe_logit(p, eps: float = EPS):
  """log(p / (1 - p)) with p clipped to [eps, 1 - eps]: finite for every real input, NaN aside."""
  p = jnp.clip(p, eps, 1.0 - eps)
  return jnp.log(p) - jnp.log1p(-p)


def dense_preimage(y, kernel, bias, reference=None, rcond: float = 1e-6):
  """An x with x @ kernel + bias = y (least squares when y is outside the layer's range).

  Args:
    y: (..., out) target outputs.
    kernel: (in, out) weights; bias: (out,).
    reference: optional (..., in) input; the preimage nearest it is returned, else the
      minimum-norm one.

  Returns:
    (..., in) preimages: reference + pinv(kernel) (y - bias - reference @ kernel).
  """
  pinv = jnp.linalg.pinv(kernel, rtol=rcond)
  residual = y - jnp.broadcast_to(bias, jnp.shape(y))
  if reference is None:
    return residual @ pinv
  return reference + (residual - reference @ kernel) @ pinv


def sigmoid_preimage(p, name: str = "target"):
  """logit(p) for p strictly inside (0, 1); a JinvertError naming the first value outside."""
  p = np.asarray(p)
  bad = ~((p > 0) & (p < 1))
  if bad.any():
    raise JinvertError(f"{name} {float(p[bad].flat[0]):g} is outside the sigmoid's range (0, 1): "
                       "no input reaches it")
  return safe_logit(jnp.asarray(p, jnp.float32))


def exact_mlp_inverse(params, hidden, sigmoid_eps: float = 1e-4):
  """Projects hidden representations of a sigmoid MLP back to inputs, layer by layer.

  Each sigmoid is inverted by its logit (values clipped into [eps, 1 - eps], since a hidden
  target may lie on the boundary) and each dense layer by its minimum-norm preimage. The
  representations of the last hidden layer (N, width) map to inputs (N, 784).
  """
  layers = sorted((k for k in params["params"] if k.startswith("dense")), reverse=True)
  h = hidden
  for name in layers:
    layer = params["params"][name]
    h = dense_preimage(safe_logit(h, sigmoid_eps), layer["kernel"], layer["bias"])
    if name != layers[-1]:
      h = jnp.clip(h, 0.0, 1.0)  # the previous layer is a sigmoid: its range is [0, 1]
  return h
