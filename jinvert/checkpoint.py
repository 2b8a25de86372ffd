"""Checkpoints: params plus metadata in msgpack (flax.serialization), never pickle.

File layout (one msgpack map):
  {"format": "jinvert-checkpoint", "version": 1,
   "metadata": {"model", "init", "dataset", "recipe", "seed", "test_accuracy",
                "jinvert_version", "jax_version", ...},
   "params": the Flax variables, arrays stored with their dtype and shape}
Written atomically; loading checks the model name and every array's shape and dtype.
"""

from pathlib import Path

import jax
import numpy as np
from flax import serialization

from jinvert.errors import JinvertError
from jinvert.files import atomic_write_bytes
from jinvert.models import get_model

FORMAT = "jinvert-checkpoint"
VERSION = 1


def save_checkpoint(path, params, metadata: dict) -> Path:
  """Writes `params` and `metadata` (which must name `model`) to `path` atomically."""
  if "model" not in metadata:
    raise JinvertError("checkpoint metadata must name its model")
  blob = {"format": FORMAT, "version": VERSION, "metadata": dict(metadata),
          "params": serialization.to_state_dict(jax.device_get(params))}
  return atomic_write_bytes(path, serialization.msgpack_serialize(blob))


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


def load_checkpoint(path, expect_model: str | None = None):
  """Reads a checkpoint and validates it against its model.

  Args:
    path: checkpoint file.
    expect_model: if given, the checkpoint must be of this model.

  Returns:
    (params, metadata).

  Raises:
    JinvertError: missing, truncated or foreign file; another model; any shape or dtype differing.
  """
  path = Path(path)
  try:
    blob = serialization.msgpack_restore(path.read_bytes())
  except FileNotFoundError:
    raise JinvertError(f"{path}: no such checkpoint") from None
  except Exception as e:  # msgpack raises several types for truncated or foreign bytes
    raise JinvertError(f"{path}: not a readable jinvert checkpoint ({type(e).__name__})") from None
  if not isinstance(blob, dict) or blob.get("format") != FORMAT:
    raise JinvertError(f"{path}: not a jinvert checkpoint")
  if blob.get("version") != VERSION:
    raise JinvertError(f"{path}: checkpoint version {blob.get('version')}, "
                       f"this jinvert reads version {VERSION}")
  metadata, params = blob["metadata"], blob["params"]
  model = metadata.get("model")
  if expect_model is not None and model != expect_model:
    raise JinvertError(f"{path}: checkpoint of model {model!r}, expected {expect_model!r}")
  spec = get_model(model)
  template = jax.eval_shape(lambda: spec.init_params(jax.random.key(0), metadata.get("init")))
  check_params(params, template, str(path), model)
  return params, metadata
