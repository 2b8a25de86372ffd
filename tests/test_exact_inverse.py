"""Exact inverses: the preimage reproduces the layer, is minimal, and the logit checks its range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import exact_inverse, models
from jinvert.errors import JinvertError


def test_safe_logit_is_finite_at_and_beyond_the_ends():
  p = jnp.array([0.0, 1.0, -0.5, 1.5, 1e-30, 1 - 1e-9, 0.5], jnp.float32)
  values = exact_inverse.safe_logit(p)
  assert bool(jnp.all(jnp.isfinite(values)))
  assert float(values[6]) == 0.0 and float(values[0]) < -15 and float(values[1]) > 15
  grads = jax.vmap(jax.grad(exact_inverse.safe_logit))(p)
  assert bool(jnp.all(jnp.isfinite(grads)))
  np.testing.assert_allclose(jax.nn.sigmoid(exact_inverse.safe_logit(jnp.array([0.2, 0.7]))), [0.2, 0.7],
                             rtol=1e-6)


def test_dense_preimage_reproduces_the_layer_output():
  k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
  kernel = jax.random.normal(k1, (20, 6))  # wide: many preimages
  bias = jax.random.normal(k2, (6,))
  y = jax.random.normal(k3, (5, 6))
  x = exact_inverse.dense_preimage(y, kernel, bias)
  np.testing.assert_allclose(x @ kernel + bias[None], y, atol=1e-4)
  reference = jax.random.normal(k4, (5, 20))
  near = exact_inverse.dense_preimage(y, kernel, bias, reference)
  np.testing.assert_allclose(near @ kernel + bias[None], y, atol=1e-4)
  # minimum norm, and nearest the reference, among all preimages
  null = jnp.linalg.svd(kernel.T)[2][6:7]  # a row in the null space of x -> x @ kernel
  for step in (0.1, -0.3):
    other = x + step * null
    np.testing.assert_allclose(other @ kernel + bias[None], y, atol=1e-4)
    assert float(jnp.linalg.norm(x[0])) < float(jnp.linalg.norm(other[0]))
    assert float(jnp.linalg.norm(near - reference)) < \
        float(jnp.linalg.norm(near + step * null - reference))


def test_sigmoid_preimage_checks_the_range():
  np.testing.assert_allclose(jax.nn.sigmoid(exact_inverse.sigmoid_preimage([0.25, 0.5])), [0.25, 0.5], rtol=1e-6)
  for bad in (0.0, 1.0, 1.2, -0.1):
    with pytest.raises(JinvertError, match="outside the sigmoid's range"):
      exact_inverse.sigmoid_preimage([0.5, bad])


def test_exact_mlp_inverse_maps_back_to_the_same_hidden_layer():
  spec = models.get_model("r2rt-mlp")
  params = spec.init_params(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28))
  _, acts = models.apply_with_activations(spec.module())(params, x)
  x_back = exact_inverse.exact_mlp_inverse(params, acts["hidden2"])
  _, acts_back = models.apply_with_activations(spec.module())(params, x_back.reshape(4, 28, 28))
  np.testing.assert_allclose(acts_back["hidden2"], acts["hidden2"], atol=2e-3)
