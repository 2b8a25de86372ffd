"""Property-based: generated ONNX graphs and `--start` files from anyone.

- Random valid small graphs (convolutions, pools, dense layers, activations) give what
  onnxruntime gives.
- Random corruption of one attribute or index of a valid graph is refused before any work:
  exit 2, one stderr line, no traceback, nothing written (tests/contract.py).
- Random `--start` files (bytes, PNG headers of any size, truncated PNGs, .npy arrays of any
  shape and dtype) are run or refused, never anything else.

CI runs the derandomized "ci" profile (tests/conftest.py); `HYPOTHESIS_PROFILE=explore` runs 15x
as many examples.
"""

import struct
import zlib

import jax
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jinvert.onnx_import import load_onnx  # noqa: E402
from contract import assert_refused, run, save  # noqa: E402

N = helper.make_node
ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", None)


def build(nodes, inits, input_shape, opset=17):
  graph = helper.make_graph(
      nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])],
      [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@st.composite
def graphs(draw):
  """A valid graph: [conv] [activation] [pool] flatten gemm [activation or softmax], as
  (nodes, initializers, input shape)."""
  rng = np.random.default_rng(draw(st.integers(0, 2 ** 31 - 1)))
  channels, size = draw(st.integers(1, 3)), draw(st.integers(4, 9))
  input_shape = (channels, size, size)
  nodes, inits, name, shape = [], {}, "x", input_shape
  if draw(st.booleans()):
    out, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    assume(size + 2 * pad >= k)
    inits["k"] = rng.normal(size=(out, channels, k, k)).astype(np.float32)
    inits["kb"] = rng.normal(size=(out,)).astype(np.float32)
    nodes.append(N("Conv", ["x", "k", "kb"], ["c"], strides=[stride, stride], pads=[pad] * 4))
    size = (size + 2 * pad - k) // stride + 1
    name, shape = "c", (out, size, size)
  act = draw(st.sampled_from(ACTIVATIONS))
  if act:
    nodes.append(N(act, [name], ["a"]))
    name = "a"
  pool = draw(st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool", None]))
  if pool == "GlobalAveragePool":
    nodes.append(N(pool, [name], ["p"]))
    name, shape = "p", (shape[0], 1, 1)
  elif pool:
    k, stride = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    assume(size >= k)
    nodes.append(N(pool, [name], ["p"], kernel_shape=[k, k], strides=[stride, stride]))
    size = (size - k) // stride + 1
    name, shape = "p", (shape[0], size, size)
  classes = draw(st.integers(2, 5))
  inits["w"] = rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
  inits["b"] = rng.normal(size=(classes,)).astype(np.float32)
  last = draw(st.sampled_from(("Relu", "Tanh", "Softmax", "Identity")))
  nodes += [N("Flatten", [name], ["f"]), N("Gemm", ["f", "w", "b"], ["z"]), N(last, ["z"], ["y"])]
  return nodes, inits, input_shape


@given(graphs(), st.integers(0, 2 ** 31 - 1))
def test_random_valid_graphs_equal_onnxruntime(tmp_path_factory, graph, seed):
  nodes, inits, input_shape = graph
  path = tmp_path_factory.mktemp("g") / "m.onnx"
  path.write_bytes(build(nodes, inits, input_shape).SerializeToString())
  x = np.random.default_rng(seed).normal(size=(3, *input_shape)).astype(np.float32)
  want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
  model = load_onnx(path)
  # jitted, as the engine runs it: one compile per graph, not one per op (31 s -> 17 s alone)
  got = np.asarray(jax.jit(model.apply_fn)(model.params, x)[0])
  if model.softmax_output:  # jinvert returns the logits a Softmax output is made of
    got = np.exp(got - got.max(-1, keepdims=True))
    got = got / got.sum(-1, keepdims=True)
  scale = max(1.0, float(np.abs(want).max()))
  np.testing.assert_allclose(got / scale, want / scale, rtol=1e-4, atol=1e-5)


# One attribute or index made invalid: (node op to change, attribute, invalid value).
CORRUPTIONS = st.one_of(
    st.tuples(st.just("Conv"), st.just("strides"), st.lists(st.integers(-3, 0), min_size=2,
                                                            max_size=2)),
    st.tuples(st.just("Conv"), st.just("dilations"), st.lists(st.integers(-3, 0), min_size=2,
                                                              max_size=2)),
    st.tuples(st.just("Conv"), st.just("pads"), st.lists(st.integers(-5, -1), min_size=4,
                                                         max_size=4)),
    st.tuples(st.just("Conv"), st.just("group"), st.integers(-2, 0) | st.integers(2, 7)),
    st.tuples(st.just("Pool"), st.just("kernel_shape"), st.lists(st.integers(9, 40), min_size=2,
                                                                 max_size=2)),
    st.tuples(st.just("Pool"), st.just("strides"), st.lists(st.integers(-3, 0), min_size=2,
                                                            max_size=2)),
    st.tuples(st.just("Flatten"), st.just("axis"), st.integers(5, 50) | st.integers(-50, -5)),
    st.tuples(st.just("Gather"), st.just("index"), st.integers(3, 1000) | st.integers(-1000, -4)),
    st.tuples(st.just("Reshape"), st.just("shape"), st.sampled_from([[1, 0, 0], [-1, -1],
                                                                     [2, 2], [1, -2, 3]])),
    st.tuples(st.just("opset"), st.just("opset"), st.integers(29, 10_000)),
)


def corrupted(kind, attribute, value):
  """A conv-pool-gemm graph over (1, 8, 8) inputs with one thing made invalid."""
  rng = np.random.default_rng(0)
  conv = {"strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0], "group": 1}
  pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
  flatten = {"axis": 1}
  index, shape, opset = [0, 1, 2], [1, 3], 17
  if kind == "Conv":
    conv[attribute] = value
  elif kind == "Pool":
    pool[attribute] = value
  elif kind == "Flatten":
    flatten["axis"] = value
  elif kind == "Gather":
    index[1] = value
  elif kind == "Reshape":
    shape = value
  else:
    opset = value
  nodes = [N("Conv", ["x", "k"], ["c"], **conv), N("MaxPool", ["c"], ["p"], **pool),
           N("Flatten", ["p"], ["f"], **flatten), N("Gemm", ["f", "w", "b"], ["g"]),
           N("Gather", ["g", "i"], ["h"], axis=1), N("Reshape", ["h", "s"], ["y"])]
  inits = {"k": rng.normal(size=(2, 1, 3, 3)).astype(np.float32),
           "w": rng.normal(size=(18, 3)).astype(np.float32), "b": np.zeros(3, np.float32),
           "i": np.array(index, np.int64), "s": np.array(shape, np.int64)}
  return build(nodes, inits, (1, 8, 8), opset)


@given(CORRUPTIONS)
def test_a_corrupted_attribute_or_index_is_refused_with_one_line(tmp_path_factory, capsys,
                                                                 corruption):
  folder = tmp_path_factory.mktemp("c")
  (folder / "m.onnx").write_bytes(corrupted(*corruption).SerializeToString())
  assert_refused(capsys, folder, ["invert", str(folder / "m.onnx"), "--preset", "raw",
                                  "--steps", "1", "--restarts", "1", "--targets", "0",
                                  "--out", str(folder / "o.npz")])


def test_the_uncorrupted_graph_runs(tmp_path, capsys):
  (tmp_path / "m.onnx").write_bytes(corrupted("none", None, 17).SerializeToString())
  code, _, err = run(capsys, "invert", tmp_path / "m.onnx", "--preset", "raw", "--steps", "1",
                     "--restarts", "1", "--targets", "0", "--out", tmp_path / "o.npz")
  assert code == 0, err


def png(width, height, rows: bool = False) -> bytes:
  """A grayscale PNG's bytes: its pixel rows when `rows` (a valid image), else a token body."""
  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  body = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(height)) if rows
                       else b"\x00" * 16)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                             0, 0))
          + chunk(b"IDAT", body) + chunk(b"IEND", b""))


