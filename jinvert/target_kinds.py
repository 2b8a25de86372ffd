"""Target kinds: what one lane's target is, how it is checked, and how probable it became.

An objective built without a fixed target reads the target of its lane and names its kind
(`Objective.target_kind`). Each kind is one entry of `KINDS`, used by the engine and the
command line alike:
  check        turns the user's targets into the array the engine maps over, naming any the
               model cannot have;
  probability  how probable one target is under the model's outputs (NaN where that means
               nothing, as for a hidden unit).

  class   an integer class index              class_logit, class_log_prob, cross_entropy
  vector  a full output vector, (T, C)        cross_entropy_to, output_l1, output_l2
  unit    an integer unit index of a layer    unit
  channel a channel index of a feature map    channel, neuron
  value   a regression output value           output_error

>>> import numpy as np
>>> shapes = Shapes(outputs=10, activations={}, layer=None)
>>> check("class", np.array([3, 8]), shapes).tolist()
[3, 8]
>>> check("class", np.array([10]), shapes)
Traceback (most recent call last):
...
jinvert.errors.JinvertError: target 10 is outside the model's 10 classes (valid: 0-9)
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError


class Shapes(NamedTuple):
  """What targets are checked against, for one input.

  Attributes:
    outputs: the width of the model's output.
    activations: {layer name: shape of that activation for one input}.
    layer: the layer the objective reads, or None.
    axis: the channels' axis of that layer's feature map, or None.
  """
  outputs: int
  activations: dict
  layer: str | None
  axis: int | None = None


class TargetKind(NamedTuple):
  """One kind of target: `check(targets, shapes) -> array` and `probability(out, target)`."""
  name: str
  check: Callable
  probability: Callable


def _indices(targets, size: int, what: str, plural: str):
  if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
    raise JinvertError(f"{what} targets must be a 1-D array of integers, got shape "
                       f"{targets.shape} dtype {targets.dtype}")
  bad = targets[(targets < 0) | (targets >= size)]
  if bad.size:
    raise JinvertError(f"target {int(bad[0])} is outside the model's {size} {plural} "
                       f"(valid: 0-{size - 1})")
  return jnp.asarray(targets, jnp.int32)


def _finite(targets):
  targets = targets.astype(np.float32)
  if not np.all(np.isfinite(targets)):
    raise JinvertError("target contains NaN or inf")
  return targets


def _check_class(targets, shapes: Shapes):
  return _indices(targets, shapes.outputs, "class", "classes")


def _check_unit(targets, shapes: Shapes):
  size = shapes.activations[shapes.layer][-1]
  return _indices(targets, size, f"unit of layer {shapes.layer!r}", "units")


def _check_channel(targets, shapes: Shapes):
  shape = tuple(shapes.activations[shapes.layer])
  if len(shape) != 3:
    raise JinvertError(f"layer {shapes.layer!r} has shape {shape} for one input, not a feature "
                       "map (H, W, C) or (C, H, W): channel objectives read convolutional layers; "
                       "for a dense layer use unit objectives")
  return _indices(targets, shape[shapes.axis], f"channel of layer {shapes.layer!r}",
                  f"channels of layer {shapes.layer!r}")


def _check_vector(targets, shapes: Shapes):
  targets = _finite(targets)
  if targets.ndim != 2 or targets.shape[1] != shapes.outputs:
    raise JinvertError(f"target vectors must have shape (T, {shapes.outputs}) for this model's "
                       f"{shapes.outputs} outputs, got {targets.shape}")
  return jnp.asarray(targets)


def _check_value(targets, shapes: Shapes):
  targets = _finite(targets)
  if targets.ndim != 1:
    raise JinvertError(f"value targets must be a 1-D array, got shape {targets.shape}")
  return jnp.asarray(targets)


def _no_probability(out, target):
  return jnp.full((), jnp.nan, out.dtype)


KINDS = {kind.name: kind for kind in (
    TargetKind("class", _check_class, lambda out, target: jax.nn.softmax(out)[target]),
    TargetKind("vector", _check_vector,
               lambda out, target: jax.nn.softmax(out)[jnp.argmax(target)]),
    TargetKind("unit", _check_unit, _no_probability),
    TargetKind("channel", _check_channel, _no_probability),
    TargetKind("value", _check_value, _no_probability),
)}


def check(kind: str | None, targets, shapes: Shapes):
  """The targets as the array the engine maps over, checked against the model (`shapes`);
  targets of an objective that reads none (kind None) need only a leading axis.

  Raises:
    JinvertError: naming the first target the model cannot have.
  """
  targets = np.asarray(targets)
  if targets.ndim == 0:
    raise JinvertError("targets must have a leading axis (one entry per target)")
  if len(targets) == 0:
    raise JinvertError("there are no targets: give at least one")
  if kind is None:
    return jnp.asarray(targets)
  return KINDS[kind].check(targets, shapes)


def probability(kind: str | None) -> Callable:
  """`fn(outputs, target) -> scalar`: how probable the target is (NaN for units and values)."""
  return _no_probability if kind is None else KINDS[kind].probability


def has_probability(kind: str | None) -> bool:
  """Whether a target of this kind has a probability (class and vector targets do)."""
  return kind is not None and KINDS[kind].probability is not _no_probability


def final_probabilities(kind: str | None, outputs, targets):
  """The probability of each lane's target under its final outputs: (T, R, C) -> (T, R)."""
  per_lane = jax.vmap(jax.vmap(probability(kind), in_axes=(0, None)))
  return per_lane(jnp.asarray(outputs), jnp.asarray(targets))
