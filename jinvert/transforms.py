"""Transformation robustness (Lucid's trick): random changes applied to the input before the model.

Each transform is `fn(key, x) -> x` on one input, acting on its two spatial axes (by default
the last two: (H, W) or channels-first (C, H, W); pass `axes=(-3, -2)` for channels-last
(H, W, C)). The stored input stays untransformed. Requiring the objective to hold under small
random changes suppresses pixel-level noise that only this one model reads. `jitter`, `blur`,
`random_scale`, `random_rotate` and `elastic` keep the image's size; `pad` grows it, and
`standard()`, the chain Lucid's feature visualisation uses, pads, transforms and crops back to
the input's size, so that a model of fixed input size can take it.

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


def pad(pixels: int = 12, value: float = 0.5, axes=(-2, -1)):
  """Pads both spatial axes by `pixels` on each side with `value` (grey: the image's edges are
  then nothing special). The image grows; `crop` or `standard` brings it back. Not random."""
  def fn(key, x):
    widths = [(0, 0)] * x.ndim
    for axis in axes:
      widths[axis % x.ndim] = (pixels, pixels)
    return jnp.pad(x, widths, constant_values=value)
  return fn


def crop(height: int, width: int, axes=(-2, -1)):
  """The central `height` x `width` of the image. Not random."""
  def fn(key, x):
    for axis, size in zip(axes, (height, width)):
      start = (x.shape[axis] - size) // 2
      x = jax.lax.slice_in_dim(x, start, start + size, axis=axis % x.ndim)
    return x
  return fn


def _sources(h: int, w: int, matrix, displacement, dtype):
  """(2, h, w): the place each pixel is read from, matrix @ (p - centre) + centre
  (+ displacement[:, p])."""
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2], dtype)
  grid = jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype),
                                indexing="ij"))
  source = jnp.tensordot(matrix.astype(dtype), grid - centre[:, None, None], axes=1) \
      + centre[:, None, None]
  return source if displacement is None else source + displacement


def _resample(x, matrix, axes, displacement=None):
  """x sampled, bilinearly, at matrix @ (p - centre) + centre (+ displacement[:, p]) for every
  position p of its two spatial axes (`_sources`; edge pixels repeat beyond the border: what
  `map_coordinates(order=1, mode="nearest")` gives); linear in x, so gradients pass."""
  axes = tuple(a % x.ndim for a in axes)
  image = jnp.moveaxis(x, axes, (0, 1))
  h, w = image.shape[:2]
  source = _sources(h, w, matrix, displacement, x.dtype)
  # a place beyond the border reads the edge, as the nearest place within it does
  sy, sx = jnp.clip(source[0], 0, h - 1), jnp.clip(source[1], 0, w - 1)
  top, left = jnp.floor(sy), jnp.floor(sx)
  fy, fx = (sy - top)[..., None], (sx - left)[..., None]
  # each pixel's 2 x 2 neighbours as one row, read by one gather: its gradient is one scatter of
  # rows where map_coordinates' was four of single values, 2.4x slower on a CPU
  # (experiments/BENCHMARKS.md, "The capsules' nearest piece and resampling by rows")
  flat = jnp.pad(image.reshape(h, w, -1), ((0, 1), (0, 1), (0, 0)), mode="edge")
  corners = jnp.stack([flat[:-1, :-1], flat[:-1, 1:], flat[1:, :-1], flat[1:, 1:]], 2)
  near = corners.reshape(h * w, 4, -1)[(top * w + left).astype(jnp.int32)]  # (h, w, 4, C)
  sample = (1 - fy) * ((1 - fx) * near[:, :, 0] + fx * near[:, :, 1]) \
      + fy * ((1 - fx) * near[:, :, 2] + fx * near[:, :, 3])
  return jnp.moveaxis(sample.reshape(image.shape), (0, 1), axes)


def random_scale(low: float = 0.9, high: float = 1.1, axes=(-2, -1)):
  """Scales the image about its centre by a random factor in [low, high], keeping its size."""
  def fn(key, x):
    factor = jax.random.uniform(key, (), x.dtype, minval=low, maxval=high)
    return _resample(x, jnp.eye(2, dtype=x.dtype) / factor, axes)
  return fn


def _random_rotation(key, degrees: float, dtype):
  """(2, 2): a rotation by a random angle in [-degrees, degrees]."""
  angle = jnp.deg2rad(jax.random.uniform(key, (), dtype, minval=-degrees, maxval=degrees))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return jnp.stack([jnp.stack([cos, -sin]), jnp.stack([sin, cos])])


def random_rotate(degrees: float = 10.0, axes=(-2, -1)):
  """Rotates the image about its centre by a random angle in [-degrees, degrees]."""
  def fn(key, x):
    return _resample(x, _random_rotation(key, degrees, x.dtype), axes)
  return fn


def _smoothing(n: int, sigma: float):
  """(n, n): a Gaussian of `sigma` positions along one axis, each row summing to 1."""
  i = jnp.arange(n, dtype=jnp.float32)
  weights = jnp.exp(-(i[:, None] - i[None, :]) ** 2 / (2 * sigma ** 2))
  return weights / weights.sum(axis=1, keepdims=True)


def elastic(alpha: float = 34.0, sigma: float = 4.0, degrees: float = 10.0, scale: float = 0.1,
            axes=(-2, -1)):
  """Simard et al.'s (2003) elastic distortion, the way one hand's digits differ from
  another's: every pixel is taken from its place moved by a random field (uniform in [-1, 1]
  at each pixel, smoothed by a Gaussian of `sigma` pixels, times `alpha`), after a rotation in
  [-degrees, degrees] and a scale in [1 - scale, 1 + scale]; one bilinear resampling."""
  def fn(key, x):
    k_field, k_angle, k_scale = jax.random.split(key, 3)
    h, w = (x.shape[a] for a in axes)
    field = jax.random.uniform(k_field, (2, h, w), x.dtype, -1.0, 1.0)
    field = alpha * jnp.einsum("ij,cjk,lk->cil", _smoothing(h, sigma).astype(x.dtype), field,
                               _smoothing(w, sigma).astype(x.dtype))
    factor = jax.random.uniform(k_scale, (), x.dtype, 1 - scale, 1 + scale)
    return _resample(x, _random_rotation(k_angle, degrees, x.dtype) / factor, axes, field)
  return fn


def standard(axes=(-2, -1), pad_value: float = 0.5):
  """Lucid's standard chain for feature visualisation: pad 12 (with `pad_value`, grey by
  default, the background of images that start grey), jitter 8, scale 0.9-1.1, rotate +-10
  degrees, jitter 4; then cropped back to the input's size.

  >>> import jax, jax.numpy as jnp
  >>> standard()(jax.random.key(0), jnp.ones((28, 28))).shape
  (28, 28)
  """
  chain = compose([pad(12, pad_value, axes), jitter(8, axes), random_scale(0.9, 1.1, axes),
                   random_rotate(10.0, axes), jitter(4, axes)])

  def fn(key, x):
    return crop(x.shape[axes[0]], x.shape[axes[1]], axes)(None, chain(key, x))
  return fn
