"""The ONNX interpreter against onnxruntime, op by op, and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jinvert.errors import JinvertError  # noqa: E402
from jinvert.onnx_import import load_onnx  # noqa: E402

NEWEST = onnx.defs.onnx_opset_version()
rng = np.random.default_rng(0)


def f32(*shape):
  return rng.normal(size=shape).astype(np.float32)


def make_model(nodes, inits, input_shape, opset, out="y", flatten=True, extra_inputs=()):
  """A graph of `nodes` from input x to `out`, flattened to (N, K) as a classifier's output."""
  nodes = list(nodes)
  if flatten:
    nodes.append(helper.make_node("Flatten", [out], ["logits"], axis=1))
    out = "logits"
  graph = helper.make_graph(
      nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + list(input_shape))]
      + list(extra_inputs), [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", "K"])],
      [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(model, path):
  path.write_bytes(model.SerializeToString())
  return path


N = helper.make_node
IMAGE = (4, 8, 8)
# name: (nodes, initializers, one input's shape)
CASES = {
    "Gemm": ([N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w", "b"], ["y"], alpha=0.5, beta=2.0,
                                             transB=1)], {"w": f32(5, 12), "b": f32(5)}, (12,)),
    "MatMul+Add": ([N("MatMul", ["x", "w"], ["m"]), N("Add", ["m", "b"], ["y"])],
                   {"w": f32(12, 7), "b": f32(7)}, (12,)),
    "Sub+Mul+Div": ([N("Sub", ["x", "a"], ["s"]), N("Mul", ["s", "b"], ["m"]),
                     N("Div", ["m", "c"], ["y"])],
                    {"a": f32(12), "b": f32(12), "c": np.abs(f32(12)) + 1}, (12,)),
    "Relu": ([N("Relu", ["x"], ["y"])], {}, IMAGE),
    "LeakyRelu": ([N("LeakyRelu", ["x"], ["y"], alpha=0.2)], {}, IMAGE),
    "Sigmoid": ([N("Sigmoid", ["x"], ["y"])], {}, IMAGE),
    "Tanh": ([N("Tanh", ["x"], ["y"])], {}, IMAGE),
    "Softmax": ([N("Softmax", ["x"], ["y"], axis=1)], {}, IMAGE),
    "LogSoftmax": ([N("LogSoftmax", ["x"], ["y"], axis=-1)], {}, IMAGE),
    "Reshape": ([N("Reshape", ["x", "shape"], ["y"])], {"shape": np.array([0, -1, 16], np.int64)},
                IMAGE),
    "Transpose": ([N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {}, IMAGE),
    "Conv": ([N("Conv", ["x", "w", "b"], ["y"], pads=[1, 2, 0, 1], strides=[2, 1])],
             {"w": f32(6, 4, 3, 3), "b": f32(6)}, IMAGE),
    "Conv(groups, dilations)": ([N("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 2],
                                   pads=[2, 2, 2, 2])], {"w": f32(6, 2, 3, 3)}, IMAGE),
    "Conv(auto_pad SAME_UPPER)": ([N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER",
                                     strides=[2, 2])], {"w": f32(3, 4, 2, 2)}, IMAGE),
    "MaxPool": ([N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], {}, IMAGE),
    "MaxPool(pads, ceil)": ([N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                               pads=[1, 1, 1, 1], ceil_mode=1)], {}, IMAGE),
    "AveragePool": ([N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], {},
                    IMAGE),
    "AveragePool(include pad)": ([N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2],
                                    pads=[1, 1, 0, 0], count_include_pad=1, strides=[2, 2])],
                                 {}, IMAGE),
    "GlobalAveragePool": ([N("GlobalAveragePool", ["x"], ["y"])], {}, IMAGE),
    "BatchNormalization": ([N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                              epsilon=1e-3)],
                           {"s": f32(4), "b": f32(4), "m": f32(4), "v": np.abs(f32(4)) + 0.5},
                           IMAGE),
    "Dropout+Identity": ([N("Dropout", ["x"], ["d"]), N("Identity", ["d"], ["y"])], {}, IMAGE),
    "Concat": ([N("Relu", ["x"], ["r"]), N("Concat", ["x", "r"], ["y"], axis=1)], {}, IMAGE),
    "Clip": ([N("Clip", ["x", "lo", "hi"], ["y"])],
             {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, IMAGE),
    "Constant": ([N("Constant", [], ["c"], value=numpy_helper.from_array(f32(12), "c")),
                  N("Mul", ["x", "c"], ["y"])], {}, (12,)),
    "Squeeze+Unsqueeze": ([N("Unsqueeze", ["x", "a"], ["u"]), N("Squeeze", ["u", "a"], ["y"])],
                          {"a": np.array([2], np.int64)}, IMAGE),
    "Shape+Gather+Concat+Reshape": ([
        N("Shape", ["x"], ["s"]), N("Gather", ["s", "zero"], ["n"], axis=0),
        N("Unsqueeze", ["n", "zero1"], ["n1"]), N("Concat", ["n1", "minus1"], ["shape"], axis=0),
        N("Reshape", ["x", "shape"], ["y"])],
        {"zero": np.array(0, np.int64), "zero1": np.array([0], np.int64),
         "minus1": np.array([-1], np.int64)}, IMAGE),
}


