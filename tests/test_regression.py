"""Seed 004: descent through the engine agrees with the closed form; unreachable targets say so."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jinvert import regression
from jinvert.errors import JinvertError


def _linear_params(w, b):
  return {"params": {"out": {"kernel": jnp.array([[w]], jnp.float32),
                             "bias": jnp.array([b], jnp.float32)}}}


@settings(max_examples=10, deadline=None)
@given(w=st.floats(0.05, 3.0), sign=st.sampled_from([-1.0, 1.0]), b=st.floats(-100, 100),
       y0=st.floats(-500, 500))
def test_descent_agrees_with_closed_form_on_random_linear_models(w, sign, b, y0):
  w, b = float(np.float32(sign * w)), float(np.float32(b))  # as the float32 model holds them
  result = regression.reconstruct(_linear_params(w, b), y0, learning_rate=0.25 / w ** 2,
                                  steps=80)
  closed = (y0 - b) / w
  assert result["reachable"]
  assert result["closed_form_x0"] == pytest.approx(closed, rel=1e-6)
  assert result["x0"] == pytest.approx(closed, rel=1e-4, abs=1e-3)


def test_sigmoid_targets_inside_are_reached_and_outside_are_unreachable():
  params = _linear_params(0.4, -30.0)
  inside = regression.reconstruct(params, 0.3, "sigmoid")
  assert inside["reachable"] and inside["y_at_x0"] == pytest.approx(0.3, rel=1e-4)
  for y0 in (0.0, 1.0, 2.0, -3.0):
    out = regression.reconstruct(params, y0, "sigmoid")
    assert out["reachable"] is False and out["x0"] is None and "outside" in out["reason"]
  flat = regression.reconstruct(_linear_params(0.0, 2.0), 1.0)
  assert flat["reachable"] is False and "weight is 0" in flat["reason"]
  with pytest.raises(JinvertError, match="target nan is not a finite float32 number"):
    regression.reconstruct(params, float("nan"))
