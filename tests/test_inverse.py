import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jinvert import inverse, models, regression
from jinvert.errors import JinvertError


def test_safe_logit_is_finite_at_and_beyond_the_ends():
  p = jnp.array([0.0, 1.0, -0.5, 1.5, 1e-30, 1 - 1e-9, 0.5], jnp.float32)
  values = inverse.safe_logit(p)
  assert bool(jnp.all(jnp.isfinite(values)))
  assert float(values[6]) == 0.0 and float(values[0]) < -15 and float(values[1]) > 15
  grads = jax.vmap(jax.grad(inverse.safe_logit))(p)
  assert bool(jnp.all(jnp.isfinite(grads)))
  np.testing.assert_allclose(jax.nn.sigmoid(inverse.safe_logit(jnp.array([0.2, 0.7]))), [0.2, 0.7],
                             rtol=1e-6)


def test_dense_preimage_reproduces_the_layer_output():
  k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
  kernel = jax.random.normal(k1, (20, 6))  # wide: many preimages
  bias = jax.random.normal(k2, (6,))
  y = jax.random.normal(k3, (5, 6))
  x = inverse.dense_preimage(y, kernel, bias)
  np.testing.assert_allclose(x @ kernel + bias, y, atol=1e-4)
  reference = jax.random.normal(k4, (5, 20))
  near = inverse.dense_preimage(y, kernel, bias, reference)
  np.testing.assert_allclose(near @ kernel + bias, y, atol=1e-4)
  # minimum norm, and nearest the reference, among all preimages
  null = jnp.linalg.svd(kernel.T)[2][6:]  # rows spanning the null space of x -> x @ kernel
  for step in (0.1, -0.3):
    other = x + step * null[0]
    np.testing.assert_allclose(other @ kernel + bias, y, atol=1e-4)
    assert float(jnp.linalg.norm(x[0])) < float(jnp.linalg.norm(other[0]))
    assert float(jnp.linalg.norm(near - reference)) < float(jnp.linalg.norm(near + step * null[0] - reference))


def test_sigmoid_preimage_checks_the_range():
  np.testing.assert_allclose(jax.nn.sigmoid(inverse.sigmoid_preimage([0.25, 0.5])), [0.25, 0.5], rtol=1e-6)
  for bad in (0.0, 1.0, 1.2, -0.1):
    with pytest.raises(JinvertError, match="outside the sigmoid's range"):
      inverse.sigmoid_preimage([0.5, bad])


def test_exact_mlp_inverse_maps_back_to_the_same_hidden_layer():
  spec = models.get_model("r2rt-mlp")
  params = spec.init_params(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28))
  _, acts = models.apply_with_activations(spec.module())(params, x)
  x_back = inverse.exact_mlp_inverse(params, acts["hidden2"])
  _, acts_back = models.apply_with_activations(spec.module())(params, x_back.reshape(4, 28, 28))
  np.testing.assert_allclose(acts_back["hidden2"], acts["hidden2"], atol=2e-3)


def test_learned_inverse_training_lowers_the_loss():
  spec = models.get_model("r2rt-mlp")
  params = spec.init_params(jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (64, 28, 28))
  apply_fn = models.apply_with_activations(spec.module())
  _, losses, used = inverse.train_learned_inverse(apply_fn, params, images, jax.random.key(2),
                                                  steps=30, batch_size=32, confidence=0.0)
  assert float(losses[-1]) < 0.9 * float(losses[0]) and float(used.mean()) == 1.0


def _linear_params(w, b):
  return {"params": {"out": {"kernel": jnp.array([[w]], jnp.float32),
                             "bias": jnp.array([b], jnp.float32)}}}


@settings(max_examples=10, deadline=None)
@given(w=st.floats(0.05, 3.0), sign=st.sampled_from([-1.0, 1.0]), b=st.floats(-100, 100),
       y0=st.floats(-500, 500))
def test_descent_agrees_with_closed_form_on_random_linear_models(w, sign, b, y0):
  w, b = float(np.float32(sign * w)), float(np.float32(b))  # as the float32 model holds them
  result = regression.reconstruct(_linear_params(w, b), y0, learning_rate=0.25 / w ** 2,
                                  steps=80)
  closed = (y0 - b) / w
  assert result["reachable"]
  assert result["closed_form_x0"] == pytest.approx(closed, rel=1e-6)
  assert result["x0"] == pytest.approx(closed, rel=1e-4, abs=1e-3)


def test_sigmoid_targets_inside_are_reached_and_outside_are_unreachable():
  params = _linear_params(0.4, -30.0)
  inside = regression.reconstruct(params, 0.3, "sigmoid")
  assert inside["reachable"] and inside["y_at_x0"] == pytest.approx(0.3, rel=1e-4)
  for y0 in (0.0, 1.0, 2.0, -3.0):
    out = regression.reconstruct(params, y0, "sigmoid")
    assert out["reachable"] is False and out["x0"] is None and "outside" in out["reason"]
  flat = regression.reconstruct(_linear_params(0.0, 2.0), 1.0)
  assert flat["reachable"] is False and "weight is 0" in flat["reason"]
  with pytest.raises(JinvertError, match="target nan is not a finite float32 number"):
    regression.reconstruct(params, float("nan"))


def test_generator_sampling_is_deterministic_for_a_key():
  from jinvert import generate
  module = models.get_model("mnist-cvae").module()
  params = models.get_model("mnist-cvae").init_params(jax.random.key(0))
  a = generate.sample(module, params, [1, 7], 3, jax.random.key(5))
  b = generate.sample(module, params, [1, 7], 3, jax.random.key(5))
  c = generate.sample(module, params, [1, 7], 3, jax.random.key(6))
  assert a.shape == (2, 3, 28, 28) and float(a.min()) >= 0 and float(a.max()) <= 1
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  # the label matters: same latents, other digit, other image
  d = generate.sample(module, params, [2, 7], 3, jax.random.key(5))
  assert not np.allclose(a[0], d[0]) and np.allclose(a[1], d[1])