@pytest.mark.parametrize("opset", [13, NEWEST])
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_onnxruntime(name, opset, tmp_path):
  nodes, inits, shape = CASES[name]
  model = make_model(nodes, inits, shape, opset)
  x = f32(3, *shape)
  want = ort.InferenceSession(model.SerializeToString(),
                              providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
  loaded = load_onnx(save(model, tmp_path / "m.onnx"))
  got, _ = jax.jit(loaded.apply_fn)(loaded.params, jnp.asarray(x))
  if loaded.softmax_output:  # the interpreter returns the logits behind a final Softmax
    got = jax.nn.softmax(got, -1)
  scale = np.max(np.abs(want)) + 1e-12
  np.testing.assert_allclose(np.asarray(got) / scale, want / scale, rtol=1e-5, atol=1e-5)


@pytest.fixture
def x64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_input_gradient_matches_finite_differences(name, tmp_path, x64):
  nodes, inits, shape = CASES[name]
  loaded = load_onnx(save(make_model(nodes, inits, shape, 13), tmp_path / "m.onnx"))
  params = jax.tree.map(lambda a: a.astype(jnp.float64), loaded.params)
  weights = jax.random.normal(jax.random.key(1), (loaded.n_outputs,), jnp.float64)
  # jitted: one compile for the gradient's and the six differences' evaluations, not one per op
  f = jax.jit(lambda x: jnp.sum(loaded.apply_fn(params, x[None])[0][0] * weights))
  x = jax.random.normal(jax.random.key(2), shape, jnp.float64)
  grad = jax.grad(f)(x)
  for i in range(3):
    v = jax.random.normal(jax.random.key(10 + i), shape, jnp.float64)
    eps = 1e-6
    np.testing.assert_allclose(jnp.vdot(grad, v), (f(x + eps * v) - f(x - eps * v)) / (2 * eps),
                               rtol=1e-5, atol=1e-7)


def small_classifier(opset=13, softmax=True):
  nodes = [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w1", "b1"], ["h"]), N("Relu", ["h"], ["r"]),
           N("Gemm", ["r", "w2", "b2"], ["z"])]
  if softmax:
    nodes.append(N("Softmax", ["z"], ["probs"], axis=1))
  return make_model(nodes, {"w1": f32(64, 20), "b1": f32(20), "w2": f32(20, 3), "b2": f32(3)},
                    (1, 8, 8), opset, out="probs" if softmax else "z", flatten=False)


def test_softmax_output_gives_logits_and_every_tensor_is_an_activation(tmp_path):
  model = small_classifier()
  loaded = load_onnx(save(model, tmp_path / "c.onnx"))
  assert loaded.softmax_output and loaded.input_shape == (1, 8, 8) and loaded.n_outputs == 3
  assert set(loaded.layers) == {"f", "h", "r", "z"} and loaded.params.keys() == {"w1", "b1", "w2", "b2"}
  x = f32(5, 1, 8, 8)
  logits, acts = loaded.apply_fn(loaded.params, jnp.asarray(x))
  want = ort.InferenceSession(model.SerializeToString(),
                              providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
  np.testing.assert_allclose(jax.nn.softmax(logits), want, rtol=1e-5, atol=1e-6)
  assert acts["r"].shape == (5, 20) and float(acts["r"].min()) >= 0


def test_old_opsets_are_converted(tmp_path):
  model = make_model([N("Clip", ["x"], ["y"], min=-0.5, max=0.5)], {}, (6,), 9)
  loaded = load_onnx(save(model, tmp_path / "old.onnx"))
  assert loaded.opset == 13
  x = f32(2, 6)
  np.testing.assert_allclose(loaded.apply_fn(loaded.params, jnp.asarray(x))[0],
                             np.clip(x, -0.5, 0.5))


def test_only_the_inverted_output_is_interpreted(tmp_path):
  """skl2onnx-like: a label branch of ops jinvert lacks (ArgMax) beside the probabilities."""
  model = small_classifier()
  model.graph.node.append(N("ArgMax", ["probs"], ["label"], axis=1))
  model.graph.output.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
  loaded = load_onnx(save(model, tmp_path / "two.onnx"))
  assert loaded.output_name == "probs"


@pytest.mark.parametrize("build,fragment", [
    (lambda: make_model([N("Relu", ["x"], ["r"]), N("Erf", ["r"], ["y"], name="the_erf")], {},
                        (4,), 13), "node 'the_erf' uses op Erf, which jinvert does not support"),
    (lambda: make_model([N("Add", ["x", "x2"], ["y"])], {}, (4,), 13,
                        extra_inputs=[helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 4])]),
     "the model has 2 inputs (x, x2)"),
    (lambda: make_model([N("Relu", ["x"], ["y"])], {}, ("H", 4), 13),
     "leaves H dynamic beyond the batch axis"),
])
def test_models_jinvert_cannot_run_are_refused(tmp_path, build, fragment):
  with pytest.raises(JinvertError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
    load_onnx(save(build(), tmp_path / "bad.onnx"))


def test_a_file_that_is_not_onnx(tmp_path):
  (tmp_path / "x.onnx").write_bytes(b"\x89PNG not a model")
  with pytest.raises(JinvertError, match="not a valid ONNX model"):
    load_onnx(tmp_path / "x.onnx")
