"""Target kinds: one table checks targets and reports their probability, for the engine and
the command line alike."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import target_kinds
from jinvert.errors import JinvertError

SHAPES = target_kinds.Shapes(outputs=4, activations={"h": (6,)}, layer="h")


@pytest.mark.parametrize("kind,targets,message", [
    ("class", [0, 4], r"target 4 is outside the model's 4 classes \(valid: 0-3\)"),
    ("class", [-1], "target -1 is outside"),
    ("class", [0.5], "must be a 1-D array of integers"),
    ("vector", [[0.5, np.nan, 0.5, 0.0]], "target contains NaN"),
    ("vector", [[0.5, 0.5]], r"must have shape \(T, 4\) .* got \(1, 2\)"),
    ("unit", [6], "outside the model's 6 units"),
    ("value", [[1.0]], "value targets must be a 1-D array"),
    (None, 3, "must have a leading axis"),
])
def test_bad_targets_are_named(kind, targets, message):
  with pytest.raises(JinvertError, match=message):
    target_kinds.check(kind, np.asarray(targets), SHAPES)


def test_good_targets_come_back_as_the_engine_maps_them():
  assert target_kinds.check("class", np.array([3, 0]), SHAPES).dtype == jnp.int32
  vectors = target_kinds.check("vector", np.eye(4)[[1, 2]], SHAPES)
  assert vectors.shape == (2, 4) and vectors.dtype == jnp.float32


def test_final_probabilities_equal_the_softmax_of_each_lane():
  outputs = jax.random.normal(jax.random.key(0), (3, 5, 4))
  probs = jax.nn.softmax(outputs)
  classes = jnp.array([2, 0, 3])
  np.testing.assert_allclose(target_kinds.final_probabilities("class", outputs, classes),
                             probs[jnp.arange(3), :, classes], rtol=1e-6)
  vectors = jnp.eye(4)[jnp.array([1, 1, 3])] * 0.9
  np.testing.assert_allclose(target_kinds.final_probabilities("vector", outputs, vectors),
                             probs[jnp.arange(3), :, jnp.array([1, 1, 3])], rtol=1e-6)
  assert bool(jnp.all(jnp.isnan(target_kinds.final_probabilities("unit", outputs, classes))))


@pytest.mark.parametrize("layer,axis,targets,message", [
    ("conv", -1, [8], r"target 8 is outside the model's 8 channels of layer 'conv' \(valid: 0-7\)"),
    ("conv", 0, [5], r"target 5 is outside the model's 5 channels of layer 'conv'"),
    ("h", -1, [0], r"layer 'h' has shape \(6,\) .* not a feature map .* use unit objectives"),
])
def test_channel_targets_count_the_feature_maps_channels(layer, axis, targets, message):
  shapes = target_kinds.Shapes(4, {"h": (6,), "conv": (5, 7, 8)}, layer, axis)
  with pytest.raises(JinvertError, match=message):
    target_kinds.check("channel", np.asarray(targets), shapes)
  assert target_kinds.check("channel", np.array([0, 4]), shapes).tolist() == [0, 4] \
      if layer == "conv" else True
