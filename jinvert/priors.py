"""The natural preset's prior: a VAE trained on the model's dataset, kept in the user cache.

The natural preset (`jinvert.presets.natural`) optimises in the latent space of a VAE trained
on the same data as the model. The VAE is trained once per dataset, on first use (about 30 s
on 2 cores), and kept at `cache_path(dataset)`. `check` finds out, before any work, whether it
can be had; `load` returns it, training it first if it must. It reads data: the data-free
preset never uses it.
"""

from pathlib import Path

from jinvert import checkpoint, data, files, models, train
from jinvert.errors import JinvertError

DATASETS = ("mnist", "fashion-mnist")


def cache_path(dataset: str) -> Path:
  """Where the cache keeps the VAE for `dataset`."""
  return data.cache_dir() / "priors" / f"vae-{dataset}-s0.msgpack"


def check(dataset: str, path=None):
  """Checks that the prior for `dataset` can be had, before any work: `path`, if given, must
  be a VAE checkpoint of `dataset`; else the cache's, or, if it is missing, a cache the VAE
  can be written to. Returns the VAE's params, or None when `load` must train it."""
  if dataset not in DATASETS:
    raise JinvertError(f"the natural preset's prior learns from {' or '.join(DATASETS)}, not "
                       f"{dataset!r}")
  if path is not None:
    return _load(path, dataset)
  cached = cache_path(dataset)
  if cached.exists():
    return _load(cached, dataset)
  files.check_output_path(cached, "the prior cache (XDG_CACHE_HOME)")
  return None


def _load(path, dataset):
  params, meta = checkpoint.load_checkpoint(path, expect_model="vae")
  if meta.get("dataset") != dataset:
    raise JinvertError(f"{path}: prior trained on {meta.get('dataset')!r}, the model needs "
                       f"{dataset!r}")
  return params


def load(dataset: str, params=None, data_dir=None):
  """(VAE module, params) for `dataset`: `params` as `check` returned them, else the cache's,
  trained on first use."""
  if params is None:
    params, _ = train.load_or_train(cache_path(dataset), "vae", dataset, seed=0,
                                    data_dir=data_dir)
  return models.get_model("vae").module(), params
