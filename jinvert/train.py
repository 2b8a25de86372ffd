"""Pure training: `train_step`, scanned epochs, and `fit`, which trains a zoo model by its recipe.

An epoch is one `lax.scan` over shuffled batches, compiled once (against a Python loop over a
jitted step: experiments/RESULTS.md). Each model's recipe is part of its zoo entry
(`jinvert.models.ModelSpec.recipe`).

>>> import jax
>>> epoch_indices(jax.random.key(0), n_examples=10, batch_size=3, n_steps=4).shape  # 3 a pass
(4, 3)
>>> params, metadata = fit("linear", epochs=3000, log=lambda line: None)    # seed 004's model
>>> metadata["dataset"], round(float(params["params"]["out"]["kernel"][0, 0]), 1)
('seed004-linear', 0.4)
"""

import dataclasses
import functools
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from jinvert import optimizers
from jinvert.errors import JinvertError
from jinvert.models import Recipe


OPTIMIZERS = {"adam": optax.adam, "adagrad": optax.adagrad, "sgd": optax.sgd}


def make_optimizer(recipe: Recipe) -> optax.GradientTransformation:
  return OPTIMIZERS[recipe.optimizer](recipe.learning_rate)


def create_train_state(module, params, recipe: Recipe) -> train_state.TrainState:
  return train_state.TrainState.create(apply_fn=module.apply, params=params,
                                       tx=make_optimizer(recipe))


def _classification(reduce):
  def loss(apply_fn, params, inputs, labels, key):
    del key
    out = apply_fn(params, inputs)
    logits, updated = out if isinstance(out, tuple) else (out, None)  # BatchNorm's statistics
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    metrics = {"loss": jnp.mean(xent), "accuracy": accuracy}
    if updated is not None:
      metrics["updated_variables"] = updated
    return reduce(xent), metrics
  return loss


def _mse(apply_fn, params, inputs, targets, key):
  del key
  value = jnp.mean((apply_fn(params, inputs)[..., 0] - targets) ** 2)
  return value, {"loss": value}


def _elbo(apply_fn, params, inputs, labels, key):
  """Negative ELBO of a (conditional) VAE whose apply returns (logits, mean, logvar)."""
  logits, mean, logvar = apply_fn(params, inputs, labels, key)
  x = inputs.reshape(logits.shape)
  reconstruction = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)
  kl = -0.5 * jnp.sum(1 + logvar - mean ** 2 - jnp.exp(logvar), axis=-1)
  value = jnp.mean(reconstruction + kl)
  return value, {"loss": value, "kl": jnp.mean(kl)}


def outliers(key, images):
  """As many images as `images` (N, H, W) that are no digit: uniform noise, smooth noise (7x7
  noise upsampled), and the batch's own images with their pixels shuffled (ink in a digit's
  amount, in no digit's shape), a third each."""
  n, (h, w) = len(images), images.shape[-2:]
  k1, k2, k3, k4 = jax.random.split(key, 4)
  noise = jax.random.uniform(k1, images.shape, images.dtype)
  coarse = jax.random.uniform(k2, (n, 7, 7), images.dtype)
  smooth = jax.image.resize(coarse, (n, h, w), "linear").reshape(images.shape)
  flat = images.reshape(n, -1)
  shuffled = flat[:, jax.random.permutation(k3, flat.shape[1])].reshape(images.shape)
  kind = jax.random.randint(k4, (n,) + (1,) * (images.ndim - 1), 0, 3)
  return jnp.where(kind == 0, noise, jnp.where(kind == 1, smooth, shuffled))


def _outlier_exposure(apply_fn, params, inputs, labels, key):
  """Cross-entropy on the batch plus 0.5 x the cross-entropy from the uniform distribution on
  as many `outliers` (Hendrycks et al. 2019, outlier exposure): a judge that calls noise a
  digit with confidence would credit any inversion."""
  value, metrics = _classification(jnp.mean)(apply_fn, params, inputs, labels, None)
  spread = -jnp.mean(jax.nn.log_softmax(apply_fn(params, outliers(key, inputs))))
  return value + 0.5 * spread, {**metrics, "outlier_xent": spread}


# Each loss is `loss(apply_fn, params, inputs, labels, key) -> (scalar, metrics)`.
LOSSES = {
    "mean_xent": _classification(jnp.mean),
    "sum_xent": _classification(jnp.sum),  # seed 002: -tf.reduce_sum(y_ * tf.log(y))
    "mse": _mse,
    "elbo": _elbo,
    "xent_oe": _outlier_exposure,
}


