"""Metrics: each matches its definition computed the slow way."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

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
