"""Objectives: gradients, the algebra, names and target kinds derived by `wrap_objective`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import objectives as ob
from jinvert.errors import JinvertError
from jinvert.objectives import Context
from conftest import finite_difference_check, tiny_model

SHAPE = (5, 5)

OBJECTIVES = {
    "class_logit": (ob.class_logit(), 2),
    "class_log_prob": (ob.class_log_prob(), 1),
    "class_log_prob_warm": (ob.class_log_prob(temperature=3.0), 1),
    "class_log_prob_up_to": (ob.class_log_prob_up_to(0.99), 1),
    "cross_entropy": (ob.cross_entropy(), 3),
    "cross_entropy_to": (ob.cross_entropy_to(), np.array([0.1, 0.2, 0.3, 0.4])),
    "output_l1": (ob.output_l1(), np.array([0.0, 1.0, 0.0, 0.0])),
    "output_l2_logits": (ob.output_l2(space="logits"), np.array([1.0, -1.0, 0.5, 2.0])),
    "output_error": (ob.output_error(), 0.7),
    "unit": (ob.unit("h"), 4),
    "unit_off": (-ob.unit("h", 1), 0),
    "l2": (ob.l2(), 0),
    "l1": (ob.l1(), 0),
    "total_variation": (ob.total_variation(), 0),
    "squareness": (ob.squareness(), 0),
    "squareness_above": (ob.squareness(threshold=0.2), 0),
    "mean_squared_distance_to": (ob.mean_squared_distance_to(np.full(SHAPE, 0.5)), 0),
    "euclidean_distance_to": (ob.euclidean_distance_to(np.full(SHAPE, 0.5)), 0),
    "combined": (ob.class_logit(8 % 4) - 0.05 * ob.total_variation() + 2 * ob.l2(), 0),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_gradient_matches_finite_differences(name, x64):
  objective, target = OBJECTIVES[name]
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)

  def f(x):
    out, acts = apply_fn(params, x[None])
    return objective(Context(x, out[0], {k: v[0] for k, v in acts.items()}, jnp.asarray(target)))

  finite_difference_check(f, jax.random.uniform(jax.random.key(1), SHAPE, jnp.float64),
                          jax.random.key(10))


def test_objectives_add_scale_and_name():
  objective = ob.class_logit() - 0.05 * ob.total_variation()
  assert objective.name == "class_logit() - 0.05*total_variation()"
  assert objective.target_kind == "class"
  ctx = Context(jnp.eye(3), jnp.array([1.0, 5.0]), {}, 1)
  tv = float(ob.total_variation()(ctx))
  assert float(objective(ctx)) == pytest.approx(5.0 - 0.05 * tv)
  assert float(sum([ob.class_logit(0), ob.class_logit(1)])(ctx)) == pytest.approx(6.0)
  with pytest.raises(JinvertError, match="mixes target kinds 'class' and 'unit'"):
    ob.class_logit() + ob.unit("h")


def test_class_log_prob_at_a_temperature_keeps_pulling_once_the_class_is_sure():
  """At temperature T it is log softmax(outputs / T): at 1 the default, and above 1 a sure
  class's objective still rises with its margin where the default has all but stopped."""
  sure, surer = (Context(jnp.zeros(2), jnp.array([0.0, margin]), {}, 1) for margin in (12., 24.))
  cold, warm = ob.class_log_prob(), ob.class_log_prob(temperature=3.0)
  assert float(ob.class_log_prob(temperature=1.0)(sure)) == float(cold(sure))
  assert float(warm(sure)) == pytest.approx(float(jax.nn.log_softmax(jnp.array([0.0, 4.0]))[1]))
  assert float(warm(surer) - warm(sure)) > 100 * float(cold(surer) - cold(sure)) > 0


