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


@pytest.mark.parametrize("objective,name,kind,layer", [
    (ob.class_logit(), "class_logit()", "class", None),
    (ob.class_logit(3), "class_logit(3)", None, None),
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
