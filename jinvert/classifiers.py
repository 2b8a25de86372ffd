"""A classifier from any source, as the commands see it: a jinvert checkpoint or an ONNX file.

    clf = load("checkpoints/mnist-mlp.msgpack")     # or load("cnn.onnx")
    logits, activations = clf.apply_fn(clf.params, x)  # x: (N, *clf.input_shape)

`layout` names what one input is, from its shape: a vector of features (F,), a grayscale image
(H, W), or an image with channels first (C, H, W) or last (H, W, C).
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable, NamedTuple

from jinvert.errors import JinvertError


@dataclasses.dataclass(frozen=True)
class Classifier:
  """What the commands need of a classifier.

  Attributes:
    name: the registered model's name, or the ONNX file's stem.
    apply_fn: `fn(params, x) -> (logits, {activation name: value})` over a batch.
    params: its parameters.
    input_shape: one input's shape.
    n_classes: the width of its output.
    layers: activation names (the first is the default for unit objectives).
    dataset: the data it learned from, when known (`mnist`, `fashion-mnist`), else None.
    metadata: the checkpoint's metadata ({} for ONNX).
  """
  name: str
  apply_fn: Callable
  params: Any
  input_shape: tuple
  n_classes: int
  layers: tuple
  dataset: str | None
  metadata: dict


def is_onnx(path) -> bool:
  return Path(path).suffix.lower() == ".onnx"


def load(path, what: str = "CHECKPOINT", hints: dict | None = None) -> Classifier:
  """Loads a classifier checkpoint or `.onnx` file (see `checkpoint.load_checkpoint`,
  `onnx_import.load_onnx`); `hints` name the command for checkpoints of other tasks."""
  if is_onnx(path):
    from jinvert.onnx_import import load_onnx
    model = load_onnx(path)
    return Classifier(Path(path).stem, model.apply_fn, model.params, model.input_shape,
                      model.n_outputs, model.layers, None, {})
  from jinvert import checkpoint, models
  params, meta = checkpoint.load_checkpoint(path)
  spec = models.require_task(meta["model"], "classifier", f"{what} {path}", hints)
  return Classifier(spec.name, models.apply_with_activations(spec.module(meta.get("init"))),
                    params, spec.input_shape, spec.n_classes, spec.layers, meta.get("dataset"),
                    meta)


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
  axis is the small one (1 to 4 channels), else channels-last when the last one is."""
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
