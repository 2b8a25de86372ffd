import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import data, models, train
from jinvert.errors import JinvertError
from conftest import real_data_or_skip


def _fixed_batch(key, n=64):
  kx, ky = jax.random.split(key)
  return jax.random.uniform(kx, (n, 28, 28)), jax.random.randint(ky, (n,), 0, 10)


@pytest.mark.parametrize("name", ["mnist-mlp", "r2rt-mlp", "fashion-mlp"])
def test_train_step_lowers_loss_on_fixed_batch(name):
  spec = models.get_model(name)
  recipe = spec.recipe
  state = train.create_train_state(spec.module(), spec.init_params(jax.random.key(0)), recipe)
  batch = _fixed_batch(jax.random.key(1))
  step = jax.jit(train.train_step, static_argnames="loss")
  losses = []
  for _ in range(20):
    state, metrics = step(state, batch, loss=recipe.loss)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.95 * losses[0] and losses[-1] < min(losses[:5])


def test_epoch_indices_cover_each_example_once_per_epoch():
  idx = np.asarray(train.epoch_indices(jax.random.key(0), 10, 3, 6))
  assert idx.shape == (6, 3)
  for epoch in (idx[:3].ravel(), idx[3:].ravel()):  # 3 batches of 3 from 10 examples
    assert len(set(epoch)) == 9


def _train_tiny(seed):
  spec = models.get_model("mnist-mlp")
  recipe = dataclasses.replace(spec.recipe, batch_size=16, epochs=2)
  x, y = _fixed_batch(jax.random.key(2), 64)
  key = jax.random.key(seed)
  state, history = train.train_and_evaluate(spec.module(), spec.init_params(key), recipe,
                                            (x, y), (x, y), key, log=lambda line: None)
  return state.params, history


def test_same_seed_gives_bit_identical_params():
  a, _ = _train_tiny(0)
  b, _ = _train_tiny(0)
  c, _ = _train_tiny(1)
  for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(la, lb)
  assert not all(np.array_equal(la, lc) for la, lc in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


def test_linear_recipe_reaches_least_squares_fit():
  spec = models.get_model("linear")
  x, y, _, _ = data.seed004_linear(jax.random.key(3))
  recipe = dataclasses.replace(spec.recipe, epochs=60_000, log_every=60_000)
  state, _ = train.train_and_evaluate(spec.module(), spec.init_params(jax.random.key(0)), recipe,
                                      (x, y), (x, y), jax.random.key(0), log=lambda line: None)
  w, b = np.polyfit(x[:, 0].astype(np.float64), y.astype(np.float64), 1)
  layer = state.params["params"]["out"]
  assert abs(float(layer["kernel"][0, 0]) - w) < 2e-3
  assert abs(float(layer["bias"][0]) - b) < 1.0


@pytest.mark.slow
def test_mnist_mlp_learns_on_a_real_slice():
  ds = data.load_dataset("mnist", real_data_or_skip("mnist"))
  spec = models.get_model("mnist-mlp")
  recipe = dataclasses.replace(spec.recipe, epochs=2)
  state, history = train.train_and_evaluate(
      spec.module(), spec.init_params(jax.random.key(0)), recipe,
      (ds.train_images[:5000], ds.train_labels[:5000]), (ds.test_images[:2000], ds.test_labels[:2000]),
      jax.random.key(0), log=lambda line: None)
  assert history[-1]["test_accuracy"] > 0.85


def test_batchnorm_statistics_are_learned_and_used_at_inference():
  """mnist-cnn trains on the batch's statistics, moves its running averages, and infers with
  those averages (an example's output does not depend on the rest of its batch)."""
  spec = models.get_model("mnist-cnn")
  recipe = spec.recipe
  variables = spec.init_params(jax.random.key(0))
  state = train.create_train_state(spec.module(), variables, recipe)
  batch = _fixed_batch(jax.random.key(1), 32)
  step = jax.jit(train.train_step, static_argnames="loss")
  losses = []
  for _ in range(15):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.9 * losses[0]
  before, after = variables["batch_stats"]["bn1"]["mean"], state.params["batch_stats"]["bn1"]["mean"]
  assert not np.allclose(before, after)
  apply = jax.jit(spec.module().apply)
  x = batch[0]
  np.testing.assert_allclose(apply(state.params, x[:1]), apply(state.params, x)[:1], rtol=1e-5,
                             atol=1e-5)


def test_a_dataset_whose_inputs_the_model_does_not_take_is_refused():
  with pytest.raises(JinvertError, match=r"model 'linear' takes inputs of shape \(1,\); dataset "
                                         r"'mnist' holds \(28, 28\)"):
    train.fit("linear", "mnist")
  with pytest.raises(JinvertError, match="unknown dataset 'cifar'"):
    train.fit("mnist-mlp", "cifar")


def test_every_zoo_model_has_a_recipe_its_dataset_fits():
  for spec in models.REGISTRY.values():
    assert data.DATASETS[spec.dataset].input_shape == spec.input_shape, spec.name
    assert spec.recipe.loss in train.LOSSES and spec.recipe.optimizer in train.OPTIMIZERS


def test_outliers_are_noise_smooth_noise_and_shuffled_ink():
  images = jnp.full((60, 28, 28), 0.3).at[:, :14].set(0.9)  # half the pixels ink
  found = np.asarray(train.outliers(jax.random.key(0), images))
  shuffled = [np.array_equal(np.sort(o.ravel()), np.sort(np.asarray(images[0]).ravel()))
              for o in found]
  rough = [float(np.abs(np.diff(o, axis=-1)).mean()) for o in found]
  kinds = ["shuffled" if s else ("noise" if r > 0.2 else "smooth") for s, r in zip(shuffled, rough)]
  assert {kinds.count(k) for k in ("shuffled", "noise", "smooth")} <= set(range(10, 31))
  assert not any(np.array_equal(o, np.asarray(images[0])) for o in found)  # the digit is gone


@pytest.mark.parametrize("judge", ["judge-cnn", "judge-resnet"])
def test_outlier_exposure_adds_half_the_cross_entropy_from_uniform_on_outliers(judge):
  spec = models.get_model(judge)
  assert spec.recipe.loss == "xent_oe"
  params = spec.init_params(jax.random.key(0))
  x, y = _fixed_batch(jax.random.key(1), n=12)
  key = jax.random.key(7)
  apply_fn = spec.module().apply
  value, metrics = train.LOSSES["xent_oe"](apply_fn, params, x, y, key)
  plain, _ = train.LOSSES["mean_xent"](apply_fn, params, x, y, None)
  logp = jax.nn.log_softmax(apply_fn(params, train.outliers(key, x)))
  assert float(value) == pytest.approx(float(plain) - 0.5 * float(jnp.mean(logp)), rel=1e-5)
  assert float(metrics["outlier_xent"]) == pytest.approx(-float(jnp.mean(logp)), rel=1e-5)
  step = jax.jit(train.train_step, static_argnames="loss")
  state = train.create_train_state(spec.module(), params, spec.recipe)
  losses = []
  for i in range(15):
    state, m = step(state, (x, y), loss="xent_oe", key=jax.random.key(i))
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.9 * losses[0]
