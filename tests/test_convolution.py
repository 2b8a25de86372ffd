"""jinvert.convolution computes lax's convolution and max-pooling, values and gradients, in every
form the models and the ONNX interpreter ask of it (float64: only the summation order differs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jinvert import convolution, models

CASES = [  # (input shape, kernel shape, strides, padding, rhs dilation, dimension numbers)
    ((2, 9, 9, 3), (3, 3, 3, 4), (1, 1), "SAME", None, ("NHWC", "HWIO", "NHWC")),
    ((2, 9, 9, 3), (5, 5, 3, 4), (1, 1), "VALID", None, ("NHWC", "HWIO", "NHWC")),
    ((2, 10, 9, 3), (3, 3, 3, 4), (2, 2), "SAME", None, ("NHWC", "HWIO", "NHWC")),
    ((2, 3, 11, 8), (4, 3, 3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), ("NCHW", "OIHW", "NCHW")),
    ((1, 2, 7, 7), (5, 2, 3, 3), (1, 1), ((1, 1), (1, 1)), (2, 2), ("NCHW", "OIHW", "NCHW")),
    ((2, 6, 6, 1), (3, 3, 1, 2), (3, 3), "VALID", None, ("NHWC", "HWIO", "NHWC")),
]


def _arrays(lhs_shape, rhs_shape):
  a, b = jax.random.split(jax.random.key(0))
  return (jax.random.normal(a, lhs_shape, jnp.float64),
          jax.random.normal(b, rhs_shape, jnp.float64))


@pytest.mark.parametrize("lhs_shape, rhs_shape, strides, padding, dilation, numbers", CASES)
def test_convolution_and_its_gradients_equal_lax(lhs_shape, rhs_shape, strides, padding,
                                                 dilation, numbers, x64):
  lhs, rhs = _arrays(lhs_shape, rhs_shape)
  ours = lambda l, r: convolution.conv_general_dilated(
      l, r, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers)
  theirs = lambda l, r: lax.conv_general_dilated(
      l, r, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers)
  y = ours(lhs, rhs)
  assert y.shape == theirs(lhs, rhs).shape
  np.testing.assert_allclose(y, theirs(lhs, rhs), rtol=1e-12, atol=1e-12)
  cotangent = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)
  grads = lambda f: jax.grad(lambda l, r: jnp.sum(f(l, r) * cotangent), (0, 1))(lhs, rhs)
  for got, want in zip(grads(ours), grads(theirs)):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_patches_path_is_what_the_cpu_runs():
  """The CPU lowering holds one dot and no convolution, so the fast path is the one timed."""
  lhs, rhs = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 4))
  hlo = jax.jit(lambda l, r: convolution.conv_general_dilated(
      l, r, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))).lower(
          lhs, rhs).compile().as_text()
  assert "convolution(" not in hlo and "dot(" in hlo


def test_grouped_and_input_dilated_convolutions_fall_back_to_lax(x64):
  lhs, rhs = _arrays((2, 4, 8, 8), (6, 2, 3, 3))
  kwargs = dict(dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=2)
  np.testing.assert_array_equal(
      convolution.conv_general_dilated(lhs, rhs, (1, 1), "SAME", **kwargs),
      lax.conv_general_dilated(lhs, rhs, (1, 1), "SAME", **kwargs))
  lhs, rhs = _arrays((1, 2, 5, 5), (3, 2, 3, 3))
  kwargs = dict(lhs_dilation=(2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW"))
  np.testing.assert_array_equal(
      convolution.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)), **kwargs),
      lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)), **kwargs))


def test_vmapped_convolution_equals_the_batched_one(x64):
  """The ONNX interpreter runs one example at a time under vmap."""
  lhs, rhs = _arrays((5, 1, 3, 8, 8), (4, 3, 3, 3))
  conv = lambda l: convolution.conv_general_dilated(
      l, rhs, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
  np.testing.assert_allclose(jax.vmap(conv)(lhs)[:, 0], conv(lhs[:, 0]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, window, strides, padding", [
    ((2, 8, 6, 3), (1, 2, 2, 1), None, None),
    ((2, 3, 9, 9), (1, 1, 3, 3), None, None),
    ((2, 3, 9, 9), (1, 1, 3, 3), (1, 1, 2, 2), None),          # overlapping: lax's
    ((2, 3, 7, 7), (1, 1, 2, 2), None, None),                  # not divisible: lax's
    ((2, 3, 8, 8), (1, 1, 2, 2), None, ((0, 0), (0, 0), (1, 1), (1, 1))),
])
def test_max_pool_and_its_gradient_equal_reduce_window(shape, window, strides, padding, x64):
  x = jax.random.normal(jax.random.key(2), shape, jnp.float64)  # no ties: gradients agree
  ours = lambda x: convolution.max_pool(x, window, strides, padding)
  theirs = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, window, strides or window,
                                       padding or ((0, 0),) * x.ndim)
  np.testing.assert_array_equal(ours(x), theirs(x))
  cotangent = jax.random.normal(jax.random.key(3), ours(x).shape, jnp.float64)
  np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(ours(x) * cotangent))(x),
                                jax.grad(lambda x: jnp.sum(theirs(x) * cotangent))(x))


@pytest.mark.parametrize("name", ["mnist-cnn", "lenet5", "cnn", "judge-resnet"])
def test_models_compute_what_lax_convolutions_compute(name, monkeypatch, x64):
  """The zoo's convnets give what they gave with lax's convolution and pooling, from the same
  parameter tree (so every checkpoint saved before still loads and means the same)."""
  spec = models.get_model(name)
  params = jax.tree.map(lambda a: a.astype(jnp.float64), spec.init_params(jax.random.key(0)))
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28), jnp.float64)
  ours = spec.module().apply(params, x)
  monkeypatch.setattr(convolution, "conv_general_dilated", lax.conv_general_dilated)
  monkeypatch.setattr(convolution, "max_pool", lambda x, w, s=None, p=None: lax.reduce_window(
      x, -jnp.inf, lax.max, w, s or w, p or ((0, 0),) * x.ndim))
  np.testing.assert_allclose(ours, spec.module().apply(params, x), rtol=1e-10, atol=1e-10)
