"""Seed 002's learned inverse: its training lowers the loss, and it maps back to inputs."""

import jax
import jax.numpy as jnp
import numpy as np

from jinvert import learned_inverse, models


def test_learned_inverse_training_lowers_the_loss():
  spec = models.get_model("r2rt-mlp")
  params = spec.init_params(jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (64, 28, 28))
  apply_fn = models.apply_with_activations(spec.module())
  _, losses, used = learned_inverse.train_learned_inverse(
      apply_fn, params, images, jax.random.key(2), steps=30, batch_size=32, confidence=0.0)
  assert float(losses[-1]) < 0.9 * float(losses[0]) and float(used.mean()) == 1.0




def test_squash_rescales_each_row_into_the_posts_range():
  p = jnp.array([[2.0, 4.0, 6.0], [-1.0, -1.0, 5.0]])
  out = learned_inverse.squash(p)
  np.testing.assert_allclose(out.min(-1), 0.005, rtol=1e-6)
  np.testing.assert_allclose(out.max(-1), 0.995, rtol=1e-6)
  np.testing.assert_allclose(out[0, 1], 0.5, rtol=1e-6)


def test_generated_hidden_layers_are_read_as_their_class():
  spec = models.get_model("r2rt-mlp")
  params = spec.init_params(jax.random.key(0))
  z, probs = learned_inverse.generate_hidden(params, jnp.arange(10), steps=300)
  assert z.shape == (10, 100)
  np.testing.assert_array_equal(np.argmax(probs, -1), np.arange(10))
  inverse = learned_inverse.init_learned_inverse(jax.random.key(1))
  x, l1 = learned_inverse.project_back(inverse, params, z)
  assert x.shape == (10, 784) and l1.shape == (10, 100) and bool(jnp.all(jnp.isfinite(x)))
