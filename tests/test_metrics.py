"""Metrics: each matches its definition computed the slow way."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import metrics

RNG = np.random.default_rng(0)
IMAGES = RNG.random((3, 4, 6, 6)).astype(np.float32)  # 3 targets x 4 restarts


def test_target_probability_is_the_softmax_at_the_target():
  outputs = RNG.normal(size=(3, 4, 5)).astype(np.float32)
  targets = np.array([4, 0, 2])
  want = np.exp(outputs) / np.exp(outputs).sum(-1, keepdims=True)
  np.testing.assert_allclose(metrics.target_probability(outputs, targets),
                             want[np.arange(3), :, targets], rtol=1e-5)


def test_diversity_is_the_mean_pairwise_distance():
  want = [np.mean([np.linalg.norm(IMAGES[t, i] - IMAGES[t, j])
                   for i, j in itertools.permutations(range(4), 2)]) for t in range(3)]
  np.testing.assert_allclose(metrics.diversity(IMAGES), want, rtol=1e-4)
  np.testing.assert_array_equal(metrics.diversity(IMAGES[:, :1]), np.zeros(3))


def test_nearest_train_distance_is_the_brute_force_minimum():
  train = RNG.random((50, 6, 6)).astype(np.float32)
  want = np.array([[min(np.linalg.norm(image - t) for t in train) for image in row]
                   for row in IMAGES])
  np.testing.assert_allclose(metrics.nearest_train_distance(IMAGES, train, chunk=7), want,
                             rtol=1e-4)


def test_total_variation_sums_neighbour_differences():
  image = np.array([[0.0, 1.0], [1.0, 1.0]], np.float32)[None, None]
  assert float(metrics.total_variation(image)[0, 0]) == 2.0


def test_in_batches_is_one_call_whatever_the_batches():
  # a batch size that leaves a short last batch, and one larger than the inputs; small whole
  # numbers, whose products and sums are exact in float32 in any order a kernel takes
  fn = lambda params, x: x.reshape(len(x), -1) @ params
  params = RNG.integers(-4, 5, size=(6, 3)).astype(np.float32)
  inputs = RNG.integers(-4, 5, size=(7, 2, 3)).astype(np.float32)
  for batch_size in (3, 100):
    np.testing.assert_array_equal(metrics.in_batches(fn, params, inputs, batch_size),
                                  fn(params, inputs))


def test_agreement_counts_what_a_judge_assigns_to_the_target():
  # a judge that reads the class from the image's mean brightness, in tenths
  judge = lambda params, x: jax.nn.one_hot(jnp.floor(10 * x.mean((1, 2))).astype(jnp.int32), 10)
  images = np.stack([np.full((4, 2, 2), 0.35), np.full((4, 2, 2), 0.75)]).astype(np.float32)
  images[1, 0] = 0.05  # one restart of target 7 reads as a 0
  np.testing.assert_allclose(metrics.agreement(judge, None, images, np.array([3, 7]),
                                               batch_size=3), [1.0, 0.75])


def test_summarize_reports_every_metric_per_target_and_overall():
  outputs = RNG.normal(size=(3, 4, 10)).astype(np.float32)
  summary = metrics.summarize(IMAGES, outputs, np.array([1, 2, 3]),
                              train_images=RNG.random((8, 6, 6)).astype(np.float32))
  assert summary["targets"] == [1, 2, 3]
  for name in ("target_prob", "diversity", "total_variation", "nearest_train_distance"):
    assert len(summary[name]["per_target"]) == 3
    assert summary[name]["min"] <= summary[name]["mean"]


def test_hue_of_pure_tints_and_mean_hue_weights_by_chroma():
  import colorsys
  from jinvert import data
  hues = np.array([0.0, 36.0, 72.0, 150.0, 288.0, 324.0])
  rgb = data.hue_rgb(hues)
  for h, colour in zip(hues, rgb):
    assert colorsys.rgb_to_hsv(*colour)[0] * 360 == pytest.approx(h, abs=1e-3)
  images = data.colored(np.linspace(0, 1, 6 * 28 * 28).reshape(6, 28, 28), hues)
  np.testing.assert_allclose(metrics.mean_hue(images), hues, atol=1e-3)
  # half red, half a dimmer green: the mean leans to red by the chroma weights (1 and 0.5)
  mixed = np.zeros((2, 2, 3))
  mixed[0, :] = [1, 0, 0]
  mixed[1, :] = [0, 0.5, 0]
  want = np.rad2deg(np.arctan2(0.5 * np.sin(np.deg2rad(120)), 1 + 0.5 * np.cos(np.deg2rad(120))))
  assert float(metrics.mean_hue(mixed)) == pytest.approx(want)
  assert np.isnan(metrics.mean_hue(np.full((2, 2, 3), 0.4)))  # grey has no hue
  # circular: 350 and 10 average to 0, not 180
  halves = data.colored(np.ones((2, 2, 2)), np.array([350.0, 10.0]))
  assert float(metrics.hue_difference(metrics.mean_hue(np.concatenate(halves)), 0.0)) < 1e-3


def test_hue_difference_is_the_angle_around_the_circle():
  np.testing.assert_allclose(metrics.hue_difference([350, 10, 90, 0], [10, 350, 270, 180]),
                             [20, 20, 180, 180])
