"""Transformation robustness (Lucid's trick): random jitter and blur applied before the model.

Each transform is `fn(key, x) -> x` on one input, acting on its two spatial axes (by default
the last two: (H, W) or channels-first (C, H, W); pass `axes=(-3, -2)` for channels-last
(H, W, C)). The stored input stays untransformed. Requiring the objective to hold under small
random changes suppresses pixel-level noise that only this one model reads.

>>> import jax, jax.numpy as jnp
>>> image = jnp.zeros((5, 5)).at[2, 2].set(1.0)
>>> robust = compose([jitter(1), blur(1.0)])       # each transform draws from its own key
>>> seen = robust(jax.random.key(0), image)
>>> seen.shape, round(float(seen.sum()), 4)        # moved and spread, nothing lost
((5, 5), 1.0)
"""

import jax
import jax.numpy as jnp


def jitter(pixels: int = 2, axes=(-2, -1)):
  """Rolls the image by a random integer shift in [-pixels, pixels] along both spatial axes."""
  def fn(key, x):
    shift = jax.random.randint(key, (2,), -pixels, pixels + 1)
    return jnp.roll(x, shift, axis=axes)
  return fn


def _convolve_axis(x, kernel, axis: int):
  """'same', zero-padded convolution of `x` along `axis` with a symmetric odd `kernel`, as
  shifted, weighted copies: static slices that XLA fuses into one elementwise loop (a
  convolution per row and column, vmapped, ran 10x slower on the CPU)."""
  radius = (kernel.shape[0] - 1) // 2
  padding = [(0, 0)] * x.ndim
  padding[axis] = (radius, radius)
  padded = jnp.pad(x, padding)
  n = x.shape[axis]
  return sum(kernel[k] * jax.lax.slice_in_dim(padded, k, k + n, axis=axis)
             for k in range(2 * radius + 1))


def blur(max_sigma: float = 1.0, radius: int = 2, axes=(-2, -1)):
  """Gaussian blur with a random sigma in [0.1, max_sigma], separable, zero-padded."""
  def fn(key, x):
    offsets = jnp.arange(-radius, radius + 1, dtype=x.dtype)
    sigma = jax.random.uniform(key, (), x.dtype, minval=0.1, maxval=max_sigma)
    kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    for axis in axes:
      x = _convolve_axis(x, kernel, axis % x.ndim)
    return x
  return fn


def compose(transforms):
  """One transform applying each of `transforms` in turn, each with its own key."""
  transforms = tuple(transforms)

  def fn(key, x):
    for i, t in enumerate(transforms):
      x = t(jax.random.fold_in(key, i), x)
    return x
  return fn
