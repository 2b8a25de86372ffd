"""What the command line reads beside the model: its input space, and a start input.

The library applies an input space (`jinvert.input_space`); here the flags that describe one are
read: `--input-range LOW,HIGH` (or an .npy of per-feature bounds) and `--normalize MEAN,STD`.
A `--start` input for counterfactuals is an .npy in display space, a PNG, or `test:INDEX` of a
dataset's test set.
"""

import numpy as np

from jinvert import files
from jinvert.cli import arguments
from jinvert.errors import JinvertError
from jinvert.input_space import InputSpace


def input_space(space: InputSpace, input_range: str | None, normalize: str | None) -> InputSpace:
  """`space` with the range and normalisation the flags give (each left as it is when None)."""
  if input_range is not None and input_range.endswith(".npy"):
    bounds = files.read_npy(input_range, "--input-range")
    if bounds.shape != (2,) + tuple(space.shape):
      raise JinvertError(f"--input-range {input_range}: shaped {bounds.shape}, the model needs "
                         f"(2, {', '.join(map(str, space.shape))})")
    space = space.with_range(bounds[0], bounds[1], "--input-range")
  elif input_range is not None:
    values = arguments.numbers(input_range, "--input-range")
    if len(values) != 2:
      raise JinvertError(f"--input-range: give LOW,HIGH (two numbers) or an .npy of bounds, got "
                         f"{input_range!r}")
    space = space.with_range(*values, what="--input-range")
  if normalize is not None:
    values = arguments.numbers(normalize, "--normalize")
    half = len(values) // 2
    space = space.with_normalization(values[:half], values[half:], "--normalize")
  return space


def start_input(text: str, space: InputSpace, dataset: str | None, data_dir):
  """The --start input in display space, as float32 shaped like one input."""
  input_shape = tuple(space.shape)
  if text.startswith("test:"):
    image = space.display(_test_image(text, dataset, data_dir))
  elif text.lower().endswith(".png"):
    image = space.display(_read_png(text, input_shape))
  else:
    image = files.read_npy(text, "--start").astype(np.float32)
  if image.squeeze().shape == tuple(d for d in input_shape if d != 1):
    image = image.reshape(input_shape)  # (28, 28) for a (1, 28, 28) model, and so on
  if image.shape != input_shape:
    raise JinvertError(f"--start {text}: shaped {image.shape}, the model takes inputs of shape "
                       f"{input_shape}")
  if not np.all(np.isfinite(image)):
    raise JinvertError(f"--start {text}: holds NaN or inf")
  if np.any(image < space.low) or np.any(image > space.high):
    raise JinvertError(f"--start {text}: values outside the input range "
                       f"[{float(np.min(space.low)):g}, {float(np.max(space.high)):g}] "
                       "(see --input-range)")
  return image


def _test_image(text: str, dataset: str | None, data_dir):
  from jinvert import data
  if dataset is None:
    raise JinvertError(f"--start {text}: the model names no dataset; pass --dataset")
  try:
    index = int(text[5:])
  except ValueError:
    raise JinvertError(f"--start {text}: write test:INDEX, e.g. test:0") from None
  test = data.load_dataset(dataset, data_dir).test_images
  if not 0 <= index < len(test):
    raise JinvertError(f"--start {text}: the {dataset} test set has images 0-{len(test) - 1}")
  return test[index]


def _read_png(path, input_shape):
  """A PNG as floats in [0, 1], gray (H, W) or colour (H, W, C), laid out like the model."""
  try:
    import matplotlib.image
    image = np.asarray(matplotlib.image.imread(path), np.float32)
  except FileNotFoundError:
    raise JinvertError(f"--start {path}: no such file") from None
  except Exception as e:  # Pillow raises many types for a file that is not a PNG
    raise JinvertError(f"--start {path}: not a readable PNG ({type(e).__name__})") from None
  if image.dtype.kind != "f" or image.max() > 1:
    image = image / 255.0
  if image.ndim == 3 and image.shape[-1] == 4:
    image = image[..., :3]
  channels = [s for s in input_shape if s <= 4]
  if image.ndim == 3 and (len(input_shape) == 2 or channels == [1]):
    image = image.mean(-1)  # a colour PNG for a grayscale model
  if len(input_shape) == 3 and input_shape[0] <= 4 and image.ndim == 3:
    image = np.moveaxis(image, -1, 0)  # a PNG is channels-last
  return image