START_FILES = st.one_of(
    st.tuples(st.just("png"), st.binary(max_size=200)),
    st.tuples(st.just("png"), st.builds(png, st.integers(0, 2 ** 31 - 1),
                                        st.integers(0, 2 ** 31 - 1))),
    st.tuples(st.just("png"), st.builds(lambda cut: png(28, 28, rows=True)[:cut],
                                        st.integers(0, len(png(28, 28, rows=True)) - 1))),
    st.tuples(st.just("npy"), st.builds(
        lambda shape, dtype, fill: (shape, dtype, fill),
        st.lists(st.integers(0, 30), max_size=3).map(tuple),
        st.sampled_from(["float32", "float64", "int8", "uint8", "bool", "complex64"]),
        st.sampled_from([0.5, -1.0, 2.0, float("nan"), float("inf")]))),
)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
  folder = tmp_path_factory.mktemp("start")
  save(folder / "c.msgpack", "mnist-mlp", dataset="mnist")
  return folder


@given(START_FILES)
def test_start_files_are_run_or_refused_in_one_line(mlp, capsys, start):
  kind, content = start
  path = mlp / f"start.{kind}"
  if kind == "npy":
    shape, dtype, fill = content
    with np.errstate(invalid="ignore"):
      array = np.full(shape, fill).astype(dtype)
    np.save(path, array)
    valid = (array.dtype.kind in "iuf" and array.squeeze().shape == (28, 28)
             and np.all(np.isfinite(array)) and array.min() >= 0 and array.max() <= 1)
  else:
    path.write_bytes(content)
    valid = content == png(28, 28, rows=True)  # never drawn: every PNG drawn is broken
  assume(not valid)  # a valid file runs an inversion: tested once, below
  assert_refused(capsys, mlp, ["invert", str(mlp / "c.msgpack"), "--start", str(path),
                               "--targets", "1", "--steps", "1", "--out", str(mlp / "o.npz")])


def test_a_valid_start_file_runs(mlp, capsys):
  np.save(mlp / "ok.npy", np.full((28, 28), 0.5, np.float32))
  code, _, err = run(capsys, "invert", mlp / "c.msgpack", "--start", mlp / "ok.npy",
                     "--targets", "1", "--steps", "1", "--out", mlp / "ok.npz")
  assert code == 0, err