@pytest.mark.parametrize("objective,name,kind,layer", [
    (ob.class_logit(), "class_logit()", "class", None),
    (ob.class_logit(3), "class_logit(3)", None, None),
    (ob.class_log_prob(temperature=3.0), "class_log_prob(temperature=3)", "class", None),
    (ob.class_log_prob_up_to(0.95), "class_log_prob_up_to(0.95)", "class", None),
    (ob.class_log_prob_up_to(0.5, c=2), "class_log_prob_up_to(0.5, c=2)", None, None),
    (ob.cross_entropy_to(), "cross_entropy_to()", "vector", None),
    (ob.output_l2(space="logits"), "output_l2(space='logits')", "vector", None),
    (ob.output_error(), "output_error()", "value", None),
    (ob.unit("hidden1"), "unit('hidden1')", "unit", "hidden1"),
    (ob.unit("hidden1", 7), "unit('hidden1', 7)", None, "hidden1"),
    (ob.total_variation(axes=(-3, -2)), "total_variation(axes=(-3, -2))", None, None),
    (ob.total_variation(axes=(-2, -1)), "total_variation()", None, None),
    (ob.euclidean_distance_to(np.zeros(3)), "euclidean_distance_to(...)", None, None),
])
def test_wrap_objective_derives_name_kind_and_layer(objective, name, kind, layer):
  assert (objective.name, objective.target_kind, objective.layer) == (name, kind, layer)


def test_a_fixed_target_ignores_the_lane_target_and_a_free_one_reads_it():
  ctx = Context(jnp.zeros(3), jnp.array([1.0, 2.0, 7.0]), {"h": jnp.array([4.0, 9.0])}, 1)
  assert float(ob.class_logit()(ctx)) == 2.0 and float(ob.class_logit(2)(ctx)) == 7.0
  assert float(ob.unit("h")(ctx)) == 9.0 and float(ob.unit("h", 0)(ctx)) == 4.0


def test_a_new_objective_is_one_decorated_factory():
  @ob.wrap_objective("class", target="c")
  def margin(c=None, over: float = 0.0):
    """The target logit minus the largest other logit."""
    return lambda ctx, c: ctx.outputs[c] - jnp.max(ctx.outputs.at[c].set(-jnp.inf)) - over

  objective = margin(over=0.5)
  assert objective.name == "margin(over=0.5)" and objective.target_kind == "class"
  assert margin.__doc__.startswith("The target logit")
  ctx = Context(jnp.zeros(2), jnp.array([1.0, 4.0, 2.5]), {}, 1)
  assert float(objective(ctx)) == pytest.approx(4.0 - 2.5 - 0.5)


@pytest.mark.parametrize("make,message", [
    (lambda: ob.class_log_prob_up_to(1.0), r"p must be in \(0, 1\)"),
    (lambda: ob.output_l1(space="softmax"), "space must be 'probs' or 'logits'"),
])
def test_bad_arguments_are_named(make, message):
  with pytest.raises(JinvertError, match=message):
    make()


def test_distances_say_what_they_compute():
  x, reference = jnp.array([[3.0, 0.0], [0.0, 0.0]]), jnp.zeros((2, 2))
  ctx = Context(x, jnp.zeros(2), {}, 0)
  assert float(ob.euclidean_distance_to(reference)(ctx)) == pytest.approx(3.0)
  assert float(ob.mean_squared_distance_to(reference)(ctx)) == pytest.approx(9.0 / 4)


# Objectives of convolutional layers ------------------------------------------------------------

