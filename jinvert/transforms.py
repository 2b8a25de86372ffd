"""Transformation robustness (Lucid's trick): random jitter and blur applied before the model.

Each transform is `fn(key, x) -> x` on one 2-D image; the stored image stays untransformed.
Requiring the objective to hold under small random changes suppresses pixel-level noise that
only this one model reads.
"""

import jax
import jax.numpy as jnp


def jitter(pixels: int = 2):
  """Rolls the image by a random integer shift in [-pixels, pixels] along both axes."""
  def fn(key, x):
    shift = jax.random.randint(key, (2,), -pixels, pixels + 1)
    return jnp.roll(x, shift, axis=(-2, -1))
  return fn


def blur(max_sigma: float = 1.0, radius: int = 2):
  """Gaussian blur with a random sigma in [0.1, max_sigma], separable, zero-padded."""
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)

  def fn(key, x):
    sigma = jax.random.uniform(key, (), minval=0.1, maxval=max_sigma)
    kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = jax.vmap(lambda r: jnp.convolve(r, kernel, mode="same"))(x)
    return jax.vmap(lambda c: jnp.convolve(c, kernel, mode="same"), in_axes=1, out_axes=1)(rows)
  return fn


def compose(transforms):
  """One transform applying each of `transforms` in turn, each with its own key."""
  transforms = tuple(transforms)

  def fn(key, x):
    for i, t in enumerate(transforms):
      x = t(jax.random.fold_in(key, i), x)
    return x
  return fn
