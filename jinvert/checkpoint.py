"""Checkpoints: params plus metadata in msgpack (flax.serialization), never pickle.

File layout (one msgpack map):
  {"format": "jinvert-checkpoint", "version": 1,
   "metadata": {"model", "init", "dataset", "recipe", "seed", "test_accuracy",
                "jinvert_version", "jax_version", ...},
   "params": the Flax variables, arrays stored with their dtype and shape}
Written atomically; loading checks the model name and every array's shape and dtype.

>>> import os, tempfile, jax
>>> from jinvert import models
>>> path = os.path.join(tempfile.mkdtemp(), "linear.msgpack")
>>> params = models.get_model("linear").init_params(jax.random.key(0))
>>> _ = save_checkpoint(path, params, {"model": "linear", "seed": 0})
>>> loaded, metadata = load_checkpoint(path, expect_model="linear")
>>> metadata["model"], loaded["params"]["out"]["kernel"].shape
('linear', (1, 1))
>>> load_checkpoint(path, expect_model="mnist-mlp")
Traceback (most recent call last):
...
jinvert.errors.JinvertError: ...: checkpoint of model 'linear', expected 'mnist-mlp'
"""

from pathlib import Path

import jax
import numpy as np
from flax import serialization

from jinvert.errors import JinvertError
from jinvert.files import atomic_write_bytes, read_input
from jinvert.models import get_model
from jinvert.version import __version__

FORMAT = "jinvert-checkpoint"
VERSION = 1


def checkpoint_bytes(params, metadata: dict) -> bytes:
  """The checkpoint file's bytes for `params` and `metadata` (which must name `model`)."""
  if "model" not in metadata:
    raise JinvertError("checkpoint metadata must name its model")
  blob = {"format": FORMAT, "version": VERSION, "metadata": dict(metadata),
          "params": serialization.to_state_dict(jax.device_get(params))}
  return serialization.msgpack_serialize(blob)


def provenance() -> dict:
  """What made a checkpoint: the jinvert and jax versions and the backend, for its metadata."""
  return {"jinvert_version": __version__, "jax_version": jax.__version__,
          "backend": jax.default_backend()}


def save_checkpoint(path, params, metadata: dict) -> Path:
  """Writes `params` and `metadata` (which must name `model`) to `path` atomically."""
  return atomic_write_bytes(path, checkpoint_bytes(params, metadata))


def _flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_params(params, template, what: str, model: str):
  """Raises a JinvertError naming every array of `params` that differs from `template`."""
  got, want = _flat(params), _flat(template)
  problems = [f"{k} missing" for k in want if k not in got]
  problems += [f"{k} unexpected" for k in got if k not in want]
  problems += [f"{k} has shape {np.shape(got[k])} {np.asarray(got[k]).dtype}, "
               f"model {model!r} needs {np.shape(want[k])} {want[k].dtype}"
               for k in want if k in got and (np.shape(got[k]) != np.shape(want[k])
                                              or np.asarray(got[k]).dtype != want[k].dtype)]
  if problems:
    raise JinvertError(f"{what} does not fit model {model!r}: " + "; ".join(problems[:4])
                       + (f"; and {len(problems) - 4} more" if len(problems) > 4 else ""))


# Metadata fields that code reads, and the types they must have when present.
METADATA_TYPES = {"model": str, "init": str, "dataset": str, "seed": int,
                  "test_accuracy": (int, float), "recipe": dict}


def _check_structure(blob, path):
  if not isinstance(blob, dict) or blob.get("format") != FORMAT:
    raise JinvertError(f"{path}: not a jinvert checkpoint")
  if blob.get("version") != VERSION:
    raise JinvertError(f"{path}: checkpoint version {blob.get('version')!r}, "
                       f"this jinvert reads version {VERSION}")
  for key in ("metadata", "params"):
    if not isinstance(blob.get(key), dict):
      raise JinvertError(f"{path}: checkpoint has no {key} map")
  metadata = blob["metadata"]
  for key, kind in METADATA_TYPES.items():
    value = metadata.get(key)
    if (key == "model" or value is not None) and (not isinstance(value, kind)
                                                  or isinstance(value, bool)):
      raise JinvertError(f"{path}: checkpoint metadata {key!r} is {type(value).__name__} "
                         f"{str(value)[:40]!r}, expected {getattr(kind, '__name__', 'a number')}")


def check_finite(params, what: str):
  """Raises a JinvertError naming the first array of `params` holding NaN or inf."""
  for name, leaf in _flat(params).items():
    if not np.all(np.isfinite(np.asarray(leaf))):
      raise JinvertError(f"{what}: {name} holds NaN or inf; the model cannot be used")


def load_checkpoint(path, expect_model: str | None = None):
  """Reads a checkpoint and validates it against its model.

  Args:
    path: checkpoint file.
    expect_model: if given, the checkpoint must be of this model.

  Returns:
    (params, metadata).

  Raises:
    JinvertError: missing, truncated or foreign file; a missing or mistyped field; another
      model; any array's shape or dtype differing from the model's; NaN or inf in a weight.
  """
  path = Path(path)
  raw = read_input(path, "checkpoint")
  try:
    blob = serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several types for truncated or foreign bytes
    raise JinvertError(f"{path}: not a readable jinvert checkpoint ({type(e).__name__})") from None
  _check_structure(blob, path)
  metadata, params = blob["metadata"], blob["params"]
  model = metadata["model"]
  if expect_model is not None and model != expect_model:
    raise JinvertError(f"{path}: checkpoint of model {model!r}, expected {expect_model!r}")
  spec = get_model(model)
  template = jax.eval_shape(lambda: spec.init_params(jax.random.key(0), metadata.get("init")))
  check_params(params, template, str(path), model)
  check_finite(params, str(path))
  return params, metadata
