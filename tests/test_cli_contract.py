"""The command line's contract for bad input (tests/contract.py): exit 2, one line on stderr, no
traceback, nothing written. Arguments, files that are not what they claim, outputs that cannot be
written, sizes that cannot fit, and what is not bad input: bugs and the machine's limits."""

import gzip
import os
import struct
import zlib

import jax
import msgpack
import numpy as np
import pytest

from jinvert import checkpoint, data
from jinvert.errors import JinvertError
from conftest import write_tiny_dataset
from contract import assert_refused, run, save

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">f4"): 0x0D}


def idx(array, dtype=np.uint8) -> bytes:
  array = np.asarray(array).astype(np.dtype(dtype).newbyteorder(">"))
  code = IDX_CODES[np.dtype(dtype).newbyteorder(">") if array.dtype.kind == "f" else array.dtype]
  return (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
          + array.tobytes())


@pytest.fixture
def work(tmp_path, monkeypatch, isolated_env):
  """A folder with untrained checkpoints and a tiny valid dataset, and an existing output."""
  save(tmp_path / "mlp.msgpack", "mnist-mlp", dataset="mnist")
  save(tmp_path / "nodata.msgpack", "mnist-mlp")
  save(tmp_path / "linear.msgpack", "linear")
  save(tmp_path / "cvae.msgpack", "mnist-cvae", dataset="mnist")
  write_tiny_dataset(tmp_path / "data" / "mnist")
  (tmp_path / "old.npz").write_bytes(b"an earlier result")
  monkeypatch.chdir(tmp_path)
  return tmp_path


RAW = ("--preset", "raw", "--steps", "1", "--restarts", "1")


# Inputs that are not what they claim -------------------------------------------------------------

def test_msgpack_maps_that_are_not_full_checkpoints(work, capsys):
  for blob, fragment in (({"format": "jinvert-checkpoint", "version": 1, "metadata": {}},
                          "checkpoint has no params map"),
                         ({"format": "jinvert-checkpoint", "version": 1, "params": {}},
                          "checkpoint has no metadata map"),
                         ({"format": "jinvert-checkpoint", "version": 1, "params": {},
                           "metadata": {"model": 7}}, "metadata 'model' is int")):
    (work / "part.msgpack").write_bytes(msgpack.packb(blob))
    assert_refused(capsys, work, ["invert", "part.msgpack", *RAW, "--out", "x.npz"], fragment)


def test_natural_preset_without_a_dataset_in_the_checkpoint(work, capsys):
  assert_refused(capsys, work, ["invert", "nodata.msgpack", "--preset", "natural",
                                "--out", "x.npz"],
                 "names no dataset for the natural preset's prior; pass --dataset")


@pytest.mark.parametrize("flag,value,fragment", [
    ("--seed", "18446744073709551616", "argument --seed: must be a whole number from 0 to 4294967295"),
    ("--steps", "9223372036854775808", "argument --steps: must be a whole number from 1 to"),
    ("--restarts", "-5", "argument --restarts: must be a whole number from 1"),
])
def test_numbers_out_of_range(work, capsys, flag, value, fragment):
  assert_refused(capsys, work, ["invert", "mlp.msgpack", "--preset", "raw", flag, value,
                                "--out", "x.npz"], fragment)


def test_generate_with_a_classifier_that_is_not_one(work, capsys):
  assert_refused(capsys, work, ["generate", "cvae.msgpack", "--classifier", "linear.msgpack",
                                "--out", "x.npz"],
                 "--classifier linear.msgpack must be a classifier checkpoint; it holds 'linear'")


@pytest.mark.parametrize("write,fragment", [
    (lambda p: np.savez(p, a=np.ones(10)), "an .npz archive; give a single .npy array"),
    (lambda p: np.save(p, np.array(["a", "b"])), "holds <U1 values; it must hold numbers"),
    (lambda p: np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True),
     "not a readable .npy array"),
    (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, "
                             b"'shape': (1000000000000,), }" + b" " * 50 + b"\n"),
     "not a readable .npy array"),
])
def test_target_files_that_are_not_numeric_npy(work, capsys, write, fragment):
  path = work / "t.npy"
  write(path)
  if not path.exists():  # np.savez adds .npz
    os.rename(str(path) + ".npz", path)
  assert_refused(capsys, work, ["invert", "mlp.msgpack", *RAW, "--objective", "output",
                                "--target-file", "t.npy", "--out", "x.npz"], fragment)


def test_empty_test_set(work, capsys):
  folder = work / "data" / "mnist"
  (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(np.zeros((0, 28, 28)))))
  (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(np.zeros(0))))
  assert_refused(capsys, work, ["train", "mnist-mlp", "--data-dir", "data", "--out", "m.msgpack"],
                 "t10k-images-idx3-ubyte.gz: holds no images")


