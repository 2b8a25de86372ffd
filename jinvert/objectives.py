"""Objectives: values the inversion engine maximises, which add, subtract and scale.

Each objective is a pure function of a `Context`: the input `x` (the clean image, before any
robustness transform), the model's `outputs` and hidden `activations` for the transformed
input, and this lane's `target`. Scores (`class_logit`, `unit`, ...) are to be maximised;
distances and priors (`cross_entropy`, `output_l2`, `l2`, `total_variation`, ...) are positive
and enter with a minus sign. An objective built without a fixed target (`class_logit()` rather
than `class_logit(8)`) reads the target of its lane, so one objective serves every target
under `vmap`; its `target_kind` says what a target is (`jinvert.target_kinds`).

>>> import jax.numpy as jnp
>>> from jinvert import objectives as ob
>>> objective = ob.class_logit() - 0.05 * ob.total_variation()
>>> objective.name, objective.target_kind
('class_logit() - 0.05*total_variation()', 'class')
>>> ctx = ob.Context(x=jnp.zeros((2, 2)), outputs=jnp.array([1.0, 3.0]), activations={}, target=1)
>>> float(objective(ctx))
3.0

A new objective is a factory of `fn(ctx)` (or `fn(ctx, target)`) under `wrap_objective`, which
derives its name from the call and its target kind from the arguments.

Objectives of a convolutional layer (`channel`, `neuron`, `direction`, `diversity`) read its
feature map for one input, (H, W, C) or (C, H, W): `axis` names the channels' axis, -1 for flax
models (the default), 0 for ONNX's NCHW (`Classifier.channel_axis`). Objectives that compare a
target's restarts (`diversity`, `alignment`, `interpolate`) gather over the engine's RESTARTS
axis, so they run inside the engine (or any vmap with that axis name).
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError

# The engine's named vmap axes (jinvert.engine): a target's restarts, and the targets.
RESTARTS, TARGETS = "restarts", "targets"


class Context(NamedTuple):
  """What an objective sees for one input."""
  x: jax.Array
  outputs: jax.Array
  activations: dict
  target: Any


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """A scalar function of a Context, to be maximised.

  Attributes:
    fn: `fn(ctx) -> scalar`.
    name: a readable formula, e.g. `class_logit() - 0.05*total_variation()`.
    target_kind: what the lane target is (`jinvert.target_kinds`), or None when the objective
      reads no target.
    layer: the hidden layer the objective reads, or None.
    axis: the channels' axis of that layer's feature map (for one input), or None.
    couples_restarts: it reads the other restarts of its target (gathers over RESTARTS), so
      a target's restarts must run in one call, never in chunks.
  """
  fn: Callable[[Context], jax.Array]
  name: str
  target_kind: str | None = None
  layer: str | None = None
  axis: int | None = None
  couples_restarts: bool = False

  def __call__(self, ctx: Context) -> jax.Array:
    return self.fn(ctx)

  def __add__(self, other):
    return _combine(self, other, jnp.add, "+")

  def __radd__(self, other):  # so that sum([...]) works
    return self if isinstance(other, (int, float)) and other == 0 else _combine(other, self, jnp.add, "+")

  def __sub__(self, other):
    return _combine(self, other, jnp.subtract, "-")

  def __neg__(self):
    return dataclasses.replace(self, fn=lambda ctx: -self.fn(ctx), name=f"-({self.name})")

  def __mul__(self, scale):
    if not isinstance(scale, (int, float)):
      return NotImplemented
    return dataclasses.replace(self, fn=lambda ctx: scale * self.fn(ctx), name=f"{scale:g}*{self.name}")

  __rmul__ = __mul__

  def __repr__(self):
    return f"Objective({self.name})"


def _merge(a, b, what):
  if a is not None and b is not None and a != b:
    raise JinvertError(f"objective mixes {what}s {a!r} and {b!r}; one objective reads one kind of target")
  return a if a is not None else b


def _combine(a, b, op, symbol):
  if not isinstance(a, Objective) or not isinstance(b, Objective):
    return NotImplemented
  return Objective(lambda ctx: op(a.fn(ctx), b.fn(ctx)), f"{a.name} {symbol} {b.name}",
                   *_merged(a, b))


def _merged(a, b) -> tuple:
  """(target kind, layer, axis, couples restarts) of an objective made of `a` and `b`. The
  layer that matters is the one whose targets are checked: a targeted term's layer wins over
  an untargeted one's (`channel("conv1") + diversity("conv2")` checks conv1's channels)."""
  couples = a.couples_restarts or b.couples_restarts
  if (a.target_kind is None) != (b.target_kind is None):
    a, b = (a, b) if a.target_kind is not None else (b, a)
    return a.target_kind, a.layer, a.axis, couples
  return (_merge(a.target_kind, b.target_kind, "target kind"), _merge(a.layer, b.layer, "layer"),
          _merge(a.axis, b.axis, "channel axis"), couples)


def _shown(value) -> str:
  """An argument as the objective's name shows it: numbers and names as written, arrays as
  `...` (the name is a formula, not a dump)."""
  if isinstance(value, float):
    return f"{value:g}"
  if value is None or isinstance(value, (bool, int, str)):
    return repr(value)
  if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
    return repr(value)
  return "..."


def _is_default(signature, name: str, value) -> bool:
  default = signature.parameters[name].default
  simple = (type(None), bool, int, float, str, tuple)
  return isinstance(value, simple) and isinstance(default, simple) and value == default


def wrap_objective(kind: str | None = None, target: str | None = None,
                   layer: str | None = None, axis: str | None = None,
                   couples_restarts: bool = False):
  """Makes a factory of objective functions a factory of named `Objective`s (Lucid's
  `wrap_objective`).

  The objective's name is the call that made it (`unit('hidden1', 3)`; a keyword argument
  given its default value is left out). With `kind`, the
  factory's parameter `target` fixes the target: given, the function sees that value; left
  None, it sees each lane's target and the objective's `target_kind` is `kind`. The function
  is then `fn(ctx, target)`, else `fn(ctx)`.

  Args:
    kind: the target kind the objective reads (`jinvert.target_kinds`), or None.
    target: the factory's parameter that fixes the target.
    layer: the factory's parameter naming the activation the objective reads.
    axis: the factory's parameter giving that activation's channel axis.
    couples_restarts: the objective gathers over the engine's RESTARTS axis.

  >>> @wrap_objective(kind="class", target="c")
  ... def twice_the_logit(c=None):
  ...   return lambda ctx, c: 2 * ctx.outputs[c]
  >>> twice_the_logit(), twice_the_logit(3).target_kind
  (Objective(twice_the_logit()), None)
  """
  def decorate(make):
    signature = inspect.signature(make)

    @functools.wraps(make)
    def factory(*args, **kwargs):
      bound = signature.bind(*args, **kwargs)
      bound.apply_defaults()
      given = bound.arguments
      fn = make(*args, **kwargs)
      shown = [_shown(a) for a in args] + [f"{k}={_shown(v)}" for k, v in kwargs.items()
                                           if not _is_default(signature, k, v)]
      name = f"{make.__name__}({', '.join(shown)})"
      reads = (given[layer] if layer else None, given[axis] if axis else None, couples_restarts)
      if kind is None:
        return Objective(fn, name, None, *reads)
      fixed = given.get(target)
      if fixed is None:
        return Objective(lambda ctx: fn(ctx, ctx.target), name, kind, *reads)
      return Objective(lambda ctx: fn(ctx, fixed), name, None, *reads)
    return factory
  return decorate


# Outputs --------------------------------------------------------------------------------------

@wrap_objective("class", target="c")
def class_logit(c: int | None = None):
  """The logit of class `c` (or of the lane's target class)."""
  return lambda ctx, c: ctx.outputs[c]


@wrap_objective("class", target="c")
def class_log_prob(c: int | None = None, temperature: float = 1.0):
  """log softmax(outputs / temperature)[c]: the class's log-probability. Above 1, a margin
  between the logits that keeps pulling once the probability is near 1."""
  return lambda ctx, c: jax.nn.log_softmax(ctx.outputs / temperature)[c]


@wrap_objective("class", target="c")
def class_log_prob_up_to(p: float, c: int | None = None):
  """min(log softmax(outputs)[c], log p): the log-probability, until it reaches p. Beside a
  distance penalty it finds the smallest change that makes the class probable (a
  counterfactual): once p is reached only the penalty pulls."""
  if not 0 < p < 1:
    raise JinvertError(f"class_log_prob_up_to: p must be in (0, 1), got {p}")
  return lambda ctx, c: jnp.minimum(jax.nn.log_softmax(ctx.outputs)[c], jnp.log(p))


@wrap_objective("class", target="c")
def cross_entropy(c: int | None = None):
  """Cross-entropy from the one-hot target `c` to softmax(outputs); a distance (use with minus)."""
  return lambda ctx, c: -jax.nn.log_softmax(ctx.outputs)[c]


@wrap_objective("vector", target="distribution")
def cross_entropy_to(distribution=None, temperature: float = 1.0):
  """Cross-entropy from a target distribution to softmax(outputs / temperature); a distance.
  ZSKD's soft targets are matched at temperature 20 (`jinvert.distill.soft_targets`)."""
  return lambda ctx, p: -jnp.sum(p * jax.nn.log_softmax(ctx.outputs / temperature))


def _outputs_in(space: str, name: str):
  if space not in ("probs", "logits"):
    raise JinvertError(f"{name}: space must be 'probs' or 'logits', got {space!r}")
  return (lambda ctx: jax.nn.softmax(ctx.outputs)) if space == "probs" else (lambda ctx: ctx.outputs)


@wrap_objective("vector", target="vector")
def output_l1(vector=None, space: str = "probs"):
  """L1 distance from the outputs (softmax probabilities or logits) to a target vector; a
  distance (use with minus)."""
  outputs = _outputs_in(space, "output_l1")
  return lambda ctx, v: jnp.sum(jnp.abs(outputs(ctx) - v))


@wrap_objective("vector", target="vector")
def output_l2(vector=None, space: str = "probs"):
  """Squared L2 distance from the outputs (softmax probabilities or logits) to a target
  vector; a distance (use with minus)."""
  outputs = _outputs_in(space, "output_l2")
  return lambda ctx, v: jnp.sum((outputs(ctx) - v) ** 2)


@wrap_objective("value", target="value")
def output_error(value=None, index: int = 0):
  """Squared error (outputs[index] - value)^2 of a regression output; a distance."""
  return lambda ctx, v: (ctx.outputs[index] - v) ** 2


# Hidden units ---------------------------------------------------------------------------------

@wrap_objective("unit", target="index", layer="layer")
def unit(layer: str, index: int | None = None):
  """The activation of one unit of a hidden layer: maximise it, or `-unit(...)` to shut it down."""
  return lambda ctx, i: ctx.activations[layer][i]


# Feature maps of convolutional layers ---------------------------------------------------------

def _channels_last(ctx, layer: str, axis: int):
  """`layer`'s feature map for one input, (H, W, C), or a JinvertError if it is not one."""
  a = ctx.activations[layer]
  if a.ndim != 3:
    raise JinvertError(f"layer {layer!r} has shape {tuple(a.shape)} for one input: this objective "
                       "needs a feature map (H, W, C) or (C, H, W)")
  return jnp.moveaxis(a, axis, -1)


@wrap_objective("channel", target="c", layer="layer", axis="axis")
def channel(layer: str, c: int | None = None, axis: int = -1):
  """The mean over positions of channel `c` of a convolutional layer (Lucid's `channel`)."""
  return lambda ctx, c: jnp.mean(_channels_last(ctx, layer, axis)[..., c])


@wrap_objective("channel", target="c", layer="layer", axis="axis")
def neuron(layer: str, c: int | None = None, y: int | None = None, x: int | None = None,
           axis: int = -1):
  """Channel `c` of a convolutional layer at one position, (y, x), by default its centre."""
  def fn(ctx, c):
    a = _channels_last(ctx, layer, axis)
    return a[a.shape[0] // 2 if y is None else y, a.shape[1] // 2 if x is None else x, c]
  return fn


@wrap_objective(layer="layer", axis="axis")
def direction(layer: str, vector, axis: int = -1):
  """The mean over positions of the dot product of a layer's channels with `vector` (Lucid's
  `direction`): a direction in channel space rather than one channel."""
  vector = np.asarray(vector)

  def fn(ctx):
    a = _channels_last(ctx, layer, axis)
    if a.shape[-1] != len(vector):
      raise JinvertError(f"direction has {len(vector)} values; layer {layer!r} has "
                         f"{a.shape[-1]} channels")
    return jnp.mean(jnp.tensordot(a, jnp.asarray(vector, a.dtype), axes=1))
  return fn


def _gram(ctx, layer: str, axis: int):
  """The channels' Gram matrix of one input's activation (a dense layer's outer product),
  normalised to length 1."""
  a = ctx.activations[layer]
  flat = (jnp.moveaxis(a, axis, -1) if a.ndim == 3 else a).reshape(-1, a.shape[axis])
  gram = flat.T @ flat
  return gram / (jnp.sqrt(jnp.sum(gram ** 2)) + 1e-10)


@wrap_objective(layer="layer", axis="axis", couples_restarts=True)
def diversity(layer: str, axis: int = -1):
  """Minus the mean cosine similarity of this restart's Gram matrix at `layer` to the other
  restarts' of its target (Lucid's `diversity`, which sums the similarities of the batch and
  is subtracted; here the mean, added). The gradient of each restart's value, taken inside the
  engine's vmap, is that of the sum over restarts: the restarts are optimised jointly. Runs in
  the engine, which names the restarts axis (RESTARTS)."""
  def fn(ctx):
    gram = _gram(ctx, layer, axis)
    grams = jax.lax.all_gather(gram, RESTARTS)
    others = jnp.sum(grams * gram[None], axis=(1, 2)).sum() - jnp.sum(gram * gram)
    return -others / jnp.maximum(grams.shape[0] - 1, 1)
  return fn


@wrap_objective(layer="layer", couples_restarts=True)
def alignment(layer: str, decay: float = 2.0):
  """Minus the mean squared difference between `layer`'s activations of this restart and the
  next four, weighted by decay^-distance (Lucid's `alignment`): neighbouring restarts look alike,
  for an interpolation (`interpolate`). Runs in the engine (RESTARTS)."""
  def fn(ctx):
    a = ctx.activations[layer]
    every = jax.lax.all_gather(a, RESTARTS)
    i, r = jax.lax.axis_index(RESTARTS), every.shape[0]
    total = 0.0
    for d in range(1, 5):
      other = every[jnp.minimum(i + d, r - 1)]
      total = total + jnp.where(i + d < r, jnp.mean((a - other) ** 2), 0.0) / decay ** d
    return -total
  return fn


def interpolate(a: Objective, b: Objective) -> Objective:
  """`a` at a target's first restart, `b` at its last, and in between (1 - t) a + t b with
  t = restart / (restarts - 1) (Lucid's `channel_interpolate`, for any two objectives). Runs in
  the engine (RESTARTS)."""
  def fn(ctx):
    value_a, value_b = a(ctx), b(ctx)
    r, i = jax.lax.psum(1, RESTARTS), jax.lax.axis_index(RESTARTS)
    t = (i / jnp.maximum(r - 1, 1)).astype(value_a.dtype)
    return (1 - t) * value_a + t * value_b
  kind, layer, axis, _ = _merged(a, b)
  return Objective(fn, f"interpolate({a.name}, {b.name})", kind, layer, axis, True)


class BatchNormLayer(NamedTuple):
  """A BatchNorm layer as its prior reads it: the activation it normalises (by name), the
  running mean and variance of that activation's channels, learned from the training data, and
  the channels' axis in one input's activation (-1 flax, 0 ONNX)."""
  activation: str
  mean: Any
  var: Any
  axis: int = -1


def batchnorm_statistics(layers, first_multiplier: float = 1.0) -> Objective:
  """Minus DeepInversion's feature prior (Yin et al. 2020): the sum over BatchNorm layers of
  ||mu - running mean||_2 + ||sigma^2 - running variance||_2, mu and sigma^2 taken over the
  positions and over every lane of the call (the targets x restarts are the batch, as
  DeepInversion's batch is: a mean over the engine's named axes, `lax.pmean`); the first layer
  weighted `first_multiplier` times. `layers`: BatchNormLayers (`Classifier.batchnorm`). Runs in
  the engine (RESTARTS, TARGETS)."""
  layers = tuple(BatchNormLayer(l.activation, np.asarray(l.mean), np.asarray(l.var), l.axis)
                 for l in layers)
  if not layers:
    raise JinvertError("batchnorm_statistics: the model has no BatchNorm layers (an exporter "
                       "that folds them into the convolutions leaves none)")

  def fn(ctx):
    total = 0.0
    for i, layer in enumerate(layers):
      a = ctx.activations[layer.activation]
      a = jnp.moveaxis(a, layer.axis, -1).reshape(-1, a.shape[layer.axis])  # (positions, C)
      first, second = jax.lax.pmean((jnp.mean(a, 0), jnp.mean(a * a, 0)), (RESTARTS, TARGETS))
      mean, var = jnp.asarray(layer.mean, a.dtype), jnp.asarray(layer.var, a.dtype)
      distance = (jnp.linalg.norm(first - mean) + jnp.linalg.norm(second - first * first - var))
      total = total + (first_multiplier if i == 0 else 1.0) * distance
    return -total
  shown = f"{len(layers)} layers" + (f", first x{first_multiplier:g}" if first_multiplier != 1
                                     else "")
  return Objective(fn, f"batchnorm_statistics({shown})", couples_restarts=True)


# Priors and penalties on the input ------------------------------------------------------------

@wrap_objective()
def l2():
  """Mean squared pixel value; a penalty."""
  return lambda ctx: jnp.mean(ctx.x ** 2)


@wrap_objective()
def l1():
  """Mean absolute pixel value; a penalty."""
  return lambda ctx: jnp.mean(jnp.abs(ctx.x))


@wrap_objective()
def total_variation(axes=(-2, -1)):
  """Mean absolute difference between neighbouring pixels along the two spatial `axes`
  (channels-last images: (-3, -2)); a penalty."""
  return lambda ctx: sum(jnp.mean(jnp.abs(jnp.diff(ctx.x, axis=a))) for a in axes)


@wrap_objective()
def squareness(threshold: float = 0.0, ink: float = 0.3, axes=(-2, -1)):
  """How nearly square the ink's bounding box is, min(w, h) / max(w, h), above `threshold`
  and rescaled to [0, 1]; a penalty. w counts the columns whose darkest pixel passes `ink`,
  h the rows (each a sigmoid of 20 x (largest ink - `ink`), so that the count has a gradient);
  `axes` are the rows' and the columns' axes.

  Why: an MLP's surest drawings of every class fill a box about as wide as tall, where real
  trousers are tall and narrow and shoes wide and low (what a charge for squareness buys:
  experiments/RESULTS.md, "A drawing that is not square")."""
  if not 0 <= threshold < 1:
    raise JinvertError(f"squareness: threshold must be in [0, 1), got {threshold}")
  rows, columns = axes

  def count(x, keep):
    other = tuple(a for a in range(x.ndim) if a != keep % x.ndim)
    return jnp.sum(jax.nn.sigmoid(20.0 * (jnp.max(x, axis=other) - ink)))

  def fn(ctx):
    w, h = count(ctx.x, columns), count(ctx.x, rows)
    ratio = jnp.minimum(w, h) / jnp.maximum(jnp.maximum(w, h), 1.0)
    return jnp.maximum(ratio - threshold, 0.0) / (1.0 - threshold)
  return fn


@wrap_objective()
def euclidean_distance_to(reference):
  """The Euclidean distance ||x - reference||_2 (smoothed at 0 so its gradient is finite);
  a penalty."""
  reference = np.asarray(reference)  # in the input's dtype when used
  return lambda ctx: jnp.sqrt(jnp.sum((ctx.x - jnp.asarray(reference, ctx.x.dtype)) ** 2) + 1e-12)


@wrap_objective()
def mean_squared_distance_to(reference):
  """The mean over pixels of (x - reference)^2; a penalty."""
  reference = np.asarray(reference)  # in the input's dtype when used
  return lambda ctx: jnp.mean((ctx.x - jnp.asarray(reference, ctx.x.dtype)) ** 2)
