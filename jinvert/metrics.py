"""Quality metrics of inverted images, shaped (T, R, H, W) for T targets and R restarts.

>>> import jax.numpy as jnp
>>> images = jnp.stack([jnp.zeros((2, 3, 3)), jnp.ones((2, 3, 3))])  # 2 targets x 2 restarts
>>> diversity(images).tolist()                    # identical restarts: no diversity
[0.0, 0.0]
>>> outputs = jnp.array([[[3.0, 0.0], [0.0, 0.0]], [[0.0, 3.0], [0.0, 0.0]]])
>>> [[round(p, 3) for p in row] for row in target_probability(outputs, jnp.array([0, 1])).tolist()]
[[0.953, 0.5], [0.953, 0.5]]
"""

import jax
import jax.numpy as jnp
import numpy as np


def target_probability(outputs, targets):
  """softmax(outputs)[target] for every image; outputs (T, R, C), targets (T,) -> (T, R)."""
  probs = jax.nn.softmax(jnp.asarray(outputs), axis=-1)
  return jnp.take_along_axis(probs, jnp.asarray(targets)[:, None, None], axis=-1)[..., 0]


def agreement(judge_fn, judge_params, images, targets, batch_size: int = 4096):
  """Fraction of each target's images that an independent model also assigns to the target.

  Args:
    judge_fn: batched `apply_fn(params, x) -> logits` of the second model.
    judge_params: its parameters.
    images: (T, R, H, W).
    targets: (T,) class indices.

  Returns:
    (T,) fractions in [0, 1].
  """
  images = jnp.asarray(images)
  labels = predicted_classes(judge_fn, judge_params, images.reshape((-1,) + images.shape[2:]),
                             batch_size)
  return jnp.mean(labels.reshape(images.shape[:2]) == jnp.asarray(targets)[:, None], axis=1)


def in_batches(fn, params, inputs, batch_size: int = 4096):
  """fn(params, inputs) for more inputs (N, ...) than one call should hold: `batch_size` at a
  time, compiled, the results joined along the first axis."""
  compiled = jax.jit(fn)
  return jnp.concatenate([compiled(params, jnp.asarray(inputs[i:i + batch_size]))
                          for i in range(0, len(inputs), batch_size)])


def predicted_classes(judge_fn, judge_params, images, batch_size: int = 4096):
  """The class a model assigns to each of `images` (N, ...) -> (N,), `batch_size` at a time."""
  return jnp.argmax(in_batches(judge_fn, judge_params, images, batch_size), -1)


def diversity(images):
  """Mean pairwise L2 distance between the restarts of each target: (T, R, ...) -> (T,)."""
  flat = jnp.asarray(images).reshape(images.shape[:2] + (-1,))
  r = flat.shape[1]
  if r < 2:
    return jnp.zeros(flat.shape[0])
  d = jnp.sqrt(jnp.maximum(_squared_distances(flat, flat), 0.0))
  # an image's distance to itself is 0; its expansion |a|^2 + |a|^2 - 2 a.a is rounding
  d = jnp.where(jnp.eye(r, dtype=bool)[None], 0.0, d)
  return jnp.sum(d, axis=(1, 2)) / (r * (r - 1))


@jax.jit
def _squared_distances(a, b):
  """||a_i - b_j||^2 for batches of vectors, (..., N, D) x (..., M, D) -> (..., N, M)."""
  return (jnp.sum(a ** 2, -1)[..., :, None] + jnp.sum(b ** 2, -1)[..., None, :]
          - 2 * jnp.einsum("...nd,...md->...nm", a, b, precision="highest"))


def nearest_train_distance(images, train_images, chunk: int = 10_000):
  """L2 distance from each image to its nearest training image: (T, R, H, W) -> (T, R)."""
  images = jnp.asarray(images)
  flat = images.reshape(-1, int(np.prod(images.shape[2:])))
  train = jnp.asarray(train_images).reshape(len(train_images), -1)
  best = jnp.full(len(flat), jnp.inf)
  for i in range(0, len(train), chunk):
    best = jnp.minimum(best, jnp.min(_squared_distances(flat, train[i:i + chunk]), axis=1))
  return jnp.sqrt(jnp.maximum(best, 0.0)).reshape(images.shape[:2])


def total_variation(images):
  """Summed absolute difference between neighbouring pixels of each image: -> (T, R)."""
  images = jnp.asarray(images)
  return (jnp.sum(jnp.abs(jnp.diff(images, axis=-1)), axis=(-2, -1))
          + jnp.sum(jnp.abs(jnp.diff(images, axis=-2)), axis=(-2, -1)))


def hue(images):
  """HSV hue in degrees [0, 360) and chroma (max - min, the weight of that hue) of every pixel
  of colour images (..., 3) in [0, 1], channels last: -> ((...), (...))."""
  rgb = np.asarray(images, np.float64)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  high, chroma = rgb.max(-1), np.ptp(rgb, -1)
  safe = np.where(chroma > 0, chroma, 1.0)
  sector = np.where(high == r, ((g - b) / safe) % 6,
                    np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
  return np.where(chroma > 0, 60.0 * sector, 0.0), chroma


def mean_hue(images) -> np.ndarray:
  """The circular mean hue in degrees [0, 360) of each colour image (..., H, W, 3), channels
  last, every pixel weighted by its chroma (grey pixels have no hue): -> (...). NaN for an
  image without colour."""
  degrees, chroma = hue(images)
  angle = np.deg2rad(degrees)
  x, y = (np.sum(chroma * f(angle), axis=(-2, -1)) for f in (np.cos, np.sin))
  return np.where(np.hypot(x, y) > 0, np.rad2deg(np.arctan2(y, x)) % 360.0, np.nan)


def hue_difference(a, b) -> np.ndarray:
  """The angle between two hues in degrees, [0, 180]."""
  return 180.0 - np.abs(180.0 - np.abs(np.asarray(a) - np.asarray(b)) % 360.0)


def summarize(images, outputs, targets, judge=None, train_images=None) -> dict:
  """Every metric, per target and averaged, as plain floats for JSON.

  Args:
    images: (T, R, H, W) inverted images.
    outputs: (T, R, C) the source model's outputs for them.
    targets: (T,) class indices.
    judge: optional `(apply_fn, params)` of an independent model, for cross-model agreement.
    train_images: optional (N, H, W), for the distance to the nearest training image.
  """
  prob = target_probability(outputs, targets)
  per_class = {"target_prob": jnp.mean(prob, axis=1), "diversity": diversity(images),
               "total_variation": jnp.mean(total_variation(images), axis=1)}
  if judge is not None:
    per_class["agreement"] = agreement(judge[0], judge[1], images, targets)
  if train_images is not None:
    per_class["nearest_train_distance"] = jnp.mean(nearest_train_distance(images, train_images), 1)
  summary = {"targets": [int(t) for t in np.asarray(targets)]}
  for name, values in per_class.items():
    values = np.asarray(values, np.float64)
    summary[name] = {"per_target": [round(float(v), 6) for v in values],
                     "mean": float(values.mean()), "min": float(values.min())}
  return summary
