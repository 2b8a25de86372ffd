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
  try:
    return data.test_image(dataset, index, data_dir)
  except JinvertError as e:
    raise JinvertError(f"--start {text}: {e}") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk every PNG ends with
MAX_PNG_BYTES = 64 << 20


def png_size(raw: bytes, path) -> tuple:
  """(height, width) from a PNG's header, read before anything is decoded."""
  if len(raw) < 24 or raw[:8] != PNG_SIGNATURE or raw[12:16] != b"IHDR":
    raise JinvertError(f"--start {path}: not a PNG file")
  if not raw.endswith(PNG_END):
    raise JinvertError(f"--start {path}: a truncated PNG (it does not end with its IEND chunk)")
  return int.from_bytes(raw[20:24], "big"), int.from_bytes(raw[16:20], "big")


def _read_png(path, input_shape):
  """A PNG as floats in [0, 1], gray (H, W) or colour (H, W, C), laid out like the model; its
  size is checked against the model's from the header, before the image is decoded."""
  import io

  from jinvert import files
  from jinvert.input_space import layout

  raw = files.read_input(path, "--start image", MAX_PNG_BYTES)
  height, width = png_size(raw, path)
  axes = layout(input_shape).spatial_axes
  want = tuple(input_shape[a] for a in axes) if axes else None
  if want != (height, width):
    raise JinvertError(f"--start {path}: a {width}x{height} PNG; the model takes "
                       + (f"{want[1]}x{want[0]} images" if want else
                          f"{input_shape[0]} features, not an image"))
  try:
    from PIL import Image  # matplotlib's own reader; it would decode a truncated file as black
    Image.open(io.BytesIO(raw)).verify()  # every chunk there, every checksum right
    with Image.open(io.BytesIO(raw)) as decoded:
      if decoded.mode.startswith("I"):  # 16-bit gray
        image = np.asarray(decoded, np.float32) / 65535.0
      else:
        image = np.asarray(decoded.convert("RGBA" if "A" in decoded.mode else "RGB"
                                           if decoded.mode != "L" else "L"), np.float32) / 255.0
  except Exception as e:  # Pillow raises many types for a file that is not a PNG
    raise JinvertError(f"--start {path}: not a readable PNG ({type(e).__name__})") from None
  if image.ndim == 3 and image.shape[-1] == 4:
    image = image[..., :3]
  channels = [s for s in input_shape if s <= 4]
  if image.ndim == 3 and (len(input_shape) == 2 or channels == [1]):
    image = image.mean(-1)  # a colour PNG for a grayscale model
  if len(input_shape) == 3 and input_shape[0] <= 4 and image.ndim == 3:
    image = np.moveaxis(image, -1, 0)  # a PNG is channels-last
  return image
