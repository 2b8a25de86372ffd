"""Files from anyone (ONNX models and their external data, PNG and .npy inputs, teachers) and the
numbers that go with them get the command line's contract: exit 2, one line on stderr, no
traceback, nothing written, and a peak RSS under 500 MB, decided before the work starts.

Each case runs `python -m jinvert` in a fresh process, as a user would, and measures the peak
RSS of that process; the cases are the ones a sweep of these surfaces found breaking it.
"""

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from conftest import real_data_or_skip  # noqa: E402
from contract import save  # noqa: E402

N = helper.make_node
MAX_RSS_MB = 500
INVERT = ["--preset", "raw", "--steps", "3", "--restarts", "1", "--targets", "0", "--out", "o.npz"]
MEASURE = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True,"
           " text=True, timeout=120); sys.stderr.write(p.stderr); sys.stdout.write(p.stdout); "
           "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run(folder: Path, *argv, env=None):
  """(exit code, stderr lines, files made, peak RSS in MB, seconds) of `jinvert argv`."""
  before = {p.name for p in folder.iterdir()}
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "jinvert",
                         *map(str, argv)], cwd=folder, capture_output=True, text=True,
                        timeout=180, env={**os.environ, "JINVERT_OFFLINE": "1", **(env or {})})
  seconds = time.perf_counter() - t0
  code, rss = proc.stdout.split()[-2:]
  made = sorted({p.name for p in folder.iterdir()} - before)
  return int(code), proc.stderr.splitlines(), made, int(rss) / 1024, seconds


def refused(folder: Path, argv, *fragments, env=None):
  code, lines, made, rss, seconds = run(folder, *argv, env=env)
  assert code == 2, (code, lines[-3:])
  assert len(lines) == 1 and "Traceback" not in lines[0], lines[-5:]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  assert made == [], made
  assert rss < MAX_RSS_MB, rss
  print(f"refused in {seconds:.2f} s at {rss:.0f} MB: {lines[0]}")  # pytest -rP shows them
  return lines[0], rss, seconds


def graph(nodes, inits, shape=(4,), opset=17):
  g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                   ["N", *shape])],
                        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])],
                        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
  return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def gemm_inits(rows=4, classes=3):
  rng = np.random.default_rng(0)
  return {"w": rng.normal(size=(rows, classes)).astype(np.float32),
          "b": np.zeros(classes, np.float32)}


GEMM = [N("Gemm", ["x", "w", "b"], ["y"])]


def write(model, path: Path) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(model.SerializeToString())
  return path


def with_external_data(path: Path, location="m.onnx.data"):
  """A Gemm model whose weights torch's default export would keep beside it."""
  path.parent.mkdir(parents=True, exist_ok=True)
  onnx.save_model(graph(GEMM, gemm_inits()), str(path), save_as_external_data=True,
                  all_tensors_to_one_file=True, location=location, size_threshold=0)
  return path


def set_location(path: Path, **fields):
  """Rewrites the external-data fields (location, offset, length) of every tensor."""
  model = onnx.load(str(path), load_external_data=False)
  for t in model.graph.initializer:
    entries = {e.key: e.value for e in t.external_data}
    entries.update({k: str(v) for k, v in fields.items()})
    del t.external_data[:]
    for k, v in entries.items():
      t.external_data.add(key=k, value=v)
  path.write_bytes(model.SerializeToString())


# ONNX external data --------------------------------------------------------------------------

def test_external_data_loads_from_the_models_folder_when_run_from_elsewhere(tmp_path):
  with_external_data(tmp_path / "model" / "m.onnx")
  (tmp_path / "m.onnx.data").write_bytes(b"a decoy of the wrong size in the working folder")
  code, lines, made, rss, _ = run(tmp_path, "invert", "model/m.onnx", *INVERT)
  assert code == 0, lines[-3:]
  assert made == ["o.npz"] and lines == []


