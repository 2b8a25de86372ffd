import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import models
from jinvert.errors import JinvertError


def test_unknown_model_lists_valid_names():
  with pytest.raises(JinvertError, match="unknown model 'lenet'; choose one of: mnist-mlp"):
    models.get_model("lenet")


@pytest.mark.parametrize("name,widths", [("mnist-mlp", (256, 256)), ("r2rt-mlp", (100, 100)),
                                         ("fashion-mlp", (128,))])
def test_hidden_activations_are_reachable_by_name(name, widths):
  spec = models.get_model(name)
  params = spec.init_params(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (5, 28, 28))
  logits, acts = models.apply_with_activations(spec.module())(params, x)
  assert logits.shape == (5, 10)
  assert tuple(acts) == spec.layers
  assert tuple(acts[f"hidden{i}"].shape[-1] for i in range(1, len(widths) + 1)) == widths
  np.testing.assert_allclose(acts["hidden1"], models.ACTIVATIONS[spec.module().activation](
      acts["hidden1_pre"]), rtol=1e-6)
  # the sown activation is the one the output layer consumes
  last = acts[spec.layers[-1]]
  out = params["params"]["out"]
  np.testing.assert_allclose(last @ out["kernel"] + out["bias"][None], logits, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(spec.module().apply(params, x), logits)


def test_r2rt_activations_are_sigmoid_and_mnist_mlp_relu():
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28))
  for name, check in (("r2rt-mlp", lambda a: (a > 0).all() and (a < 1).all()),
                      ("mnist-mlp", lambda a: (a >= 0).all() and (a == 0).any())):
    spec = models.get_model(name)
    _, acts = models.apply_with_activations(spec.module())(spec.init_params(jax.random.key(0)), x)
    assert check(acts["hidden1"])


def test_seed_normal_init_has_unit_stddev_and_r2rt_init_matches_post():
  seed = models.get_model("mnist-mlp").init_params(jax.random.key(0), "seed-normal")["params"]
  assert abs(float(jnp.std(seed["dense1"]["kernel"])) - 1.0) < 0.02
  assert abs(float(jnp.std(seed["dense1"]["bias"])) - 1.0) < 0.2
  r2rt = models.get_model("r2rt-mlp").init_params(jax.random.key(0))["params"]
  kernel = r2rt["dense1"]["kernel"]
  assert float(jnp.abs(kernel).max()) <= 0.2 + 1e-6  # truncated at two stddevs
  assert 0.07 < float(jnp.std(kernel)) < 0.1
  np.testing.assert_array_equal(r2rt["dense2"]["bias"], 0.1 * np.ones(100, np.float32))


@pytest.mark.parametrize("name, init", [("mnist-mlp", "glorot"), ("mnist-mlp", "seed-normal"),
                                         ("r2rt-mlp", "truncated-normal")])
def test_init_params_is_the_modules_init_compiled_once(name, init):
  spec = models.get_model(name)
  x = jnp.zeros((1,) + spec.input_shape, jnp.float32)
  for seed in (0, 1):
    eager = spec.module(init).init(jax.random.key(seed), x)
    jax.tree.map(np.testing.assert_array_equal, spec.init_params(jax.random.key(seed), init), eager)
  compiled = models._init._cache_size()
  spec.init_params(jax.random.key(2), init)  # a module built again: the same program
  assert models._init._cache_size() == compiled


def test_unknown_init_is_rejected():
  with pytest.raises(JinvertError, match="no init 'zeros'"):
    models.get_model("mnist-mlp").module("zeros")


@pytest.mark.parametrize("name", [n for n, s in models.REGISTRY.items() if s.task == "classifier"])
def test_every_classifier_exposes_its_layers(name):
  """Each registered classifier's listed layers come back, in order, from
  apply_with_activations, which matches plain inference."""
  spec = models.get_model(name)
  params = spec.init_params(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (3,) + spec.input_shape)
  logits, acts = models.apply_with_activations(spec.module())(params, x)
  assert tuple(acts) == spec.layers and logits.shape == (3, spec.n_classes)
  np.testing.assert_allclose(logits, spec.module().apply(params, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,shape", [("mnist-cnn", (2, 28, 28)), ("color-cnn", (2, 28, 28, 3))])
def test_convnets_sow_each_block_before_and_after_its_relu(name, shape):
  spec = models.get_model(name)
  apply_fn = models.apply_with_activations(spec.module())
  x = jax.random.uniform(jax.random.key(1), shape)
  _, acts = apply_fn(spec.init_params(jax.random.key(0)), x)
  for block in ("block1", "block2"):
    np.testing.assert_array_equal(acts[block], jax.nn.relu(acts[f"{block}_pre"]))
    assert float(acts[f"{block}_pre"].min()) < 0  # the ReLU had something to cut
  assert set(acts) == set(spec.layers)


@pytest.mark.parametrize("name,widths", [("lenet5", (6, 16, 120, 84)),
                                         ("lenet5-half", (3, 8, 60, 42))])
def test_lenet5_is_dafls_on_mnist_padded_to_32(name, widths):
  c1, c2, c3, d = widths
  spec = models.get_model(name)
  params = spec.init_params(jax.random.key(0))
  want = (25 * c1 + c1) + (25 * c1 * c2 + c2) + (25 * c2 * c3 + c3) + (c3 * d + d) + (d * 10 + 10)
  assert sum(p.size for p in jax.tree.leaves(params)) == want  # 61,706 for LeNet-5
  x = jax.random.uniform(jax.random.key(1), (2, 28, 28))
  _, acts = models.apply_with_activations(spec.module())(params, x)
  assert acts["block1"].shape == (2, 28, 28, c1) and acts["block3"].shape == (2, 1, 1, c3)
  # the first convolution sees MNIST zero-padded to 32x32, as DAFL's loader pads it
  padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None]
  conv = jax.lax.conv_general_dilated(padded, params["params"]["conv1"]["kernel"], (1, 1),
                                      "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  bias = params["params"]["conv1"]["bias"][None, None, None]
  np.testing.assert_allclose(acts["block1_pre"], conv + bias, rtol=1e-5, atol=1e-5)