def train_step(state, batch, loss: str = "mean_xent", key=None):
  """One optimiser step on a batch `(inputs, labels)`.

  Args:
    state: a flax TrainState.
    batch: `(inputs, labels)`.
    loss: a name in LOSSES.
    key: `jax.random` key for losses that sample (the VAE's ELBO).

  Returns:
    (new state, metrics of the batch before the step).
  """
  inputs, labels = batch
  apply_fn = state.apply_fn
  if "batch_stats" in state.params:  # BatchNorm: the batch's statistics, and updated averages
    apply_fn = lambda p, x: state.apply_fn(p, x, train=True, mutable=["batch_stats"])
  grads, metrics = jax.grad(
      lambda params: LOSSES[loss](apply_fn, params, inputs, labels, key), has_aux=True)(
          state.params)
  updated = metrics.pop("updated_variables", None)
  state = optimizers.apply_gradients(state, grads)
  if updated is not None:
    state = state.replace(params={**state.params, **updated})
  return state, metrics


def epoch_indices(key, n_examples: int, batch_size: int, n_steps: int):
  """Batch indices for `n_steps` steps: consecutive shuffled epochs, cut to whole batches."""
  per_epoch = n_examples // batch_size
  n_epochs = -(-n_steps // per_epoch)
  keys = jax.random.split(key, n_epochs)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n_examples)[:per_epoch * batch_size])(keys)
  return perms.reshape(-1, batch_size)[:n_steps]


def train_steps(state, inputs, labels, indices, key, loss: str = "mean_xent"):
  """Runs one step per row of `indices` with `lax.scan`; returns (state, mean metrics)."""
  def body(state, idx):
    return train_step(state, (inputs[idx], labels[idx]), loss, jax.random.fold_in(key, state.step))

  state, metrics = jax.lax.scan(body, state, indices)
  return state, jax.tree.map(jnp.mean, metrics)


train_steps_jit = jax.jit(train_steps, static_argnames="loss", donate_argnums=0)


def evaluate(apply_fn: Callable, params, inputs, labels, loss: str = "mean_xent",
             batch_size: int = 10_000, key=None) -> dict:
  """Metrics of `loss` over a whole split, averaged over batches of `batch_size`."""
  key = jax.random.key(0) if key is None else key
  batches = [(inputs[i:i + batch_size], labels[i:i + batch_size])
             for i in range(0, len(inputs), batch_size)]
  metrics = [_eval_batch(apply_fn, params, jnp.asarray(x), jnp.asarray(y), key, loss)
             for x, y in batches]
  weights = np.array([len(x) for x, _ in batches], np.float64)
  return {k: float(np.average([float(m[k]) for m in metrics], weights=weights)) for k in metrics[0]}


@functools.partial(jax.jit, static_argnames=("apply_fn", "loss"))
def _eval_batch(apply_fn, params, inputs, labels, key, loss):
  return LOSSES[loss](apply_fn, params, inputs, labels, key)[1]