@pytest.mark.parametrize("location", ["../canary.data", "/tmp/canary.data", "link.data"])
def test_external_data_outside_the_folder_is_refused_and_never_opened(tmp_path, location):
  path = with_external_data(tmp_path / "model" / "m.onnx")
  canary = tmp_path / "canary.data"
  os.mkfifo(canary)  # opening it for reading would block: the test would time out
  if location == "link.data":
    (tmp_path / "model" / "link.data").symlink_to(canary)
  set_location(path, location=location if location != "/tmp/canary.data" else str(canary))
  refused(tmp_path, ["invert", "model/m.onnx", *INVERT], "outside the model's folder")


def test_external_data_in_a_6_gb_file_is_refused_before_it_is_read(tmp_path):
  """On a machine with 3 GB to spare (JINVERT_MEMORY_LIMIT), as where a 6 GB location was
  read until the process was killed."""
  path = with_external_data(tmp_path / "m.onnx")
  with open(tmp_path / "m.onnx.data", "r+b") as f:
    f.truncate(6 * 2 ** 30)  # sparse: no disk used
  model = onnx.load(str(path), load_external_data=False)
  w = model.graph.initializer[0]
  w.dims[:] = [2 ** 29, 3]  # 6 GB of float32
  del w.external_data[:]
  for k, v in (("location", "m.onnx.data"), ("offset", "0"), ("length", str(6 * 2 ** 30))):
    w.external_data.add(key=k, value=v)
  path.write_bytes(model.SerializeToString())
  refused(tmp_path, ["invert", "m.onnx", *INVERT], "external data would take about 6.00 GB, "
          "more than the 3.00 GB available", env={"JINVERT_MEMORY_LIMIT": "3G"})


def test_truncated_external_data_names_the_tensor(tmp_path):
  with_external_data(tmp_path / "m.onnx")
  data = tmp_path / "m.onnx.data"
  data.write_bytes(data.read_bytes()[:20])
  refused(tmp_path, ["invert", "m.onnx", *INVERT], "tensor", "truncated")


def test_a_tensor_whose_shape_and_data_disagree_is_refused(tmp_path):
  path = with_external_data(tmp_path / "m.onnx")
  set_location(path, offset=0, length=16)
  model = onnx.load(str(path), load_external_data=False)
  model.graph.initializer[0].dims[:] = [2 ** 20, 2 ** 20]  # 2^40 elements over 16 bytes
  path.write_bytes(model.SerializeToString())
  refused(tmp_path, ["invert", "m.onnx", *INVERT], "shaped [1048576, 1048576]")


def test_an_inline_tensor_claiming_more_than_it_holds_is_refused(tmp_path):
  model = graph(GEMM, gemm_inits())
  model.graph.initializer[0].dims[:] = [2 ** 20, 2 ** 20]
  write(model, tmp_path / "m.onnx")
  refused(tmp_path, ["invert", "m.onnx", *INVERT], "m.onnx")


# Graphs --------------------------------------------------------------------------------------

def relu_chain(n):
  nodes = [N("Relu", ["x" if i == 0 else f"r{i - 1}"], [f"r{i}"]) for i in range(n)]
  return graph(nodes + [N("Gemm", [f"r{n - 1}", "w", "b"], ["y"])], gemm_inits())


@pytest.mark.parametrize("n", [5_000, 100_000])
def test_a_deep_relu_chain_is_refused_at_once(tmp_path, n):
  write(relu_chain(n), tmp_path / "m.onnx")
  line, rss, seconds = refused(tmp_path, ["invert", "m.onnx", *INVERT], f"{n + 1:,} nodes",
                               "at most 2,000 nodes and 1,000 deep")
  assert seconds < 30, seconds


