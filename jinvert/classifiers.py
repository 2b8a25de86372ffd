"""A classifier from any source, as one object: a jinvert checkpoint or an ONNX file.

>>> import os, tempfile
>>> from jinvert import checkpoint, models
>>> path = os.path.join(tempfile.mkdtemp(), "mlp.msgpack")
>>> spec = models.get_model("mnist-mlp")
>>> _ = checkpoint.save_checkpoint(path, spec.init_params(jax.random.key(0)), {"model": spec.name})
>>> clf = load_model(path)                        # or load_model("cnn.onnx")
>>> clf.name, clf.input_shape, clf.n_classes, clf.layers[:2]
('mnist-mlp', (28, 28), 10, ('hidden1_pre', 'hidden1'))
>>> logits, activations = clf.apply_fn(clf.params, jnp.zeros((2, 28, 28)))
>>> logits.shape, activations["hidden2"].shape
((2, 10), (2, 256))
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jinvert.input_space import InputSpace
from jinvert.objectives import BatchNormLayer


@dataclasses.dataclass(frozen=True)
class Classifier:
  """What jinvert needs of a classifier.

  Attributes:
    name: the registered model's name, or the ONNX file's stem.
    apply_fn: `fn(params, x) -> (logits, {activation name: value})` over a batch of inputs
      as the model takes them.
    params: its parameters.
    space: its input space: shape, layout, range and normalisation (`jinvert.input_space`).
    n_classes: the width of its output.
    layers: activation names (the first is the default for unit objectives).
    dataset: the data it learned from, when known (`mnist`, `fashion-mnist`), else None.
    metadata: the checkpoint's metadata ({} for ONNX).
    channel_axis: where a feature map keeps its channels, for one input: -1 for flax models
      (H, W, C), 0 for ONNX's (C, H, W).
    batchnorm: its BatchNorm layers (`objectives.BatchNormLayer`: the activation each
      normalises, and its running statistics), for the BatchNorm prior; () when it has none.
  """
  name: str
  apply_fn: Callable
  params: Any
  space: InputSpace
  n_classes: int
  layers: tuple
  dataset: str | None
  metadata: dict
  channel_axis: int = -1
  batchnorm: tuple = ()

  @property
  def input_shape(self) -> tuple:
    return self.space.shape

  def with_space(self, space: InputSpace) -> "Classifier":
    """The same classifier, its inputs in another range or normalisation."""
    return dataclasses.replace(self, space=space)

  def unit_fn(self) -> Callable:
    """`fn(params, u) -> (logits, activations)` on u in [0, 1]: the model as the engine
    searches it (`InputSpace.model_fn`)."""
    return self.space.model_fn(self.apply_fn)

  def layer_shapes(self) -> list:
    """Every activation an objective can name, in the model's order: [{"name", "shape",
    "channels", "kind"}], its shape for one input; a feature map's channels, a dense layer's
    units."""
    _, acts = jax.eval_shape(self.apply_fn, self.params,
                             jax.ShapeDtypeStruct((1,) + tuple(self.input_shape), jnp.float32))
    found = []
    # the model's own order (its first layer is the default), then whatever else it returns
    for name in [n for n in self.layers if n in acts] + [n for n in acts if n not in self.layers]:
      a = acts[name]
      shape = tuple(int(d) for d in a.shape[1:])
      conv = len(shape) == 3
      found.append({"name": name, "shape": list(shape),
                    "channels": shape[self.channel_axis] if conv else int(np.prod(shape)),
                    "kind": "feature map" if conv else "dense"})
    return found


def is_onnx(path) -> bool:
  return Path(path).suffix.lower() == ".onnx"


def load_model(path, what: str = "MODEL", hints: dict | None = None) -> Classifier:
  """Loads a classifier checkpoint (`checkpoint.load_checkpoint`) or `.onnx` file
  (`onnx_import.load_onnx`), checked before it is returned.

  Args:
    path: the file.
    what: how error messages name it (e.g. the command-line argument).
    hints: {task: hint} for a checkpoint of another task (e.g. the command that takes it).
  """
  if is_onnx(path):
    from jinvert.onnx_import import load_onnx
    model = load_onnx(path)
    batchnorm = tuple(BatchNormLayer(x, model.params[mean], model.params[var], 0)
                      for x, mean, var in model.batchnorm)
    return Classifier(Path(path).stem, model.apply_fn, model.params, InputSpace(model.input_shape),
                      model.n_outputs, model.layers, None, {}, channel_axis=0,
                      batchnorm=batchnorm)
  from jinvert import checkpoint, data, models
  params, meta = checkpoint.load_checkpoint(path)
  spec = models.require_task(meta["model"], "classifier", f"{what} {path}", hints)
  batchnorm = tuple(BatchNormLayer(activation, params["batch_stats"][bn]["mean"],
                                   params["batch_stats"][bn]["var"])
                    for activation, bn in spec.batchnorm.items())
  known = data.DATASETS.get(meta.get("dataset"))
  space = InputSpace(spec.input_shape, box=known.box if known else None)
  return Classifier(spec.name, models.apply_with_activations(spec.module(meta.get("init"))),
                    params, space, spec.n_classes, spec.layers,
                    meta.get("dataset"), meta, batchnorm=batchnorm)