def total_steps(recipe: Recipe, n_examples: int) -> int:
  if recipe.steps is not None:
    return recipe.steps
  return recipe.epochs * (n_examples // recipe.batch_size)


def train_and_evaluate(module, params, recipe: Recipe, train, test, key, log=None):
  """Trains `params` by `recipe` and evaluates on `test` after every logged chunk.

  Args:
    module: the Flax module.
    params: initial variables.
    recipe: the training recipe.
    train, test: `(inputs, labels)` pairs of arrays.
    key: `jax.random` key for shuffling and for losses that sample.
    log: called with one progress line per chunk (default: print to stderr).

  Returns:
    (trained state, list of per-chunk metric dicts).
  """
  log = log or (lambda line: print(line, file=sys.stderr, flush=True))
  n = len(train[0])
  if recipe.batch_size > n:
    raise JinvertError(f"batch size {recipe.batch_size} exceeds the {n} training examples")
  state = create_train_state(module, params, recipe)
  inputs, labels = jnp.asarray(train[0]), jnp.asarray(train[1])
  per_epoch = n // recipe.batch_size
  steps = total_steps(recipe, n)
  chunk = per_epoch * recipe.log_every
  shuffle_key, noise_key = jax.random.split(key)
  n_chunks = -(-steps // chunk)
  history = []
  for c in range(n_chunks):
    t0 = time.perf_counter()
    n_steps = min(chunk, steps - c * chunk)
    indices = epoch_indices(jax.random.fold_in(shuffle_key, c), n, recipe.batch_size, n_steps)
    state, metrics = train_steps_jit(state, inputs, labels, indices, noise_key, loss=recipe.loss)
    metrics = {f"train_{k}": float(v) for k, v in metrics.items()}
    metrics.update({f"test_{k}": v for k, v in
                    evaluate(state.apply_fn, state.params, *test, loss=recipe.loss).items()})
    metrics.update(step=c * chunk + n_steps, seconds=time.perf_counter() - t0)
    history.append(metrics)
    epoch = (c * chunk + n_steps) / per_epoch
    shown = "  ".join(f"{k} {metrics[k]:.6f}" for k in
                      ("train_loss", "train_accuracy", "test_loss", "test_accuracy") if k in metrics)
    log(f"epoch {epoch:g}/{steps / per_epoch:g}  step {metrics['step']}/{steps}  {shown}  "
        f"({metrics['seconds']:.1f} s)")
  return state, history


def fit(model: str, dataset: str | None = None, seed: int = 0, epochs: int | None = None,
        init: str | None = None, data_dir=None, log=None):
  """Trains a registered model by its recipe on its data; the whole `jinvert train` job.

  Args:
    model: registry name.
    dataset: a name in `jinvert.data.DATASETS` whose inputs the model takes (default: the
      model's own).
    seed: decides init, shuffling and any sampling (and seed 004's generated points).
    epochs: overrides the recipe's epochs or fixed step count.
    init: init scheme name (default: the model's first).
    data_dir: optional data folder tried first.
    log: progress callback (default: stderr).

  Returns:
    (params, metadata) ready for `checkpoint.save_checkpoint`.
  """
  from jinvert import checkpoint, data, models

  spec = models.get_model(model)
  recipe = spec.recipe
  if epochs is not None:
    if epochs <= 0:
      raise JinvertError(f"epochs must be positive, got {epochs}")
    recipe = dataclasses.replace(recipe, epochs=epochs, steps=None)
  dataset = dataset or spec.dataset
  if dataset not in data.DATASETS:
    raise JinvertError(f"unknown dataset {dataset!r}; choose one of: {', '.join(data.DATASETS)}")
  if data.DATASETS[dataset].input_shape != spec.input_shape:
    raise JinvertError(f"model {spec.name!r} takes inputs of shape {spec.input_shape}; dataset "
                       f"{dataset!r} holds {data.DATASETS[dataset].input_shape}")
  init_key, data_key, shuffle_key = jax.random.split(jax.random.key(seed), 3)
  ds = data.load_dataset(dataset, data_dir, key=data_key)
  init = init or spec.inits[0]
  t0 = time.perf_counter()
  state, history = train_and_evaluate(spec.module(init), spec.init_params(init_key, init), recipe,
                                      (ds.train_images, ds.train_labels),
                                      (ds.test_images, ds.test_labels), shuffle_key, log)
  final = history[-1]
  metadata = {"model": spec.name, "init": init, "dataset": dataset, "seed": seed,
              "recipe": dataclasses.asdict(recipe), "test_accuracy": final.get("test_accuracy"),
              "test_loss": final["test_loss"], "train_seconds": time.perf_counter() - t0,
              **checkpoint.provenance()}
  return state.params, metadata


def load_or_train(path, model: str, dataset: str | None = None, seed: int = 0, data_dir=None,
                  log=None):
  """Loads the checkpoint at `path` if it exists (checking it is `model` on `dataset`), else
  trains it with `fit` and saves it there atomically. Returns (params, metadata)."""
  from pathlib import Path
  from jinvert import checkpoint

  if Path(path).exists():
    params, metadata = checkpoint.load_checkpoint(path, expect_model=model)
    if dataset is not None and metadata.get("dataset") != dataset:
      raise JinvertError(f"{path}: checkpoint trained on {metadata.get('dataset')!r}, "
                         f"expected {dataset!r}")
    return params, metadata
  (log or (lambda line: print(line, file=sys.stderr, flush=True)))(
      f"training {model} on {dataset} (seed {seed}) -> {path}")
  params, metadata = fit(model, dataset, seed, data_dir=data_dir, log=log)
  checkpoint.save_checkpoint(path, params, metadata)
  return params, metadata