def test_idx_header_whose_product_wraps_in_int64():
  raw = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2 ** 31, 2 ** 31, 4)
  with pytest.raises(JinvertError, match=r"claims shape \(2147483648, 2147483648, 4\) "
                                         r"\(18,446,744,073,709,551,616 bytes\), over"):
    data.parse_idx(raw, "x.idx")


# Outputs checked before the work -----------------------------------------------------------------

@pytest.mark.parametrize("out,fragment", [
    ("data", "is a folder; give a file name inside it"),
    ("/proc/x.npz", "cannot write there"),
    ("old.npz/x.npz", "old.npz is a file, not a folder"),
    ("", "--out: the path is empty or blank"),
    ("a" * 252 + ".npz", "is 256 bytes, over this file system's 255"),
    ("/dev/null", "is not a regular file"),
    ("mlp.msgpack", "--out mlp.msgpack is also the input MODEL"),
])
def test_bad_output_paths(work, capsys, out, fragment):
  assert_refused(capsys, work, ["invert", "mlp.msgpack", *RAW, "--out", out], fragment)


def test_a_250_character_name_is_written_with_no_temporary_left(work, capsys):
  name = "a" * 250 + ".npz"  # the old temporary name, .NAME.XXXXXXXX.tmp, was too long for it
  code, _, _ = run(capsys, "invert", "mlp.msgpack", *RAW, "--out", name)
  assert code == 0 and (work / name).stat().st_size > 0
  assert not [p for p in work.iterdir() if p.name.startswith(".")]


def test_png_that_cannot_be_written_leaves_the_npz_alone(work, capsys):
  assert_refused(capsys, work, ["invert", "mlp.msgpack", *RAW, "--out", "old.npz",
                                "--png", "data"], "--png data: is a folder")
  assert_refused(capsys, work, ["invert", "mlp.msgpack", *RAW, "--out", "x.npz",
                                "--png", "x.npz"], "--png x.npz is the same file as --out")


def test_cache_that_is_a_file_is_refused_before_the_prior_trains(work, capsys, monkeypatch):
  (work / "cachefile").write_bytes(b"")
  monkeypatch.setenv("XDG_CACHE_HOME", str(work / "cachefile"))
  assert_refused(capsys, work, ["invert", "mlp.msgpack", "--out", "x.npz"],
                 "the prior cache (XDG_CACHE_HOME)", "cachefile is a file, not a folder")


def test_mistyped_prior_is_not_trained_into_place(work, capsys):
  assert_refused(capsys, work, ["invert", "mlp.msgpack", "--prior", "vea.msgpack",
                                "--out", "x.npz"], "vea.msgpack: no such checkpoint")


# What is loaded is checked -----------------------------------------------------------------------

@pytest.mark.parametrize("stem,array,dtype,fragment", [
    ("train-labels-idx1-ubyte", np.full(12, 11), np.uint8, "label 11 is outside the 10 classes"),
    ("train-labels-idx1-ubyte", np.full(12, -1), np.int8, "label -1 is outside the 10 classes"),
    ("train-images-idx3-ubyte", np.zeros((12, 10, 10)), np.uint8,
     "expected images shaped (N, 28, 28), got (12, 10, 10)"),
    ("train-images-idx3-ubyte", np.full((12, 28, 28), 300.0), ">f4",
     "float images must lie in [0, 1], found values in [300, 300]"),
])
def test_loaded_data_is_checked(work, capsys, stem, array, dtype, fragment):
  (work / "data" / "mnist" / f"{stem}.gz").write_bytes(gzip.compress(idx(array, dtype)))
  assert_refused(capsys, work, ["train", "mnist-mlp", "--data-dir", "data", "--out", "m.msgpack"],
                 fragment)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_checkpoint_with_a_non_finite_weight(work, capsys, value):
  params, meta = checkpoint.load_checkpoint(work / "mlp.msgpack")
  params = jax.tree.map(np.array, params)
  params["params"]["dense2"]["kernel"][3, 4] = value
  checkpoint.save_checkpoint(work / "bad.msgpack", params, meta)
  assert_refused(capsys, work, ["invert", "bad.msgpack", *RAW, "--out", "x.npz"],
                 "params/dense2/kernel holds NaN or inf")


@pytest.mark.parametrize("extra,fragment", [
    (["--lr", "1e6"], "gradient descent diverged"),
    (["--lr", "nan"], "argument --lr: must be a finite number"),
    (["--start", "inf"], "argument --start: must be a finite number"),
    (["--target", "1e300"], "argument --target: must be a finite number within float32's range"),
])
def test_reconstruct_never_reports_nan(work, capsys, extra, fragment):
  args = ["reconstruct", "linear.msgpack", "--target", "100", *extra]
  assert_refused(capsys, work, args, fragment)


