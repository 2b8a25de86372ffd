"""Seed 002's learned inverse: r2rt's "Inverting a Neural Net", matrices that map back to inputs.

Matrices w2_inv (100x100) and w1_inv (100x784) are trained after the classifier by Adagrad 0.01
on the L1 distance between a sample and its inverse projection, plus the post's
`excess_l1_inv` term, using only samples the model classifies with confidence > 0.8; the
post's `generate` optimises a hidden layer for a class and projects it back.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jinvert import optimizers
from jinvert.exact_inverse import safe_logit


def squash(p, axis: int = -1):
  """The post's squash: rescale each row to [0, 1], then shrink to [0.005, 0.995]."""
  shifted = p - jnp.min(p, axis=axis, keepdims=True)
  normed = shifted / jnp.maximum(jnp.max(shifted, axis=axis, keepdims=True), 1e-12)
  return (normed - 0.5) * 0.99 + 0.5


class LearnedInverse(NamedTuple):
  w2_inv: jax.Array  # (100, 100)
  w1_inv: jax.Array  # (100, 784)


def init_learned_inverse(key, widths=(100, 100), n_inputs: int = 784) -> LearnedInverse:
  """Truncated normal stddev 0.1, as the post's weight_variable."""
  k1, k2 = jax.random.split(key)
  init = jax.nn.initializers.truncated_normal(stddev=0.1, lower=-2.0, upper=2.0)
  return LearnedInverse(init(k1, (widths[1], widths[0])), init(k2, (widths[0], n_inputs)))


def project_back(inverse: LearnedInverse, params, l2_logit):
  """The post's inverse projection to inputs, from logit(l2) (N, 100) of the last hidden layer.

  Training passes safe_logit(l2) (the post's logit(l2), made finite); generated hidden layers
  and the feature projections pass their pre-sigmoid values directly, as the post does.

  Returns (x_inv (N, 784), l1_inv (N, 100) before squashing).
  """
  p = params["params"]
  l1_inv = (l2_logit - p["dense2"]["bias"][None]) @ inverse.w2_inv
  x_inv = (safe_logit(squash(l1_inv)) - p["dense1"]["bias"][None]) @ inverse.w1_inv
  return x_inv, l1_inv


def inverse_loss(inverse: LearnedInverse, params, x, l2_logit, weights):
  """sum |x - x_inv| over the confident samples, plus the post's excess_l1_inv term.

  `weights` is 1 for samples used (confidence > 0.8) and 0 otherwise, so batches keep one shape.
  """
  x_inv, l1_inv = project_back(inverse, params, l2_logit)
  similarity = jnp.sum(weights[:, None] * jnp.abs(x.reshape(len(x), -1) - x_inv))
  # tf.nn.l2_loss(t) = sum(t^2) / 2; the post takes min and max over the used batch
  big = jnp.finfo(l1_inv.dtype).max
  low = jnp.min(jnp.where(weights[:, None] > 0, l1_inv, big))
  high = jnp.max(jnp.where(weights[:, None] > 0, l1_inv - 1, -big))
  used = jnp.sum(weights) > 0
  excess = jnp.where(used, 0.5 * low ** 2 + 0.5 * high ** 2, 0.0)
  return similarity + excess


def train_learned_inverse(apply_fn, params, images, key, steps: int = 1000,
                          batch_size: int = 1000, learning_rate: float = 0.01,
                          confidence: float = 0.8, layer: str = "hidden2"):
  """Trains the post's inverse matrices with the classifier frozen, in one scanned call.

  Args:
    apply_fn: `apply_fn(params, x) -> (logits, activations)` of the r2rt-mlp.
    params: its trained parameters.
    images: training images (N, 28, 28).
    key: `jax.random` key for the inverse's init and the batches.
    steps, batch_size, learning_rate, confidence: the post's 1000, 1000, Adagrad 0.01, 0.8.
    layer: the last hidden layer's activation name.

  Returns:
    (LearnedInverse, per-step losses (steps,), per-step fraction of confident samples (steps,)).
  """
  from jinvert.train import epoch_indices

  init_key, batch_key = jax.random.split(key)
  inverse = init_learned_inverse(init_key)
  optimizer = optax.adagrad(learning_rate)
  images = jnp.asarray(images)
  indices = epoch_indices(batch_key, len(images), batch_size, steps)

  def step(carry, idx):
    inverse, opt_state = carry
    x = images[idx]
    logits, acts = apply_fn(params, x)
    weights = (jnp.max(jax.nn.softmax(logits), axis=-1) > confidence).astype(x.dtype)
    loss, grads = jax.value_and_grad(inverse_loss)(inverse, params, x, safe_logit(acts[layer]),
                                                   weights)
    inverse, opt_state = optimizers.update(optimizer, grads, opt_state, inverse)
    return (inverse, opt_state), (loss, jnp.mean(weights))

  run = jax.jit(lambda inverse: jax.lax.scan(step, (inverse, optimizer.init(inverse)), indices))
  (inverse, _), (losses, used) = run(inverse)
  return inverse, losses, used


def generate_hidden(params, targets, steps: int = 1000, learning_rate: float = 1.0, key=None):
  """The post's `generate`: optimise the last hidden layer's pre-sigmoid values z (from zeros,
  or from N(0, I) when a key is given, for several different images per target) by gradient
  descent 1.0 on sum |one_hot - softmax(sigmoid(z) W + b)|, 1000 steps.

  Returns:
    (z, the pre-sigmoid hidden values (T, 100), for `project_back`; the model's softmax
    outputs for them (T, 10)).
  """
  out = params["params"]["out"]
  one_hot = jax.nn.one_hot(jnp.asarray(targets), out["kernel"].shape[1])

  def probabilities(z):  # the model's output for the pre-sigmoid hidden values z
    return jax.nn.softmax(jax.nn.sigmoid(z) @ out["kernel"] + out["bias"][None])

  def loss(z):
    return jnp.sum(jnp.abs(one_hot - probabilities(z)))

  optimizer = optax.sgd(learning_rate)

  def step(carry, _):
    z, state = carry
    return optimizers.update(optimizer, jax.grad(loss)(z), state, z), None

  shape = (len(one_hot), out["kernel"].shape[0])
  z = jnp.zeros(shape) if key is None else jax.random.normal(key, shape)
  (z, _), _ = jax.jit(lambda z: jax.lax.scan(step, (z, optimizer.init(z)), None, length=steps))(z)
  return z, probabilities(z)
