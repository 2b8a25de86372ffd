"""Transforms: what each does to an image, keyed, and that gradients pass through them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import transforms
from conftest import finite_difference_check

IMAGE = jax.random.uniform(jax.random.key(0), (9, 11))


@pytest.mark.parametrize("axes,shape", [((-2, -1), (9, 11)), ((-3, -2), (9, 11, 3))])
def test_jitter_is_a_roll_within_its_bound(axes, shape):
  image = jax.random.uniform(jax.random.key(1), shape)
  seen = set()
  for i in range(20):
    out = transforms.jitter(2, axes)(jax.random.key(i), image)
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
              if np.array_equal(out, jnp.roll(image, (dy, dx), axis=axes))]
    assert shifts, "not a roll by at most 2 pixels"
    seen.add(shifts[0])
  assert len(seen) > 5  # the key decides the shift


def test_blur_is_the_gaussian_of_the_sigma_its_key_draws():
  key = jax.random.key(3)
  out = transforms.blur(1.5, radius=2)(key, IMAGE)
  sigma = jax.random.uniform(key, (), minval=0.1, maxval=1.5)
  k = jnp.exp(-0.5 * (jnp.arange(-2.0, 3.0) / sigma) ** 2)
  k = k / k.sum()
  want = jax.scipy.signal.convolve2d(IMAGE, jnp.outer(k, k), mode="same")
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_blur_keeps_a_flat_interior_and_the_mass_of_an_impulse():
  flat = transforms.blur(1.0)(jax.random.key(0), jnp.ones((9, 9)))
  np.testing.assert_allclose(flat[2:-2, 2:-2], 1.0, rtol=1e-6)
  impulse = jnp.zeros((9, 9)).at[4, 4].set(1.0)
  assert float(transforms.blur(1.0)(jax.random.key(0), impulse).sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("make", [lambda: transforms.blur(1.0), lambda: transforms.jitter(1),
                                  lambda: transforms.compose([transforms.jitter(2),
                                                              transforms.blur(1.0)])])
def test_gradients_pass_through(make, x64):
  transform = make()
  weights = jax.random.normal(jax.random.key(5), IMAGE.shape, jnp.float64)
  finite_difference_check(lambda x: jnp.sum(weights * transform(jax.random.key(6), x)),
                          IMAGE.astype(jnp.float64), jax.random.key(7))


def test_compose_gives_each_transform_its_own_key():
  jitter, blur = transforms.jitter(2), transforms.blur(1.0)
  key = jax.random.key(9)
  composed = transforms.compose([jitter, blur])(key, IMAGE)
  want = blur(jax.random.fold_in(key, 1), jitter(jax.random.fold_in(key, 0), IMAGE))
  np.testing.assert_array_equal(composed, want)
  again = transforms.compose([jitter, blur])(key, IMAGE)
  other = transforms.compose([jitter, blur])(jax.random.key(10), IMAGE)
  np.testing.assert_array_equal(composed, again)
  assert not np.allclose(composed, other)
