"""Seed 004: reconstruct the input of a trained scalar regression model from its output.

For y = w x + b the answer is x0 = (y0 - b) / w; the engine finds it by gradient descent on
(f(x) - y0)^2 from x = 1, as the seed does (lr 0.4, 200 iterations). For y = sigmoid(w x + b)
the target must lie strictly inside (0, 1); it is first mapped through the logit, and descent
runs on the pre-activation, where the squared error is a parabola: on the sigmoid output itself
the gradient vanishes wherever the sigmoid saturates (at x = 1 here it is about 1e-13) and the
descent never moves. A target outside (0, 1) is reported unreachable, never NaN.

>>> import jax.numpy as jnp
>>> params = {"params": {"out": {"kernel": jnp.array([[0.4]]), "bias": jnp.array([-25.0])}}}
>>> found = reconstruct(params, 100.0, learning_rate=1.0, steps=100)   # y0 = 100: x0 = 312.5
>>> round(found["x0"], 2), round(found["closed_form_x0"], 2)
(312.5, 312.5)
>>> reconstruct(params, 1.5, "sigmoid")["reachable"]                  # beyond the sigmoid's range
False
"""

import math

import jax
import numpy as np
import optax

from jinvert import exact_inverse, objectives, parameterizations
from jinvert.errors import JinvertError
from jinvert.engine import invert

ACTIVATIONS = ("none", "sigmoid")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def linear_weights(params):
  layer = params["params"]["out"]
  return float(np.asarray(layer["kernel"]).reshape(-1)[0]), float(np.asarray(layer["bias"])[0])


def reconstruct(params, y0: float, activation: str = "none", learning_rate: float = 0.4,
                steps: int = 200, start: float = 1.0) -> dict:
  """Finds x0 with f(x0) = y0 for the `linear` model (optionally under a sigmoid).

  Args:
    params: the linear model's parameters.
    y0: the wanted output.
    activation: `none` (y = w x + b) or `sigmoid` (y = sigmoid(w x + b)).
    learning_rate, steps, start: gradient descent's, the seed's 0.4, 200 and 1.

  Returns:
    A dict: x0 (descent), closed_form_x0, iterations, reachable, y_at_x0, relative_difference,
    x_history (the iterate before each step), and reason when unreachable.
  """
  if activation not in ACTIVATIONS:
    raise JinvertError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
  for name, value in (("target", y0), ("learning rate", learning_rate), ("start", start)):
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
      raise JinvertError(f"{name} {value:g} is not a finite float32 number")
  if not learning_rate > 0:
    raise JinvertError(f"learning rate must be above 0, got {learning_rate:g}")
  w, b = linear_weights(params)
  unreachable = {"x0": None, "closed_form_x0": None, "iterations": 0, "reachable": False,
                 "y_at_x0": None, "relative_difference": None, "x_history": []}
  if activation == "sigmoid":
    try:
      target = float(exact_inverse.sigmoid_preimage(y0))
    except JinvertError as e:
      return dict(unreachable, reason=str(e))
  else:
    target = y0
  if w == 0.0:
    return dict(unreachable, reason=f"the weight is 0: the output is always {b:g}")
  closed = (target - b) / w
  if not abs(closed) <= FLOAT32_MAX:
    return dict(unreachable, reason=f"x0 = {closed:.3g} is beyond float32's range")

  def pre_activation(p, x):
    return x @ p["params"]["out"]["kernel"] + p["params"]["out"]["bias"][None]

  result = invert(pre_activation, params, -objectives.output_error(), np.array([target]),
                  key=jax.random.key(0), input_shape=(1,), steps=steps,
                  optimizer=optax.sgd(learning_rate),
                  parameterization=parameterizations.start_at(start), record_inputs=True)
  x0 = float(result.inputs[0, 0, 0])
  if not math.isfinite(x0):
    raise JinvertError(f"gradient descent diverged (x0 became {x0} within {steps} iterations "
                       f"at learning rate {learning_rate:g}, from start {start:g}); lower the "
                       f"learning rate (below {1 / w ** 2:.3g} converges here)")
  z = w * x0 + b
  y_at = 0.5 * (1.0 + math.tanh(z / 2)) if activation == "sigmoid" else z
  history = np.asarray(result.input_history[:, 0, 0, 0]).tolist() + [x0]
  return {"x0": x0, "closed_form_x0": closed, "iterations": steps, "reachable": True,
          "y_at_x0": y_at, "relative_difference": abs(x0 - closed) / max(abs(closed), 1e-12),
          "x_history": history}
