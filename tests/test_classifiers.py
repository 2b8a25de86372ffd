"""Classifiers from any source, and the input space a model carries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import checkpoint, classifiers, models
from jinvert.errors import JinvertError
from jinvert.input_space import InputSpace, layout

pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def test_load_model_reads_a_checkpoint_as_its_zoo_model(tmp_path):
  spec = models.get_model("mnist-cnn")
  params = spec.init_params(jax.random.key(0))
  checkpoint.save_checkpoint(tmp_path / "c.msgpack", params, {"model": spec.name,
                                                                "dataset": "mnist"})
  clf = classifiers.load_model(tmp_path / "c.msgpack")
  assert (clf.name, clf.input_shape, clf.n_classes, clf.layers, clf.dataset) == \
      ("mnist-cnn", (28, 28), 10, spec.layers, "mnist")
  assert clf.space.box == 20.0  # MNIST's format: a digit's longer side fits 20 pixels
  checkpoint.save_checkpoint(tmp_path / "f.msgpack", params, {"model": spec.name,
                                                                "dataset": "fashion-mnist"})
  assert classifiers.load_model(tmp_path / "f.msgpack").space.box == 28.0
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28))
  np.testing.assert_allclose(clf.apply_fn(clf.params, x)[0], spec.module().apply(params, x),
                             rtol=1e-6)


def test_load_model_reads_an_onnx_file_and_names_other_tasks(tmp_path):
  rng = np.random.default_rng(0)
  w, b = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
  graph = helper.make_graph(
      [helper.make_node("Gemm", ["x", "w", "b"], ["y"])], "g",
      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
      [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
  (tmp_path / "m.onnx").write_bytes(
      helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
  clf = classifiers.load_model(tmp_path / "m.onnx")
  assert (clf.name, clf.input_shape, clf.n_classes, clf.dataset, clf.space.box) == \
      ("m", (12,), 3, None, None)
  x = rng.random((4, 12)).astype(np.float32)
  np.testing.assert_allclose(clf.apply_fn(clf.params, x)[0], x @ w + b[None], rtol=1e-5)
  checkpoint.save_checkpoint(tmp_path / "l.msgpack",
                             models.get_model("linear").init_params(jax.random.key(0)),
                             {"model": "linear"})
  with pytest.raises(JinvertError, match="must be a classifier checkpoint; it holds 'linear', "
                                         r"a regression \(use reconstruct\)"):
    classifiers.load_model(tmp_path / "l.msgpack", hints={"regression": "use reconstruct"})


@pytest.mark.parametrize("shape,kind,channels,axes", [
    ((7,), "features", 7, None), ((28, 28), "gray", 1, (-2, -1)),
    ((3, 32, 32), "chw", 3, (-2, -1)), ((32, 32, 3), "hwc", 3, (-3, -2)),
])
def test_layout_is_read_from_the_shape(shape, kind, channels, axes):
  found = layout(shape)
  assert (found.kind, found.channels, found.spatial_axes) == (kind, channels, axes)


def test_an_input_space_maps_the_unit_box_to_what_the_model_sees():
  space = InputSpace((3, 6, 6)).with_range(-1.0, 1.0).with_normalization([0.5, 0.0, -0.5],
                                                                          [2.0, 1.0, 0.5])
  u = jax.random.uniform(jax.random.key(0), (2, 3, 6, 6))
  display = -1.0 + 2.0 * np.asarray(u)
  mean = np.array([0.5, 0.0, -0.5], np.float32).reshape(1, 3, 1, 1)
  std = np.array([2.0, 1.0, 0.5], np.float32).reshape(1, 3, 1, 1)
  np.testing.assert_allclose(space.display(u), display, rtol=1e-6)
  np.testing.assert_allclose(space.model_input(u), (display - mean) / std, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(space.unit(display), np.asarray(u), rtol=1e-5, atol=1e-6)
  seen = space.model_fn(lambda params, x: x)(None, u)
  np.testing.assert_array_equal(seen, space.model_input(u))


def test_per_feature_bounds_and_the_identity_space():
  space = InputSpace((4,)).with_range(np.zeros(4), np.arange(1.0, 5.0))
  np.testing.assert_allclose(space.display(np.full((2, 4), 0.5, np.float32)),
                             [[0.5, 1.0, 1.5, 2.0]] * 2)
  model = lambda params, x: x
  assert InputSpace((28, 28)).model_fn(model) is model  # nothing to apply


@pytest.mark.parametrize("make,message", [
    (lambda s: s.with_range(1.0, 0.0), "every LOW must be below its HIGH"),
    (lambda s: s.with_range(0.0, np.inf), "every LOW must be below its HIGH, and finite"),
    (lambda s: s.with_range(np.zeros(5), 1.0), r"bounds shaped \(5,\)"),
    (lambda s: s.with_normalization([0.1, 0.2], [1.0, 1.0]),
     "has 4 numbers; this model's 3 channels"),
    (lambda s: s.with_normalization([0.1], [0.0]), "every std above 0"),
])
def test_bad_input_spaces_are_named(make, message):
  with pytest.raises(JinvertError, match=message):
    make(InputSpace((3, 8, 8)))


def test_a_classifier_in_another_space_is_searched_in_it():
  spec = models.get_model("mnist-mlp")
  clf = classifiers.Classifier(spec.name, models.apply_with_activations(spec.module()),
                               spec.init_params(jax.random.key(0)), InputSpace((28, 28)), 10,
                               spec.layers, "mnist", {})
  wide = clf.with_space(clf.space.with_range(0.0, 255.0))
  u = jnp.full((1, 28, 28), 0.5)
  np.testing.assert_allclose(wide.unit_fn()(wide.params, u)[0],
                             clf.apply_fn(clf.params, u * 255.0)[0], rtol=1e-6)


def test_batchnorm_layers_come_from_the_checkpoint_and_the_onnx_graph(tmp_path):
  spec = models.get_model("mnist-cnn")
  params = spec.init_params(jax.random.key(0))
  checkpoint.save_checkpoint(tmp_path / "c.msgpack", params, {"model": "mnist-cnn"})
  clf = classifiers.load_model(tmp_path / "c.msgpack")
  assert [(b.activation, b.axis) for b in clf.batchnorm] == [("block1_conv", -1),
                                                              ("block2_conv", -1)]
  np.testing.assert_array_equal(clf.batchnorm[1].var, params["batch_stats"]["bn2"]["var"])
  _, acts = clf.apply_fn(clf.params, jnp.zeros((1, 28, 28)))
  assert acts["block1_conv"].shape == (1, 28, 28, 16)
  mlp = models.get_model("mnist-mlp")
  checkpoint.save_checkpoint(tmp_path / "m.msgpack", mlp.init_params(jax.random.key(0)),
                             {"model": "mnist-mlp"})
  assert classifiers.load_model(tmp_path / "m.msgpack").batchnorm == ()

  rng = np.random.default_rng(0)
  inits = {"w": rng.normal(size=(4, 1, 3, 3)), "s": np.ones(4), "b": np.zeros(4),
           "m": rng.normal(size=4), "v": rng.uniform(1, 2, 4), "w2": rng.normal(size=(4, 3))}
  nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
           helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
           helper.make_node("GlobalAveragePool", ["n"], ["g"]),
           helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "w2"], ["y"])]
  graph = helper.make_graph(
      nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
      [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
  (tmp_path / "bn.onnx").write_bytes(
      helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
  onnx_clf = classifiers.load_model(tmp_path / "bn.onnx")
  (layer,) = onnx_clf.batchnorm
  assert (layer.activation, layer.axis) == ("c", 0)
  np.testing.assert_allclose(layer.mean, inits["m"].astype(np.float32))
