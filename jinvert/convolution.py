"""Convolution and max-pooling as XLA's CPU runs them fastest: shifted slices and one matrix
product, and pooling as a reshape and a max.

Why: on the CPU, XLA's own convolution and the select-and-scatter that `reduce_window` max
pooling's gradient becomes run far below the machine's matrix-product speed; mnist-cnn's
inversion step took 141 ms at 320 images with them and 21 ms with these, the same arithmetic
(experiments/BENCHMARKS.md, "Convolutions"). A convolution is a sum over kernel offsets of a
shifted (strided) slice of the padded input times that offset's kernel slice; the slices
concatenated on the channel axis make it one product, whose gradient is a product and the pads
and adds XLA fuses. Max-pooling whose windows tile the input is a reshape and a max, whose
gradient is a mask.

Both are drop-in replacements for their `lax` counterparts, and only the CPU lowering changes
(`lax.platform_dependent`): a GPU or TPU keeps its own convolution. Forms outside the fast path
(input dilation, grouped convolutions, overlapping or padded pools) use lax's everywhere.

One difference: where a pooling window holds several equal maxima, `reduce_window`'s gradient
goes to one of them and a max's is shared among them. After a ReLU those ties are zeros, whose
gradient the ReLU stops either way.
"""

import itertools

import jax.numpy as jnp
from jax import lax


def _patches_conv(lhs, rhs, window_strides, padding, rhs_dilation, dimension_numbers,
                  precision, preferred_element_type):
  spec = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  lhs_spec, rhs_spec, out_spec = spec
  x = jnp.transpose(lhs, (lhs_spec[0],) + tuple(lhs_spec[2:]) + (lhs_spec[1],))
  k = jnp.transpose(rhs, tuple(rhs_spec[2:]) + (rhs_spec[1], rhs_spec[0]))  # (window..., I, O)
  window = k.shape[:-2]
  dilation = tuple(rhs_dilation or (1,) * len(window))
  if isinstance(padding, str):
    dilated = tuple((w - 1) * d + 1 for w, d in zip(window, dilation))
    padding = lax.padtype_to_pads(x.shape[1:-1], dilated, window_strides, padding)
  x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in padding]
              + [(0, 0, 0)])
  out = tuple((size - (w - 1) * d - 1) // s + 1
              for size, w, d, s in zip(x.shape[1:-1], window, dilation, window_strides))
  columns = []
  for offset in itertools.product(*map(range, window)):
    start = tuple(o * d for o, d in zip(offset, dilation))
    limit = tuple(b + (n - 1) * s + 1 for b, n, s in zip(start, out, window_strides))
    columns.append(lax.slice(x, (0,) + start + (0,), (x.shape[0],) + limit + (x.shape[-1],),
                             (1,) + tuple(window_strides) + (1,)))
  y = lax.dot_general(jnp.concatenate(columns, axis=-1), k.reshape(-1, k.shape[-1]),
                      (((x.ndim - 1,), (0,)), ((), ())), precision=precision,
                      preferred_element_type=preferred_element_type)
  source = {out_spec[0]: 0, out_spec[1]: y.ndim - 1}
  source.update({axis: 1 + i for i, axis in enumerate(out_spec[2:])})
  return jnp.transpose(y, [source[axis] for axis in range(y.ndim)])


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, as one matrix product of shifted slices on the CPU.

  >>> import jax.numpy as jnp
  >>> x, k = jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 2))
  >>> y = conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  >>> y.shape, float(y[0, 2, 2, 0]), float(y[0, 0, 0, 0])  # 9 taps inside, 4 in a corner
  ((1, 5, 5, 2), 9.0, 4.0)
  """
  lax_conv = lambda lhs, rhs: lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type)
  if (feature_group_count != 1 or batch_group_count != 1
      or any(d != 1 for d in lhs_dilation or ())):
    return lax_conv(lhs, rhs)
  patches = lambda lhs, rhs: _patches_conv(lhs, rhs, window_strides, padding, rhs_dilation,
                                           dimension_numbers, precision, preferred_element_type)
  return lax.platform_dependent(lhs, rhs, cpu=patches, default=lax_conv)


def max_pool(x, window_dimensions, window_strides=None, padding=None, window_dilation=None):
  """`lax.reduce_window(x, -inf, lax.max, window_dimensions, window_strides, padding,
  window_dilation=window_dilation)`, as a reshape and a max where the windows tile `x`
  (strides equal to the window, no padding or dilation, every size divisible), on every
  platform: the two agree to the bit.

  >>> import jax.numpy as jnp
  >>> max_pool(jnp.arange(16.0).reshape(4, 4), (2, 2)).tolist()
  [[5.0, 7.0], [13.0, 15.0]]
  """
  window_strides = tuple(window_strides or window_dimensions)
  padding = tuple(map(tuple, padding or ((0, 0),) * x.ndim))
  if (tuple(window_dimensions) != window_strides or any(p != (0, 0) for p in padding)
      or any(d != 1 for d in window_dilation or ())
      or any(n % w for n, w in zip(x.shape, window_dimensions))):
    return lax.reduce_window(x, -jnp.inf, lax.max, tuple(window_dimensions), window_strides,
                             padding, window_dilation=window_dilation)
  split = tuple(itertools.chain.from_iterable((n // w, w) for n, w in
                                              zip(x.shape, window_dimensions)))
  return jnp.max(x.reshape(split), axis=tuple(range(1, 2 * x.ndim, 2)))


def max_pool_2d(x, size: int = 2):
  """Non-overlapping `size` x `size` max-pooling of channels-last (..., H, W, C) images.

  >>> import jax.numpy as jnp
  >>> max_pool_2d(jnp.ones((3, 28, 28, 16))).shape
  (3, 14, 14, 16)
  """
  return max_pool(x, (1,) * (x.ndim - 3) + (size, size, 1))


def conv(features: int, kernel_size, **kwargs):
  """flax's `nn.Conv` with this module's convolution (same parameters, same checkpoints).

  >>> import jax, jax.numpy as jnp
  >>> layer = conv(4, (3, 3))
  >>> params = layer.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))
  >>> layer.apply(params, jnp.ones((2, 8, 8, 1))).shape
  (2, 8, 8, 4)
  """
  import flax.linen as nn
  return nn.Conv(features, kernel_size, conv_general_dilated=conv_general_dilated, **kwargs)


__all__ = ["conv_general_dilated", "max_pool", "max_pool_2d", "conv"]
