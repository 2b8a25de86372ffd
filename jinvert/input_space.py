"""What one input of a model is: its shape and layout, its range, and the model's normalisation.

The engine optimises u in [0, 1] for every input value. An `InputSpace` says what u stands for:
the input as a person sees it (display space) is `low + (high - low) u`, and the model sees
`(display - mean) / std`. A model carries its input space (`Classifier.space`), so the same
search runs on a 28x28 MNIST model, an ImageNet-normalised colour model or a vector of features.

>>> import jax.numpy as jnp
>>> space = InputSpace((3, 8, 8)).with_range(0, 255).with_normalization([120, 110, 100], [60])
>>> space.layout.kind, space.layout.channels
('chw', 3)
>>> u = jnp.full((2, 3, 8, 8), 0.5)          # a batch of two inputs, halfway up the range
>>> float(space.display(u)[0, 0, 0, 0]), round(float(space.model_input(u)[0, 1, 0, 0]), 4)
(127.5, 0.2917)
"""

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError

# Ranges and means within +-1e9 and standard deviations within [1e-9, 1e9] keep what the model sees
# within +-2e18, leaving float32 (to 3.4e38) 1e20 of room for the model's own arithmetic.
MAX_MAGNITUDE = 1e9
MIN_STD = 1e-9


class Layout(NamedTuple):
  """What one input is.

  Attributes:
    kind: `features` (F,), `gray` (H, W), `chw` (C, H, W) or `hwc` (H, W, C).
    channels: colour channels (1 for gray, F for features).
    channel_axis: the channels' axis in one input, or None.
    spatial_axes: the two image axes (negative indices), or None for features.
  """
  kind: str
  channels: int
  channel_axis: int | None
  spatial_axes: tuple | None


def layout(input_shape) -> Layout:
  """Reads the layout from one input's shape: 3-D inputs are channels-first when the first
  axis is the small one (1 to 4 channels), else channels-last when the last one is.

  >>> layout((28, 28)).kind, layout((28, 28, 3)).spatial_axes, layout((5,)).channels
  ('gray', (-3, -2), 5)
  """
  shape = tuple(input_shape)
  if len(shape) == 1:
    return Layout("features", shape[0], 0, None)
  if len(shape) == 2:
    return Layout("gray", 1, None, (-2, -1))
  if len(shape) == 3 and shape[0] <= 4 < min(shape[1:]):
    return Layout("chw", shape[0], 0, (-2, -1))
  if len(shape) == 3 and shape[2] <= 4 < min(shape[:2]):
    return Layout("hwc", shape[2], 2, (-3, -2))
  raise JinvertError(f"inputs of shape {shape} are neither features (F,), an image (H, W) nor "
                     "an image with 1 to 4 channels first or last")


def _like(u):
  """numpy for numpy arrays (results on the host), jax.numpy for the rest (traced inputs)."""
  return np if isinstance(u, (np.ndarray, np.generic)) else jnp


def _batched(value, u):
  """`value` (broadcastable to one input) with leading axes up to u's, so that it meets a
  batch rank for rank, in u's array library."""
  value = _like(u).asarray(value, np.float32)
  return value if value.ndim == 0 else value.reshape((1,) * (u.ndim - value.ndim) + value.shape)


@dataclasses.dataclass(frozen=True)
class InputSpace:
  """One input's shape, display range [low, high], and the normalisation (mean, std) the model
  expects. `low`, `high`, `mean` and `std` are float32 arrays broadcastable to one input.
  `box`: the pixels of an image that its format scales each drawn object's longer side to
  (MNIST's 20; `data.DATASETS`), None where it is not known.

  Use `with_range` and `with_normalization`, which check what they are given.
  """
  shape: tuple
  low: Any = np.float32(0.0)
  high: Any = np.float32(1.0)
  mean: Any = np.float32(0.0)
  std: Any = np.float32(1.0)
  box: float | None = None

  @property
  def layout(self) -> Layout:
    return layout(self.shape)

  def with_range(self, low, high, what: str = "input range") -> "InputSpace":
    """The same space with the display range [low, high]: two numbers, or arrays shaped like
    one input (per-feature bounds)."""
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    for bound in (low, high):
      if bound.ndim and bound.shape != tuple(self.shape):
        raise JinvertError(f"{what}: bounds shaped {bound.shape}, the model's inputs are "
                           f"{tuple(self.shape)}")
    if not np.all(np.isfinite(low) & np.isfinite(high)) or np.any(low >= high):
      raise JinvertError(f"{what}: every LOW must be below its HIGH, and finite")
    if max(np.abs(low).max(), np.abs(high).max()) > MAX_MAGNITUDE:
      raise JinvertError(f"{what}: every bound must lie within +-{MAX_MAGNITUDE:g}, so that "
                         "what the model sees stays within float32's range")
    return dataclasses.replace(self, low=low, high=high)

  def with_normalization(self, mean, std, what: str = "normalization") -> "InputSpace":
    """The same space, the model seeing (display - mean) / std: one mean and std for every
    value, or one per channel (per feature for a vector); a single std serves every channel."""
    mean = np.atleast_1d(np.asarray(mean, np.float32))
    std = np.atleast_1d(np.asarray(std, np.float32))
    kind, c = self.layout.kind, self.layout.channels
    if len(mean) not in (1, c) or len(std) not in (1, len(mean)):
      raise JinvertError(f"{what} has {len(mean) + len(std)} numbers; this model's {c} "
                         f"{'features' if kind == 'features' else 'channels'} need 2 (one mean, "
                         f"one std) or {2 * c} ({c} means, then {c} stds)")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))) or np.any(std <= 0):
      raise JinvertError(f"{what}: every mean must be finite and every std above 0")
    if np.abs(mean).max() > MAX_MAGNITUDE or std.min() < MIN_STD or std.max() > MAX_MAGNITUDE:
      raise JinvertError(f"{what}: every mean must lie within +-{MAX_MAGNITUDE:g} and every std "
                         f"within [{MIN_STD:g}, {MAX_MAGNITUDE:g}], so that what the model sees "
                         "stays within float32's range")
    std = np.broadcast_to(std, mean.shape)
    if len(mean) > 1 and self.layout.channel_axis is not None:
      per_channel = [1] * len(self.shape)
      per_channel[self.layout.channel_axis] = len(mean)
      return dataclasses.replace(self, mean=mean.reshape(per_channel), std=std.reshape(per_channel))
    return dataclasses.replace(self, mean=mean[0], std=std[0])

  def display(self, u):
    """Inputs in display space for u in [0, 1] (one input, or a batch)."""
    low, high = _batched(self.low, u), _batched(self.high, u)
    return low + (high - low) * u

  def unit(self, display):
    """u in [0, 1] for inputs in display space (one input, or a batch): `display`'s inverse."""
    low, high = _batched(self.low, display), _batched(self.high, display)
    return (display - low) / (high - low)

  def model_input(self, u):
    """What the model sees for u in [0, 1]: (display - mean) / std."""
    return (self.display(u) - _batched(self.mean, u)) / _batched(self.std, u)

  def model_fn(self, apply_fn):
    """`fn(params, u) -> apply_fn(params, model_input(u))`: the model as the engine sees it,
    on a batch of u in [0, 1] (`apply_fn` itself when the space is [0, 1], unnormalised)."""
    if all(np.all(np.asarray(v) == d) for v, d in
           ((self.low, 0), (self.high, 1), (self.mean, 0), (self.std, 1))):
      return apply_fn
    return lambda params, u: apply_fn(params, self.model_input(u))
