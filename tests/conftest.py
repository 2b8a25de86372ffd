"""Shared fixtures. Every test, and every process a test starts, runs under JAX's strict dtype
promotion and with implicit rank promotion an error (as Equinox tests): a silent float64 or a
broadcast that only works by accident fails here instead of in a user's program."""

import gzip
import os
import shutil
import struct
import tempfile
from pathlib import Path

# before jax is imported anywhere, so that subprocesses inherit them too
os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"
# The suite is compile-bound. LLVM at -O2 rather than XLA's default -O3 compiles an inversion
# 2-2.6x faster and runs it as fast (experiments/BENCHMARKS.md, "The test suite on 2 cores"):
# the same programs, optimised less. Flags already set come after, so they win.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=2"
os.environ["XLA_FLAGS"] = f"{XLA_TEST_FLAGS} {os.environ.get('XLA_FLAGS', '')}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# One persistent XLA cache for the run's test processes (both workers), not for the processes a
# test starts (some are killed mid-write): the suite compiles the same programs again and again,
# each call of `distill` or the command line building its own closures, and a program compiled
# once is then read back (experiments/BENCHMARKS.md, "The test suite on 2 cores"). An entry read
# while the other worker writes it is compiled again, with a warning.
# Named by the run's first process, whose workers inherit it.
XLA_CACHE = Path(os.environ.setdefault(
    "JINVERT_TESTS_XLA_CACHE", os.path.join(tempfile.gettempdir(), f"jinvert-xla-{os.getpid()}")))
jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def lone_process_cache(folder: Path) -> dict:
  """The environment variables that give a process a test starts XLA's persistent cache in
  `folder`, every program kept: processes run one after another (never two at once, which
  would write the same entries) then load what an earlier one compiled."""
  return dict(JAX_COMPILATION_CACHE_DIR=str(folder),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def pytest_sessionfinish(session):
  if "PYTEST_XDIST_WORKER" not in os.environ:  # the run's first process, which ends last
    shutil.rmtree(XLA_CACHE, ignore_errors=True)

# Property suites: CI sees the same derandomized examples every run; explore more with
# HYPOTHESIS_PROFILE=explore.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("explore", max_examples=1500, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JINVERT_DATA", REPO.parent / "shared" / "data"))


def idx_bytes(array: np.ndarray) -> bytes:
  """A hand-made IDX file of unsigned bytes."""
  array = np.asarray(array, np.uint8)
  return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_tiny_dataset(folder: Path, n_train=12, n_test=6, gz=True, seed=0):
  """Writes a tiny fake MNIST-layout dataset (random pixels, labels 0-9) into `folder`."""
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  files = {
      "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
      "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
      "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
  }
  for stem, array in files.items():
    raw = idx_bytes(array)
    if gz:
      (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
    else:
      (folder / stem).write_bytes(raw)
  return files


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
  """No JINVERT_DATA, an empty cache, offline: nothing outside tmp_path is found."""
  monkeypatch.delenv("JINVERT_DATA", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setenv("JINVERT_OFFLINE", "1")
  monkeypatch.setattr("jinvert.data.DEBIAN_FOLDERS", {})
  return tmp_path


def real_data_or_skip(name="mnist"):
  folder = SHARED_DATA / name
  if not (folder / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"real data not found at {folder} (set JINVERT_DATA)")
  return SHARED_DATA


def tiny_model(key, n_out=4, hidden=6, dtype=jnp.float32, n_in=25):
  """A random n_in-hidden-n_out tanh MLP returning (outputs, {"h_pre": pre-activations,
  "h": tanh})."""
  k1, k2 = jax.random.split(key)
  params = {"w1": jax.random.normal(k1, (n_in, hidden), dtype),
            "w2": jax.random.normal(k2, (hidden, n_out), dtype)}

  def apply_fn(params, x):
    pre = x.reshape(x.shape[0], -1) @ params["w1"]
    h = jnp.tanh(pre)
    return h @ params["w2"], {"h_pre": pre, "h": h}
  return apply_fn, params


@pytest.fixture
def x64():
  """float64 for the test's duration: finite differences and bit-level comparisons."""
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def finite_difference_check(f, x, key, directions=3, eps=1e-6, rtol=1e-6, atol=1e-8):
  """Asserts that jax.grad(f) at x matches central differences along random directions
  (float64 inputs: the x64 fixture)."""
  grad = jax.grad(f)(x)
  assert grad.dtype == x.dtype
  for i in range(directions):
    v = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
    numeric = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(grad, v), numeric, rtol=rtol, atol=atol)


def pytest_collection_modifyitems(config, items):
  """The README's example trains on MNIST: without the data it is skipped, as every test that
  needs real data is (`real_data_or_skip`)."""
  if (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists():
    return
  for item in items:
    if item.nodeid.endswith("README.md::README.md"):
      item.add_marker(pytest.mark.skip(reason=f"real data not found at {SHARED_DATA / 'mnist'} "
                                              "(set JINVERT_DATA)"))
