"""Property-based: generated bad input never breaks the command line's contract.

Each example runs `jinvert` in-process on a folder of small valid inputs with one thing made
bad: an argument string, an IDX file, a checkpoint's msgpack structure, a `.npy` or `.npz`
target file, or an output path. Every example must exit 2 with exactly one stderr line, no
traceback, no new file and every existing file byte-identical (tests/contract.py). The valid
baselines would run (they are small enough to), so an input wrongly accepted fails the test.

Examples are derandomized so that CI sees the same cases each run; explore more with
`HYPOTHESIS_PROFILE=explore pytest tests/test_bad_input_properties.py`.
"""

import gzip
import math
import os
import re
import shutil
import struct
import zlib

import jax
import numpy as np
import pytest
from flax import serialization
from hypothesis import assume, given, strategies as st
from hypothesis.extra import numpy as hnp

from jinvert import models
from contract import assert_refused, random_images, save

def _write_idx(path, array, code=0x08):
  raw = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
         + array.astype(array.dtype.newbyteorder(">")).tobytes())
  path.write_bytes(gzip.compress(raw, 1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """Valid inputs: untrained checkpoints, a 100-image dataset; cwd and env isolated."""
  root = tmp_path_factory.mktemp("properties")
  save(root / "mlp.msgpack", "mnist-mlp", dataset="mnist")
  save(root / "linear.msgpack", "linear")
  save(root / "cvae.msgpack", "mnist-cvae", dataset="mnist")
  rng = np.random.default_rng(0)
  valid = root / "valid" / "mnist"
  valid.mkdir(parents=True)
  for stem, n in (("train", 100), ("t10k", 20)):
    _write_idx(valid / f"{stem}-images-idx3-ubyte.gz", random_images(rng, n))
    _write_idx(valid / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
  (root / "old.npz").write_bytes(b"an earlier result")
  with pytest.MonkeyPatch.context() as mp:
    mp.chdir(root)
    mp.delenv("JINVERT_DATA", raising=False)
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    mp.setenv("JINVERT_OFFLINE", "1")
    mp.setattr("jinvert.data.DEBIAN_FOLDERS", {})
    yield root


def refused(capsys, folder, argv):
  assert_refused(capsys, folder, argv)


# Argument strings -------------------------------------------------------------------------------

BASELINES = {
    "invert": ["invert", "mlp.msgpack", "--preset", "raw", "--steps", "1", "--restarts", "1",
               "--targets", "0", "--out", "x.npz"],
    "generate": ["generate", "cvae.msgpack", "--samples", "1", "--targets", "0", "--out", "x.npz"],
    "train": ["train", "linear", "--epochs", "1", "--out", "m.msgpack"],
    "reconstruct": ["reconstruct", "linear.msgpack", "--target", "1"],
    "bench": ["bench", "--restarts", "1", "--steps", "1", "--sizes", "1", "--repeats", "1",
              "--no-references"],
}
# flag: (command, lowest, highest) for whole-number flags
INT_FLAGS = {"--restarts": ("invert", 1, 2 ** 31 - 1), "--steps": ("invert", 1, 2 ** 31 - 1),
             "--seed": ("invert", 0, 2 ** 32 - 1), "--samples": ("generate", 1, 2 ** 31 - 1),
             "--epochs": ("train", 1, 2 ** 31 - 1), "--repeats": ("bench", 1, 2 ** 31 - 1)}
CHOICES = {"--preset": ("invert", ("raw", "natural")),
           "--objective": ("invert", ("class", "unit", "output")),
           "--device": ("bench", ("cpu", "gpu")),
           "--precision": ("bench", ("highest", "tf32", "bf16")),
           "--activation": ("reconstruct", ("none", "sigmoid"))}


def _parses_as_int(text):
  try:
    int(text)
    return True
  except ValueError:
    return False


def _parses_as_float(text):
  try:
    float(text)
    return True
  except ValueError:
    return False


def with_value(command, flag, value):
  argv = list(BASELINES[command])
  if flag in argv:
    argv[argv.index(flag) + 1] = value
  else:
    argv += [flag, value]
  return argv


@st.composite
def bad_int_arguments(draw):
  flag = draw(st.sampled_from(sorted(INT_FLAGS)))
  command, lo, hi = INT_FLAGS[flag]
  value = draw(st.one_of(st.integers(max_value=lo - 1).map(str),
                         st.integers(min_value=hi + 1).map(str),
                         st.floats().map(repr),
                         st.text(max_size=12).filter(lambda t: not _parses_as_int(t))))
  return with_value(command, flag, value)


@st.composite
def bad_float_arguments(draw):
  flag = draw(st.sampled_from(["--target", "--start", "--lr"]))
  values = [st.sampled_from(["nan", "inf", "-inf", "1e39", "-3.5e38", "1e300"]),
            st.text(max_size=12).filter(lambda t: not _parses_as_float(t))]
  if flag == "--lr":
    values.append(st.floats(max_value=0.0, allow_nan=False).map(repr))
  return with_value("reconstruct", flag, draw(st.one_of(*values)))


@st.composite
def bad_choices(draw):
  flag = draw(st.sampled_from(sorted(CHOICES)))
  command, valid = CHOICES[flag]
  return with_value(command, flag, draw(st.text(max_size=12).filter(lambda t: t not in valid)))


@st.composite
def bad_targets(draw):
  letters = st.text(min_size=1, max_size=10).filter(lambda t: re.search("[A-Za-z]", t))
  numbers = st.integers(0, 40)
  value = draw(st.one_of(
      st.integers(min_value=10).map(str),                                     # outside 0-9
      st.tuples(numbers, st.integers(min_value=10)).map(lambda t: f"{t[0]}-{t[1]}"),
      st.tuples(st.integers(1, 40), st.integers(0, 39)).filter(lambda t: t[1] < t[0]).map(
          lambda t: f"{t[0]}-{t[1]}"),                                         # reversed
      st.lists(numbers.map(str), min_size=1, max_size=3).map(lambda p: ",".join(p + [""])),
      letters))
  return with_value(draw(st.sampled_from(["invert", "generate"])), "--targets", value)


@st.composite
def unknown_names(draw):
  kind = draw(st.sampled_from(["model", "layer", "flag"]))
  if kind == "model":
    name = draw(st.text(max_size=12).filter(lambda t: t not in models.REGISTRY))
    return ["train", name, "--out", "m.msgpack"]
  if kind == "layer":
    name = draw(st.text(max_size=12).filter(
        lambda t: t not in ("hidden1", "hidden1_pre", "hidden2", "hidden2_pre")))
    return BASELINES["invert"] + ["--objective", "unit", "--layer", name]
  command = draw(st.sampled_from(sorted(BASELINES)))
  flag = "--" + draw(st.from_regex(r"[a-z][a-z-]{0,10}", fullmatch=True))
  known = ("--restarts --steps --seed --samples --epochs --repeats --preset --objective --device "
           "--precision --activation --targets --target --target-file --start --lr --layer --out "
           "--png --prior --dataset --data-dir --classifier --sizes --no-references --init "
           "--largest-up-to --debug --help").split()
  assume(not any(k.startswith(flag) for k in known))
  return BASELINES[command] + [flag]


EMPTY_OPTIONS = {"--targets": "invert", "--target-file": "invert", "--layer": "invert",
                 "--prior": "invert", "--classifier": "generate", "--sizes": "bench",
                 "--out": "train", "--init": "train", "--data-dir": "train"}


@st.composite
def empty_values(draw):
  flag = draw(st.sampled_from(sorted(EMPTY_OPTIONS)))
  argv = with_value(EMPTY_OPTIONS[flag], flag, draw(st.sampled_from(["", " "])))
  if flag == "--target-file":
    argv += ["--objective", "output"]
  if flag == "--layer":
    argv += ["--objective", "unit"]
  if flag == "--prior":
    argv[argv.index("raw")] = "natural"
  if flag == "--data-dir":
    argv[1] = "mnist-mlp"
  return argv


@given(st.one_of(bad_int_arguments(), bad_float_arguments(), bad_choices(), bad_targets(),
                 unknown_names(), empty_values()))
def test_bad_argument_strings(folder, capsys, argv):
  refused(capsys, folder, argv)


# IDX headers and bodies ---------------------------------------------------------------------------

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@st.composite
def bad_idx(draw):
  """(file stem, bytes written, gzipped?): one defect of the many an IDX file can have."""
  rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
  images, labels = random_images(rng, 100), rng.integers(0, 10, 100).astype(np.uint8)

  def raw(array, code=0x08):
    return (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(array.dtype.newbyteorder(">")).tobytes())

  defect = draw(st.sampled_from(["magic", "truncated", "trailing", "huge", "image_shape", "ndim",
                                 "label_range", "count", "float_range", "empty", "label_dtype",
                                 "bytes", "gzip"]))
  stem = IMAGES
  if defect == "magic":
    body = bytearray(raw(images))
    position = draw(st.integers(0, 2))
    body[position] = draw(st.integers(0, 255).filter(
        lambda b: b != 0 if position < 2 else b not in (8, 9, 0xB, 0xC, 0xD, 0xE)))
    body = bytes(body)
  elif defect == "truncated":
    body = raw(images)
    body = body[:draw(st.integers(0, len(body) - 1))]
  elif defect == "trailing":
    body = raw(images) + draw(st.binary(min_size=1, max_size=64))
  elif defect == "huge":
    dims = draw(st.lists(st.integers(1, 2 ** 32 - 1), min_size=1, max_size=4).filter(
        lambda d: math.prod(d) > 2 ** 30))
    body = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(64)
  elif defect == "image_shape":
    h, w = draw(st.tuples(st.integers(1, 40), st.integers(1, 40)).filter(lambda s: s != (28, 28)))
    body = raw(rng.integers(0, 256, (100, h, w)).astype(np.uint8))
  elif defect == "ndim":
    shape = draw(st.sampled_from([(100,), (100, 784), (100, 28, 28, 1), ()]))
    body = raw(rng.integers(0, 256, shape).astype(np.uint8))
  elif defect == "label_range":
    stem = LABELS
    bad = draw(st.one_of(st.integers(10, 255).map(lambda v: (v, np.uint8, 0x08)),
                         st.integers(-128, -1).map(lambda v: (v, np.int8, 0x09))))
    labels = labels.astype(bad[1])
    labels[draw(st.integers(0, 99))] = bad[0]
    body = raw(labels, bad[2])
  elif defect == "count":
    stem = LABELS
    body = raw(rng.integers(0, 10, draw(st.integers(0, 300).filter(lambda n: n != 100))).astype(np.uint8))
  elif defect == "float_range":
    values = images.astype(">f4") / 255
    values[draw(st.integers(0, 99)), 3, 4] = draw(st.one_of(
        st.floats(allow_nan=True, width=32).filter(lambda v: not 0 <= v <= 1)))
    body = raw(values, 0x0D)
  elif defect == "empty":
    body = raw(np.zeros((0, 28, 28), np.uint8))
    stem = draw(st.sampled_from([IMAGES, "t10k-images-idx3-ubyte"]))
  elif defect == "label_dtype":
    stem = LABELS
    code, dtype = draw(st.sampled_from([(0x0D, ">f4"), (0x0E, ">f8")]))
    body = raw(labels.astype(dtype), code)
  elif defect == "bytes":
    body = draw(st.binary(max_size=200))
  else:  # a gzip stream that is cut or corrupted
    original = raw(images)
    packed = bytearray(gzip.compress(original))
    if draw(st.booleans()):
      packed = packed[:draw(st.integers(0, len(packed) - 1))]
    else:
      i = draw(st.integers(10, len(packed) - 9))
      packed[i] ^= draw(st.integers(1, 255))
    try:  # some bits are padding (a stored block's header byte): flipping them changes nothing
      assume(gzip.decompress(bytes(packed)) != original)
    except (OSError, EOFError, zlib.error):
      pass
    return stem, bytes(packed), False
  return stem, body, True


@given(bad_idx())
def test_bad_idx_files(folder, capsys, case):
  stem, body, compress = case
  data = folder / "data"
  if data.exists():
    shutil.rmtree(data)
  shutil.copytree(folder / "valid", data)
  target = data / "mnist" / f"{stem}.gz"
  target.write_bytes(gzip.compress(body, 1) if compress else body)
  refused(capsys, folder, ["train", "mnist-mlp", "--data-dir", "data", "--epochs", "1",
                           "--out", "m.msgpack"])


def test_the_idx_baseline_is_valid(folder, capsys):
  """The baseline the IDX property mutates trains: a wrongly accepted defect would show."""
  from contract import run
  shutil.copytree(folder / "valid", folder / "ok", dirs_exist_ok=True)
  code, _, err = run(capsys, "train", "mnist-mlp", "--data-dir", "ok", "--epochs", "1",
                     "--out", "ok.msgpack")
  assert code == 0, err
  os.remove(folder / "ok.msgpack")
  shutil.rmtree(folder / "ok")


# msgpack structures -----------------------------------------------------------------------------

PACKABLE_INTS = st.integers(-2 ** 63, 2 ** 64 - 1)  # what msgpack can hold
LEAVES = st.one_of(st.none(), st.booleans(), PACKABLE_INTS, st.floats(),
                   st.text(max_size=10), st.binary(max_size=16))
TREES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _valid_blob():
  params = models.get_model("mnist-mlp").init_params(jax.random.key(0))
  return {"format": "jinvert-checkpoint", "version": 1,
          "metadata": {"model": "mnist-mlp", "init": "glorot", "dataset": "mnist", "seed": 0,
                       "test_accuracy": 0.5, "recipe": {}},
          "params": serialization.to_state_dict(jax.device_get(params))}


PARAM_PATHS = [("params", "params", layer, kind) for layer in ("dense1", "dense2", "out")
               for kind in ("kernel", "bias")]


@st.composite
def bad_checkpoints(draw):
  kind = draw(st.sampled_from(["random", "delete", "array", "metadata", "header"]))
  if kind == "random":
    return serialization.msgpack_serialize(draw(TREES)) if draw(st.booleans()) else \
        __import__("msgpack").packb(draw(TREES))
  blob = _valid_blob()
  if kind == "delete":
    path = draw(st.sampled_from([("format",), ("version",), ("metadata",), ("params",),
                                 ("metadata", "model")] + PARAM_PATHS))
    node = blob
    for key in path[:-1]:
      node = node[key]
    del node[path[-1]]
  elif kind == "array":
    path = draw(st.sampled_from(PARAM_PATHS))
    node = blob
    for key in path[:-1]:
      node = node[key]
    array = np.array(node[path[-1]])
    change = draw(st.sampled_from(["value", "shape", "dtype", "nonfinite"]))
    if change == "value":
      node[path[-1]] = draw(TREES)
    elif change == "shape":
      node[path[-1]] = np.zeros(draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5).filter(
          lambda s: s != array.shape)), np.float32)
    elif change == "dtype":
      node[path[-1]] = array.astype(draw(st.sampled_from([np.float64, np.float16, np.int32])))
    else:
      flat = array.reshape(-1)
      flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
      node[path[-1]] = flat.reshape(array.shape)
  elif kind == "metadata":
    field = draw(st.sampled_from(["model", "init", "dataset", "seed", "test_accuracy", "recipe"]))
    wrong = {"model": st.one_of(PACKABLE_INTS, st.text(max_size=10).filter(lambda t: t != "mnist-mlp")),
             "init": st.one_of(PACKABLE_INTS, st.text(max_size=8).filter(
                 lambda t: t not in ("glorot", "seed-normal"))),
             "dataset": st.one_of(PACKABLE_INTS, st.lists(PACKABLE_INTS, max_size=2)),
             "seed": st.one_of(st.text(max_size=4), st.floats(), st.booleans()),
             "test_accuracy": st.one_of(st.text(max_size=4), st.lists(st.floats(), max_size=2)),
             "recipe": st.one_of(PACKABLE_INTS, st.text(max_size=4))}[field]
    blob["metadata"][field] = draw(wrong)
  else:
    field = draw(st.sampled_from(["format", "version"]))
    blob[field] = draw(LEAVES.filter(lambda v: v != {"format": "jinvert-checkpoint",
                                                    "version": 1}[field]))
  return serialization.msgpack_serialize(blob)


@given(bad_checkpoints())
def test_bad_checkpoints(folder, capsys, blob):
  (folder / "c.msgpack").write_bytes(blob)
  refused(capsys, folder, ["invert", "c.msgpack", "--preset", "raw", "--steps", "1",
                           "--restarts", "1", "--targets", "0", "--out", "x.npz"])
  os.remove(folder / "c.msgpack")


# .npy and .npz target files ---------------------------------------------------------------------

DTYPES = st.sampled_from([np.bool_, np.int8, np.uint16, np.int64, np.float16, np.float32,
                          np.float64, np.complex64, "<U3", "S2", "<M8[s]"])


def _valid_targets(array):
  if array.dtype.kind not in "iuf":
    return False
  shape_ok = array.shape == (10,) or (array.ndim == 2 and array.shape[1] == 10 and len(array))
  with np.errstate(all="ignore"):
    return shape_ok and bool(np.all(np.isfinite(array.astype(np.float32))))


@st.composite
def bad_target_files(draw):
  kind = draw(st.sampled_from(["npy", "npz", "bytes", "truncated"]))
  array = draw(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                   max_side=12)))
  if kind == "npy":
    assume(not _valid_targets(array))
  return kind, array, draw(st.binary(max_size=100))