def conv_model(key, channels=4, dtype=jnp.float32, channels_first=False):
  """A random 3x3 convolution of a (6, 6) image with `channels` filters, then tanh: outputs are
  the channels' means; the feature map "conv" is (6, 6, C), or (C, 6, 6) `channels_first`."""
  params = {"w": jax.random.normal(key, (3, 3, 1, channels), dtype)}

  def apply_fn(params, x):
    maps = jnp.tanh(jax.lax.conv_general_dilated(x[..., None], params["w"], (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")))
    shown = jnp.moveaxis(maps, -1, 1) if channels_first else maps
    return maps.mean((1, 2)), {"conv": shown, "dense": maps.reshape(len(x), -1)}
  return apply_fn, params


def contexts(apply_fn, params, xs, target):
  """The Context of each input of a batch, as the engine builds them (one input each)."""
  out, acts = apply_fn(params, xs)
  return [Context(x, o, {k: v[i] for k, v in acts.items()}, jnp.asarray(target))
          for i, (x, o) in enumerate(zip(xs, out))]


LAYER_OBJECTIVES = {
    "channel": (lambda axis: ob.channel("conv", axis=axis), 2),
    "channel_fixed": (lambda axis: ob.channel("conv", 3, axis=axis), 0),
    "neuron_centre": (lambda axis: ob.neuron("conv", axis=axis), 1),
    "neuron_corner": (lambda axis: ob.neuron("conv", y=0, x=5, axis=axis), 2),
    "direction": (lambda axis: ob.direction("conv", [0.5, -1.0, 2.0, 0.25], axis=axis), 0),
}


@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("name", sorted(LAYER_OBJECTIVES))
def test_layer_objective_gradient_matches_finite_differences(name, channels_first, x64):
  make, target = LAYER_OBJECTIVES[name]
  objective = make(0 if channels_first else -1)
  apply_fn, params = conv_model(jax.random.key(0), dtype=jnp.float64,
                                channels_first=channels_first)

  def f(x):
    return objective(contexts(apply_fn, params, x[None], target)[0])

  finite_difference_check(f, jax.random.uniform(jax.random.key(1), (6, 6), jnp.float64),
                          jax.random.key(10))


@pytest.mark.parametrize("channels_first", [False, True])
def test_layer_objectives_read_what_they_say(channels_first):
  apply_fn, params = conv_model(jax.random.key(0), channels_first=channels_first)
  axis = 0 if channels_first else -1
  x = jax.random.uniform(jax.random.key(1), (1, 6, 6))
  ctx = contexts(apply_fn, params, x, 2)[0]
  maps = jnp.moveaxis(ctx.activations["conv"], axis, -1)  # (6, 6, 4) either way
  assert float(ob.channel("conv", axis=axis)(ctx)) == pytest.approx(float(maps[..., 2].mean()))
  assert float(ob.neuron("conv", axis=axis)(ctx)) == pytest.approx(float(maps[3, 3, 2]))
  assert float(ob.neuron("conv", 1, y=0, x=5, axis=axis)(ctx)) == pytest.approx(
      float(maps[0, 5, 1]))
  one_hot = ob.direction("conv", [0.0, 0.0, 1.0, 0.0], axis=axis)(ctx)
  assert float(one_hot) == pytest.approx(float(maps[..., 2].mean()), rel=1e-6)


def test_channel_on_a_vmapped_batch_equals_the_per_image_loop():
  apply_fn, params = conv_model(jax.random.key(0))
  xs = jax.random.uniform(jax.random.key(1), (8, 6, 6))
  targets = jnp.array([0, 1, 2, 3, 3, 2, 1, 0])
  objective = ob.channel("conv")
  single = lambda x, t: objective(contexts(apply_fn, params, x[None], t)[0])
  batched = jax.vmap(single)(xs, targets)
  loop = jnp.stack([single(x, t) for x, t in zip(xs, targets)])
  np.testing.assert_allclose(batched, loop, rtol=1e-6)
  maps = apply_fn(params, xs)[1]["conv"]
  np.testing.assert_allclose(loop, maps[jnp.arange(8), ..., targets].mean((1, 2)), rtol=1e-6)


def test_layer_objectives_refuse_a_dense_layer_and_a_wrong_direction():
  apply_fn, params = conv_model(jax.random.key(0))
  ctx = contexts(apply_fn, params, jnp.zeros((1, 6, 6)), 0)[0]
  with pytest.raises(JinvertError, match=r"layer 'dense' has shape \(144,\) .* needs a feature"):
    ob.channel("dense")(ctx)
  with pytest.raises(JinvertError, match="direction has 3 values; layer 'conv' has 4 channels"):
    ob.direction("conv", [1.0, 0.0, 0.0])(ctx)


# Objectives that compare a target's restarts run under a vmap named RESTARTS, as in the engine.

def over_restarts(objective, apply_fn, params):
  """Each restart's objective value, computed inside a vmap over restarts named RESTARTS."""
  def value(x):
    out, acts = apply_fn(params, x[None])
    return objective(Context(x, out[0], {k: v[0] for k, v in acts.items()}, jnp.asarray(0)))
  return value


COUPLED = {
    "diversity": lambda: ob.diversity("conv"),
    "diversity_dense": lambda: ob.diversity("dense"),
    "alignment": lambda: ob.alignment("conv"),
    "interpolate": lambda: ob.interpolate(ob.channel("conv", 0), ob.channel("conv", 3)),
    "channel_and_diversity": lambda: ob.channel("conv", 1) - 0.5 * ob.diversity("conv"),
}


@pytest.mark.parametrize("name", sorted(COUPLED))
def test_coupled_objective_gradients_match_finite_differences(name, x64):
  """The sum over restarts has the gradient finite differences give; and each restart's gradient
  taken inside the vmap (as the engine takes it) is that of the sum: restarts move jointly."""
  objective = COUPLED[name]()
  assert objective.couples_restarts
  apply_fn, params = conv_model(jax.random.key(0), dtype=jnp.float64)
  value = over_restarts(objective, apply_fn, params)
  total = lambda xs: jnp.sum(jax.vmap(value, axis_name=ob.RESTARTS)(xs))
  xs = jax.random.uniform(jax.random.key(1), (5, 6, 6), jnp.float64)
  finite_difference_check(total, xs, jax.random.key(10))
  per_lane = jax.vmap(jax.grad(value), axis_name=ob.RESTARTS)(xs)
  np.testing.assert_allclose(per_lane, jax.grad(total)(xs), rtol=1e-10, atol=1e-12)


def test_diversity_is_minus_the_mean_cosine_similarity_of_gram_matrices():
  apply_fn, params = conv_model(jax.random.key(0))
  xs = jax.random.uniform(jax.random.key(1), (4, 6, 6))
  values = jax.vmap(over_restarts(ob.diversity("conv"), apply_fn, params),
                    axis_name=ob.RESTARTS)(xs)
  maps = apply_fn(params, xs)[1]["conv"].reshape(4, 36, 4)
  grams = np.einsum("rpi,rpj->rij", maps, maps).reshape(4, -1)
  unit = grams / np.linalg.norm(grams, axis=1, keepdims=True)
  cosine = unit @ unit.T
  want = [-(cosine[i].sum() - cosine[i, i]) / 3 for i in range(4)]
  np.testing.assert_allclose(values, want, rtol=1e-5)
  same = jax.vmap(over_restarts(ob.diversity("conv"), apply_fn, params),
                  axis_name=ob.RESTARTS)(jnp.stack([xs[0]] * 3))
  np.testing.assert_allclose(same, -1.0, rtol=1e-6)  # identical restarts: no diversity


def test_interpolate_moves_from_one_objective_to_the_other_across_restarts():
  apply_fn, params = conv_model(jax.random.key(0))
  xs = jax.random.uniform(jax.random.key(1), (5, 6, 6))
  a, b = ob.channel("conv", 0), ob.channel("conv", 3)
  values = jax.vmap(over_restarts(ob.interpolate(a, b), apply_fn, params),
                    axis_name=ob.RESTARTS)(xs)
  va, vb = (jax.vmap(over_restarts(o, apply_fn, params))(xs) for o in (a, b))
  t = jnp.arange(5) / 4
  np.testing.assert_allclose(values, (1 - t) * va + t * vb, rtol=1e-5)


@pytest.mark.parametrize("objective,name,kind,layer,axis,couples", [
    (ob.channel("block1"), "channel('block1')", "channel", "block1", -1, False),
    (ob.channel("block1", 3, axis=0), "channel('block1', 3, axis=0)", None, "block1", 0, False),
    (ob.neuron("b", y=2), "neuron('b', y=2)", "channel", "b", -1, False),
    (ob.diversity("b"), "diversity('b')", None, "b", -1, True),
    # a targeted term's layer is the one whose targets are checked
    (ob.channel("a") - ob.diversity("b"), "channel('a') - diversity('b')", "channel", "a", -1,
     True),
    (ob.diversity("b") + ob.channel("a", axis=0), "diversity('b') + channel('a', axis=0)",
     "channel", "a", 0, True),
    (ob.interpolate(ob.channel("a", 0), ob.channel("a", 1)),
     "interpolate(channel('a', 0), channel('a', 1))", None, "a", -1, True),
])
def test_layer_objectives_carry_kind_layer_axis_and_coupling(objective, name, kind, layer, axis,
                                                              couples):
  assert (objective.name, objective.target_kind, objective.layer, objective.axis,
          objective.couples_restarts) == (name, kind, layer, axis, couples)


def test_terms_of_two_targeted_layers_do_not_combine():
  with pytest.raises(JinvertError, match="layer"):
    ob.channel("a") + ob.channel("b")


# The BatchNorm prior: statistics over every lane of the call -----------------------------------

def bn_layers(channels_first=False):
  rng = np.random.default_rng(0)
  return (ob.BatchNormLayer("conv", rng.normal(size=4), rng.uniform(0.5, 2, 4),
                            0 if channels_first else -1),)


def over_lanes(objective, apply_fn, params):
  """Each lane's value in a (targets, restarts) grid, both axes named as in the engine."""
  value = over_restarts(objective, apply_fn, params)
  return jax.vmap(jax.vmap(value, axis_name=ob.RESTARTS), axis_name=ob.TARGETS)


@pytest.mark.parametrize("channels_first", [False, True])
def test_batchnorm_prior_is_deepinversions_over_the_whole_call(channels_first):
  apply_fn, params = conv_model(jax.random.key(0), channels_first=channels_first)
  layers = bn_layers(channels_first)
  xs = jax.random.uniform(jax.random.key(1), (3, 2, 6, 6))
  values = over_lanes(ob.batchnorm_statistics(layers, first_multiplier=3.0), apply_fn, params)(xs)
  maps = apply_fn(params, xs.reshape(6, 6, 6))[1]["conv"]
  flat = np.moveaxis(np.asarray(maps), 1 if channels_first else -1, -1).reshape(-1, 4)
  mu, var = flat.mean(0), flat.var(0)  # over the batch (all 6 lanes) and the positions
  want = -3.0 * (np.linalg.norm(mu - layers[0].mean) + np.linalg.norm(var - layers[0].var))
  np.testing.assert_allclose(values, np.full((3, 2), want), rtol=1e-5)


def test_batchnorm_prior_gradient_matches_finite_differences(x64):
  apply_fn, params = conv_model(jax.random.key(0), dtype=jnp.float64)
  objective = ob.channel("conv", 1) + 0.5 * ob.batchnorm_statistics(bn_layers())
  assert objective.couples_restarts
  total = lambda xs: jnp.sum(over_lanes(objective, apply_fn, params)(xs))
  xs = jax.random.uniform(jax.random.key(1), (2, 3, 6, 6), jnp.float64)
  finite_difference_check(total, xs, jax.random.key(10))


def test_batchnorm_prior_needs_batchnorm_layers():
  with pytest.raises(JinvertError, match="the model has no BatchNorm layers .* folds them"):
    ob.batchnorm_statistics(())


def test_squareness_is_the_ink_box_short_side_over_its_long_side():
  """A 20 x 10 block reads 1/2 either way up; above a threshold of 0.4, (1/2 - 0.4) / 0.6; a
  square block reads 1; blank columns count almost nothing."""
  tall = jnp.zeros((28, 28)).at[4:24, 9:19].set(1.0)
  read = lambda objective, x: float(objective(Context(x, jnp.zeros(2), {}, 0)))
  assert read(ob.squareness(), tall) == pytest.approx(0.5, abs=0.005)
  assert read(ob.squareness(), tall.T) == pytest.approx(read(ob.squareness(), tall))
  assert read(ob.squareness(threshold=0.4), tall) == pytest.approx(0.1 / 0.6, abs=0.01)
  assert read(ob.squareness(), jnp.zeros((28, 28)).at[4:24, 4:24].set(1.0)) == pytest.approx(1.0)
  channels_last = tall[..., None].repeat(3, -1)
  assert (read(ob.squareness(axes=(-3, -2)), channels_last)
          == pytest.approx(read(ob.squareness(), tall)))
  with pytest.raises(JinvertError, match="threshold must be in"):
    ob.squareness(threshold=1.0)