def test_reconstruct_json_is_strict(work, capsys):
  import json
  code, out, _ = run(capsys, "reconstruct", "linear.msgpack", "--target", "100", "--lr", "1e-3")
  assert code == 0
  json.loads(out.splitlines()[-1], parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


# Sizes are bounded, and other failures are one line ----------------------------------------------

@pytest.mark.parametrize("argv,fragment", [
    (["invert", "mlp.msgpack", "--preset", "raw", "--targets", "0-2000000000", "--out", "x.npz"],
     "target 2000000000 is outside the model's 10 classes"),
    (["invert", "mlp.msgpack", "--preset", "raw", "--restarts", "1000000000", "--out", "x.npz"],
     "more than the"),
    (["invert", "mlp.msgpack", "--preset", "raw", "--steps", "1000000000", "--out", "x.npz"],
     "more than the"),
    (["generate", "cvae.msgpack", "--samples", "1000000000", "--out", "x.npz"], "more than the"),
    (["bench", "--restarts", "1000000000", "--no-references"], "more than the"),
    (["bench", "--restarts", "0"], "argument --restarts: must be a whole number from 1"),
    (["bench", "--restarts", "-5"], "argument --restarts: must be a whole number from 1"),
    (["bench", "--sizes", "x"], "--sizes: cannot read 'x'"),
])
def test_sizes_are_bounded(work, capsys, argv, fragment):
  assert_refused(capsys, work, argv, fragment)


def gzip_bomb(path, claimed_images: int, zeros: int):
  """A gzip file whose IDX header claims `claimed_images` 28x28 images, then `zeros` zero bytes."""
  compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
  with open(path, "wb") as f:
    f.write(compressor.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", claimed_images, 28, 28)))
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
      f.write(compressor.compress(block))
    f.write(compressor.flush())


def test_gzip_bomb_is_refused_from_its_header(work, capsys):
  gzip_bomb(work / "data" / "mnist" / "train-images-idx3-ubyte.gz", 2 ** 31, 64 << 20)
  assert_refused(capsys, work, ["train", "mnist-mlp", "--data-dir", "data", "--out", "m.msgpack"],
                 "IDX header claims shape (2147483648, 28, 28)", "over the")


def test_unexpected_errors_are_bugs_with_one_line(work, capsys, monkeypatch):
  def broken(*args, **kwargs):
    raise ZeroDivisionError("boom")
  monkeypatch.setattr("jinvert.checkpoint.load_checkpoint", broken)
  code, _, err = run(capsys, "invert", "mlp.msgpack", *RAW, "--out", "x.npz")
  assert code == 1 and err.count("\n") == 1
  assert "internal error: ZeroDivisionError: boom" in err and "--debug" in err
  with pytest.raises(ZeroDivisionError):
    run(capsys, "invert", "mlp.msgpack", *RAW, "--out", "x.npz", "--debug")


def test_out_of_memory_and_disk_full_are_one_line(work, capsys, monkeypatch):
  import errno
  for error, fragment in ((MemoryError(), "out of memory"),
                          (OSError(errno.ENOSPC, "No space left on device", "x.npz"),
                           "x.npz: No space left on device (the disk is full)")):
    def fail(*args, _e=error, **kwargs):
      raise _e
    monkeypatch.setattr("jinvert.engine.timed_invert", fail)
    assert_refused(capsys, work, ["invert", "mlp.msgpack", *RAW, "--out", "x.npz"], fragment)


def test_memory_limit_refuses_results_that_cannot_fit(work, capsys, monkeypatch):
  monkeypatch.setenv("JINVERT_MEMORY_LIMIT", "1M")
  assert_refused(capsys, work, ["invert", "mlp.msgpack", "--preset", "raw", "--restarts", "100",
                                "--out", "x.npz"], "would take about", "more than the 1.0 MB available")


def test_refusals_stay_small_in_memory(work):
  """The gzip bomb and a billion restarts are refused before anything large is allocated."""
  import subprocess
  import sys
  gzip_bomb(work / "data" / "mnist" / "train-images-idx3-ubyte.gz", 2 ** 31, 256 << 20)
  measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
  for argv in (["train", "mnist-mlp", "--data-dir", "data", "--out", "m.msgpack"],
               ["invert", "mlp.msgpack", "--preset", "raw", "--restarts", "1000000000",
                "--out", "x.npz"]):
    proc = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "jinvert", *argv],
                          cwd=work, capture_output=True, text=True, env=dict(os.environ))
    peak_kb = int(proc.stdout.split()[-1])
    assert peak_kb < 500 * 1024, (argv, peak_kb)
    assert "error:" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_a_repeated_warning_is_said_once_and_only_on_success(work, capsys, monkeypatch):
  import warnings
  from jinvert import engine
  real = engine.timed_invert

  def warns_twice(*args, **kwargs):
    warnings.warn("the same thing")
    warnings.warn("the same thing")
    return real(*args, **kwargs)
  monkeypatch.setattr("jinvert.engine.timed_invert", warns_twice)
  code, out, err = run(capsys, "invert", "mlp.msgpack", *RAW, "--out", "x.npz")
  assert code == 0, err
  assert [line for line in err.splitlines() if "warning" in line] == [
      "jinvert invert: warning: the same thing"], err
