"""The conditional generator: sampling is keyed and follows the label."""

import jax
import numpy as np

from jinvert import generate, models


def test_generator_sampling_is_deterministic_for_a_key():
  module = models.get_model("mnist-cvae").module()
  params = models.get_model("mnist-cvae").init_params(jax.random.key(0))
  a = generate.sample(module, params, [1, 7], 3, jax.random.key(5))
  b = generate.sample(module, params, [1, 7], 3, jax.random.key(5))
  c = generate.sample(module, params, [1, 7], 3, jax.random.key(6))
  assert a.shape == (2, 3, 28, 28) and float(a.min()) >= 0 and float(a.max()) <= 1
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  # the label matters: same latents, other digit, other image
  d = generate.sample(module, params, [2, 7], 3, jax.random.key(5))
  assert not np.allclose(a[0], d[0]) and np.allclose(a[1], d[1])
