"""Presets: the registry builds every entry for every input it accepts, refuses the rest by
name, and each recipe does what its docstring says."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinvert import models, objectives, presets
from jinvert.engine import invert
from jinvert.errors import JinvertError
from jinvert.input_space import InputSpace
from conftest import tiny_model

SPACES = {"gray": InputSpace((28, 28)), "chw": InputSpace((1, 28, 28)),
          "hwc": InputSpace((28, 28, 1)), "colour": InputSpace((3, 32, 32)),
          "colour_hwc": InputSpace((28, 28, 3)),
          "features": InputSpace((7,))}


def _prior():
  spec = models.get_model("vae")
  return spec.module(), spec.init_params(jax.random.key(0))


@pytest.mark.parametrize("name", sorted(presets.REGISTRY))
@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_preset_builds_for_what_it_accepts_and_names_what_it_refuses(name, space):
  spec = presets.get(name)
  accepts = {"raw": set(SPACES), "data-free": set(SPACES) - {"features"},
             "natural": {"gray", "chw", "hwc"}, "readable": {"gray", "chw", "hwc"},
             "strokes": {"gray", "chw", "hwc"}, "capsules": {"gray", "chw", "hwc"}}[name]
  if space not in accepts:
    with pytest.raises(JinvertError, match=f"the {name} preset"):
      presets.build(name, SPACES[space], _prior() if spec.uses_data else None)
    return
  preset = presets.build(name, SPACES[space], _prior() if spec.uses_data else None)
  assert preset.steps == spec.steps and preset.draws == spec.draws
  if name in ("strokes", "capsules"):  # framed by the box of its format, when it has one
    framed = presets.build(name, dataclasses.replace(SPACES[space], box=28.0))
    assert (preset.parameterization.name, framed.parameterization.name) == {
        "strokes": ("strokes(4x6)", "strokes(4x6, box=28)"),
        "capsules": ("capsules(3x4, mirrored)", "capsules(3x4, mirrored, box=28)")}[name]
  assert presets.build(name, SPACES[space], _prior() if spec.uses_data else None,
                       draws=3).draws == 3
  latent = preset.parameterization.init(jax.random.key(0), SPACES[space].shape)
  x = preset.parameterization.to_input(latent)
  assert x.shape == SPACES[space].shape
  if preset.transform is not None:
    assert preset.transform(jax.random.key(1), x).shape == x.shape


def test_the_natural_preset_needs_its_prior_and_others_do_not():
  with pytest.raises(JinvertError, match="needs its prior"):
    presets.build("natural", SPACES["gray"])
  assert presets.get("natural").uses_data and not presets.get("data-free").uses_data
  with pytest.raises(JinvertError, match="unknown preset 'nice'; choose one of: raw"):
    presets.get("nice")


@pytest.mark.parametrize("space,dataset,want", [
    ("gray", "mnist", "natural"), ("hwc", "mnist", "natural"), ("gray", None, "data-free"),
    ("colour", "mnist", "data-free"), ("features", None, "raw"),
])
def test_the_default_preset(space, dataset, want):
  assert presets.default_name(SPACES[space], dataset) == want


def test_raw_is_seed_003s_normalised_gradient_ascent_clipped_to_the_box():
  apply_fn, params = tiny_model(jax.random.key(0), n_in=4)
  preset = presets.raw(steps=6, learning_rate=0.3)
  result = invert(apply_fn, params, targets=jnp.arange(2), key=jax.random.key(2),
                  input_shape=(2, 2), restarts=1, **preset.arguments())
  x = jax.random.uniform(jax.random.split(jax.random.split(jax.random.key(2), 2)[0])[0], (2, 2))
  logit = lambda x: apply_fn(params, x[None])[0][0, 0]
  for _ in range(6):
    g = jax.grad(logit)(x)
    x = jnp.clip(x + 0.3 * g / jnp.linalg.norm(g), 0.0, 1.0)
  np.testing.assert_allclose(result.inputs[0, 0], x, rtol=1e-5, atol=1e-6)


def test_data_free_reads_only_the_model_and_counterfactuals_stay_within_their_ball():
  preset = presets.data_free()
  assert preset.objective.name == "class_log_prob() - 0.3*total_variation() - 0.3*l1()"
  assert presets.data_free(axes=(-3, -2)).objective.name == \
      "class_log_prob() - 0.3*total_variation(axes=(-3, -2)) - 0.3*l1()"
  apply_fn, params = tiny_model(jax.random.key(0))
  start = np.full((5, 5), 0.5, np.float32)
  preset = presets.counterfactual(start, max_change=("linf", 0.05), steps=30)
  result = invert(apply_fn, params, targets=jnp.arange(4), key=jax.random.key(0),
                  input_shape=(5, 5), **preset.arguments())
  assert float(jnp.abs(result.inputs - start[None, None]).max()) <= 0.05 + 1e-6
  weighted = presets.counterfactual(start)
  assert weighted.objective.name == "class_log_prob_up_to(0.95) - 0.3*euclidean_distance_to(...)"


def test_a_new_preset_is_one_registry_entry(monkeypatch):
  entry = presets.PresetSpec(lambda space, prior, steps: presets.raw(steps)._replace(
      objective=objectives.class_log_prob(), optimizer=optax.adam(0.1)), 30, "Adam on pixels")
  monkeypatch.setitem(presets.REGISTRY, "adam-pixels", entry)
  assert presets.build("adam-pixels", SPACES["gray"]).steps == 30
  from jinvert.cli import build_parser
  args = build_parser().parse_args(["invert", "m.msgpack", "--preset", "adam-pixels",
                                    "--out", "x.npz"])
  assert args.preset == "adam-pixels"


@pytest.mark.parametrize("shape", [(3, 32, 32), (28, 28, 3)])
def test_data_free_draws_colour_images_as_lucid_does(shape):
  preset = presets.build("data-free", InputSpace(shape))
  assert preset.parameterization.name == "fourier(decay=1, decorrelated, mean=-2)"
  x = preset.parameterization.to_input(preset.parameterization.init(jax.random.key(0), shape))
  assert 0.08 < float(x.mean()) < 0.16  # dark, as the grey data-free images start
  # the standard chain moves the image (pads with black, jitters, scales, rotates) per key
  moved = [preset.transform(jax.random.key(i), x) for i in range(2)]
  assert not np.allclose(moved[0], moved[1]) and moved[0].shape == shape
  gray = presets.build("data-free", InputSpace((1, 28, 28)))
  assert gray.parameterization.name == "sigmoid(mean=-2)"


def test_capsules_pools_a_recipe_charged_for_squareness_and_picks_by_its_score():
  """Three draws of the target log-probability at temperature 3 and five with 2 x squareness
  above 0.6 taken off, the best kept by the same log-probability less 0.5 x squareness."""
  preset = presets.build("capsules", InputSpace((28, 28)))
  likelihood = "class_log_prob(temperature=3)"
  assert preset.objective.name == likelihood and preset.draws == 3
  assert [(o.name, n) for o, n in preset.pooled] == [
      (f"{likelihood} - 2*squareness(threshold=0.6)", 5)]
  assert preset.score.name == f"{likelihood} - 0.5*squareness()"
  assert presets.get("capsules").pooled_draws == 5 and presets.get("strokes").pooled_draws == 0
  one = presets.build("capsules", InputSpace((28, 28)), draws=1)  # --draws sets the first's
  assert one.draws == 1 and [(o.name, n) for o, n in one.pooled] == [
      (o.name, n) for o, n in preset.pooled]


def test_data_free_adds_the_batchnorm_prior_when_the_model_has_batchnorm():
  layers = (objectives.BatchNormLayer("block1_conv", np.zeros(16), np.ones(16)),
            objectives.BatchNormLayer("block2_conv", np.zeros(32), np.ones(32)))
  space = InputSpace((28, 28))
  with_bn = presets.build("data-free", space, batchnorm=layers)
  assert with_bn.objective.name == (
      "class_log_prob() - 0.3*total_variation() - 0.3*l1() + "
      f"{presets.BATCHNORM_WEIGHT:g}*batchnorm_statistics(2 layers, first "
      f"x{presets.BATCHNORM_FIRST_MULTIPLIER:g})")
  assert with_bn.objective.couples_restarts
  assert presets.build("data-free", space).objective.name == presets.data_free().objective.name
  assert presets.build("raw", space, batchnorm=layers).objective.name == "class_logit()"
  # readable's images read worse with it (RESULTS.md): only when asked for
  readable = presets.readable().objective.name
  assert presets.build("readable", space, batchnorm=layers).objective.name == readable
  assert "batchnorm_statistics" in presets.build("readable", space, batchnorm=layers,
                                                 batchnorm_weight=1.0).objective.name
  # a preset of two recipes adds it to both
  both = presets.build("capsules", space, batchnorm=layers, batchnorm_weight=1.0)
  assert all(o.name.endswith("1*batchnorm_statistics(2 layers, first x10)")
             for o in (both.objective, both.pooled[0][0]))


def test_soft_targets_replace_the_likelihood_of_the_presets_that_take_them():
  soft = objectives.cross_entropy_to(temperature=20.0)
  space = InputSpace((28, 28))
  assert presets.soft_target_presets() == ["data-free", "readable", "strokes", "capsules"]
  for name in presets.soft_target_presets():
    own, replaced = presets.build(name, space), presets.build(name, space, likelihood=-soft)
    likelihood = own.objective.name.split(" ")[0]  # capsules': at temperature 3
    assert likelihood in ("class_log_prob()", "class_log_prob(temperature=3)")
    expected = own.objective.name.replace(likelihood, (-soft).name)
    assert replaced.objective.name == expected
    assert replaced.parameterization.name == own.parameterization.name
    for (mine, n), (theirs, m) in zip(own.pooled, replaced.pooled, strict=True):
      assert theirs.name == mine.name.replace(likelihood, (-soft).name) and n == m
    if own.score is not None:
      assert replaced.score.name == own.score.name.replace(likelihood, (-soft).name)
  with pytest.raises(JinvertError, match="soft targets are for the data-free, readable, "
                                         "strokes and capsules presets"):
    presets.build("raw", space, likelihood=-soft)
