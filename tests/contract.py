"""The command line's contract for bad input, as a test helper.

Bad input: exit 2, exactly one line on stderr, no traceback, no new file anywhere under the
watched folder, and every file that was there byte-identical afterwards.
"""

import hashlib
import os
from pathlib import Path

import jax
import numpy as np

from jinvert import checkpoint, models
from jinvert.cli import main


def snapshot(folder: Path) -> dict:
  """{relative path: sha256} of every file under `folder` (folders as None)."""
  found = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs:
      found[os.path.relpath(os.path.join(root, name), folder)] = None
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return found


def run(capsys, *argv):
  code = main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def assert_refused(capsys, folder: Path, argv, *fragments) -> str:
  """Runs `jinvert argv` in-process and asserts the bad-input contract; returns the line."""
  before = snapshot(folder)
  code, out, err = run(capsys, *argv)
  assert code == 2, (code, out[-500:], err[-2000:])
  assert err.count("\n") == 1 and err.endswith("\n"), err
  assert "Traceback" not in err
  for fragment in fragments:
    assert fragment in err, err
  assert snapshot(folder) == before, "files changed"
  return err.strip()


def save(path: Path, name: str, **metadata) -> Path:
  """An untrained checkpoint of registered model `name` (enough for the contract)."""
  params = models.get_model(name).init_params(jax.random.key(0))
  checkpoint.save_checkpoint(path, params, {"model": name, **metadata})
  return path


def random_images(rng, n) -> np.ndarray:
  return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