@given(bad_target_files())
def test_bad_target_files(folder, capsys, case):
  kind, array, junk = case
  path = folder / "t.npy"
  if kind == "npy":
    np.save(path, array)
  elif kind == "npz":
    with open(path, "wb") as f:
      np.savez(f, a=array)
  elif kind == "bytes":
    path.write_bytes(junk)
  else:
    with open(path, "wb") as f:
      np.save(f, np.ones((5, 10), np.float32))
    path.write_bytes(path.read_bytes()[:-1 - len(junk) % 100])
  refused(capsys, folder, BASELINES["invert"] + ["--objective", "output", "--target-file", "t.npy"])
  os.remove(path)


# Output paths -------------------------------------------------------------------------------------

@st.composite
def bad_outputs(draw):
  name = st.from_regex(r"[a-z]{1,8}\.(npz|png)", fullmatch=True)
  kind = draw(st.sampled_from(["folder", "under_file", "long", "system", "input", "duplicate",
                               "empty", "device"]))
  if kind == "folder":
    out = draw(st.sampled_from(["valid", ".", "..", "/", "valid/", "./valid/mnist"]))
  elif kind == "under_file":
    out = draw(st.sampled_from(["old.npz", "mlp.msgpack"])) + "/" + draw(name)
  elif kind == "long":
    out = "a" * draw(st.integers(256, 400)) + ".npz"
  elif kind == "system":
    out = draw(st.sampled_from(["/proc/", "/proc/self/", "/sys/"])) + draw(name)
  elif kind == "input":
    out = draw(st.sampled_from(["mlp.msgpack", "./mlp.msgpack", "valid/../mlp.msgpack"]))
  elif kind == "duplicate":
    out = draw(name)
    return ["--out", out, "--png", draw(st.sampled_from([out, "./" + out, f"valid/../{out}"]))]
  elif kind == "empty":
    out = ""
  else:
    out = draw(st.sampled_from(["/dev/null", "/dev/zero", "/dev/full"]))
  flag = draw(st.sampled_from(["--out", "--png"]))
  return ["--out", "y.npz", "--png", out] if flag == "--png" else ["--out", out]


@given(bad_outputs())
def test_bad_output_paths(folder, capsys, outputs):
  argv = BASELINES["invert"][:-2] + outputs
  refused(capsys, folder, argv)