@pytest.mark.parametrize("build, fragment", [
    (lambda: graph([N("Constant", [], ["c0"], value=numpy_helper.from_array(
        np.ones(1024, np.int64)))] + [N("Concat", [f"c{i}", f"c{i}"], [f"c{i + 1}"], axis=0)
                                      for i in range(30)]
        + [N("Shape", ["c30"], ["s"]), N("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
           N("Gemm", ["x", "w", "b"], ["g"]), N("Add", ["g", "f"], ["y"])],
        {**gemm_inits(classes=1)}), "folds a constant of"),
    (lambda: graph([N("Constant", [], ["a"], value=numpy_helper.from_array(
        np.ones((32768, 1), np.float32))), N("Constant", [], ["b2"], value=numpy_helper.from_array(
            np.ones((1, 32768), np.float32))), N("Mul", ["a", "b2"], ["m"]),
        N("Shape", ["m"], ["s"]), N("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
        N("Gemm", ["x", "w", "b"], ["g"]), N("Add", ["g", "f"], ["y"])],
        gemm_inits(classes=2)), "folds a constant of 1,073,741,824 elements"),
    (lambda: graph([N("Gemm", ["x", "w", "b"], ["g"]), N("Gather", ["g", "i"], ["y"], axis=1)],
                   {**gemm_inits(), "i": np.array([0, 1, 7], np.int64)}),
     "index 7 is out of range for axis 1 of size 3"),
    (lambda: graph([N("Gemm", ["x", "w", "b"], ["g"]), N("Reshape", ["g", "s"], ["y"])],
                   {**gemm_inits(), "s": np.array([1, 0, 0, 0], np.int64)}),
     "copies axis 2 (a 0) of a 2-D input"),
])
def test_graphs_that_cannot_run_are_refused_by_node(tmp_path, build, fragment):
  write(build(), tmp_path / "m.onnx")
  refused(tmp_path, ["invert", "m.onnx", *INVERT], fragment)


# Attributes, opsets and weights -------------------------------------------------------------

def conv_model(op="Conv", **attrs):
  rng = np.random.default_rng(0)
  first = N("Conv", ["x", "k"], ["c"], **attrs) if op == "Conv" else N(op, ["x"], ["c"], **attrs)
  nodes = [first, N("GlobalAveragePool", ["c"], ["p"]), N("Flatten", ["p"], ["f"]),
           N("Gemm", ["f", "w", "b"], ["y"])]
  channels = 2 if op == "Conv" else 1
  inits = {"w": rng.normal(size=(channels, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
  if op == "Conv":
    inits["k"] = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
  return graph(nodes, inits, shape=(1, 8, 8))


@pytest.mark.parametrize("model, fragment", [
    (lambda: conv_model(strides=[0, 1]), "strides [0, 1] must be at least 1"),
    (lambda: conv_model(strides=[-1, 1]), "strides [-1, 1] must be at least 1"),
    (lambda: conv_model(pads=[-1, 0, 0, 0]), "pads [-1, 0, 0, 0] must be at least 0"),
    (lambda: conv_model(dilations=[1, 0]), "dilations [1, 0] must be at least 1"),
    (lambda: conv_model("MaxPool", kernel_shape=[2, 2], strides=[0, 2]), "strides [0, 2]"),
    (lambda: conv_model("MaxPool", kernel_shape=[9, 9]),
     "a window of 9 (kernel 9, dilation 1) is larger than its padded input of 8"),
    (lambda: conv_model("AveragePool", kernel_shape=[2, 2, 2]), "kernel_shape has 3 values"),
    (lambda: graph(GEMM, gemm_inits(), opset=99), "opset 99 is newer than this jinvert knows"),
    (lambda: graph(GEMM, {**gemm_inits(), "w": np.full((4, 3), np.nan, np.float32)}),
     "initializer 'w' holds NaN or inf"),
    (lambda: graph(GEMM, {**gemm_inits(), "b": np.array([0.0, np.inf, 0.0], np.float32)}),
     "initializer 'b' holds NaN or inf"),
])
def test_attributes_opsets_and_weights_are_checked_before_the_work(tmp_path, model, fragment):
  write(model(), tmp_path / "m.onnx")
  refused(tmp_path, ["invert", "m.onnx", *INVERT], fragment)


# Files that are not files --------------------------------------------------------------------

def test_a_model_that_is_not_a_regular_file_is_refused_without_reading(tmp_path):
  os.mkfifo(tmp_path / "fifo.onnx")
  with open(tmp_path / "sparse.onnx", "wb") as f:
    f.truncate(3 * 2 ** 30)
  refused(tmp_path, ["invert", "/dev/zero", *INVERT], "not a regular file")
  refused(tmp_path, ["invert", "fifo.onnx", *INVERT], "not a regular file")
  refused(tmp_path, ["invert", "sparse.onnx", *INVERT], "3,221,225,472 bytes, over the")
  refused(tmp_path, ["distill", "/dev/zero", "--student", "mnist-mlp", "--images", "10",
                     "--out", "s.msgpack"], "not a regular file")


# Images and numbers --------------------------------------------------------------------------

def png_of(width, height) -> bytes:
  raw = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(height)))

  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                             0, 0))
          + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.fixture
def mlp(tmp_path):
  save(tmp_path / "c.msgpack", "mnist-mlp", dataset="mnist")
  return tmp_path


def test_a_huge_png_is_refused_from_its_header(mlp):
  (mlp / "big.png").write_bytes(png_of(9000, 9000))
  (mlp / "ok.png").write_bytes(png_of(28, 28))
  _, rss, _ = refused(mlp, ["invert", "c.msgpack", "--start", "big.png", "--targets", "1",
                            "--out", "o.npz"], "a 9000x9000 PNG; the model takes 28x28 images")
  code, lines, made, _, _ = run(mlp, "invert", "c.msgpack", "--start", "ok.png", "--targets", "1",
                                "--steps", "2", "--out", "o.npz")
  assert code == 0 and made == ["o.npz"], lines[-2:]


def test_a_test_index_is_checked_before_the_test_set_is_read(mlp, monkeypatch):
  monkeypatch.setenv("JINVERT_DATA", str(real_data_or_skip("mnist").resolve()))
  refused(mlp, ["invert", "c.msgpack", "--start", "test:99999", "--targets", "1", "--out",
                "o.npz"], "the mnist test set has images 0-9999, not 99999")


@pytest.mark.parametrize("extra, fragment", [
    (["--max-change", "l2:1e39"], "a l2 change must be above 0 and at most 28"),
    (["--max-change", "linf:1.5"], "a linf change must be above 0 and at most 1"),
    (["--distance-weight", "3e38"], "the distance weight must be from 0 to 1e+06"),
    (["--distance-weight", "-1"], "the distance weight must be from 0"),
])
def test_counterfactual_numbers_are_checked_for_what_they_mean(mlp, extra, fragment):
  np.save(mlp / "start.npy", np.full((28, 28), 0.5, np.float32))
  refused(mlp, ["invert", "c.msgpack", "--start", "start.npy", "--targets", "1", *extra,
                "--out", "o.npz"], fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--input-range=-3e38,3e38"], "every bound must lie within +-1e+09"),
    (["--normalize", "0.5,1e-12"], "every std within [1e-09, 1e+09]"),
])
def test_ranges_that_would_overflow_float32_are_refused(mlp, extra, fragment):
  refused(mlp, ["invert", "c.msgpack", *INVERT[:-2], *extra, "--out", "o.npz"], fragment)


# Output ----------------------------------------------------------------------------------------

def test_a_failure_after_the_work_is_one_line_with_no_progress_bar_above_it(tmp_path):
  inits = {"w": np.full((4, 3), 1e30, np.float32), "b": np.zeros(3, np.float32),
           "w2": np.full((3, 3), 1e30, np.float32)}
  write(graph([N("Gemm", ["x", "w", "b"], ["h"]), N("MatMul", ["h", "w2"], ["y"])], inits),
        tmp_path / "m.onnx")
  refused(tmp_path, ["invert", "m.onnx", *INVERT], "produced NaN or inf")


def test_target_files_that_say_nothing_or_go_with_nothing(mlp):
  np.save(mlp / "empty.npy", np.zeros((0, 10), np.float32))
  np.save(mlp / "t.npy", np.eye(10, dtype=np.float32)[:2])
  refused(mlp, ["invert", "c.msgpack", "--objective", "output", "--target-file", "empty.npy",
                *INVERT[:-4], "--out", "o.npz"], "holds no target vectors")
  refused(mlp, ["invert", "c.msgpack", "--target-file", "t.npy", *INVERT[:-4], "--out", "o.npz"],
          "--target-file holds target vectors, for --objective output")
