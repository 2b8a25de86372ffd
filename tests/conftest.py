import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

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
