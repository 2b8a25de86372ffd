"""Objectives: values the inversion engine maximises, which add, subtract and scale.

    objective = class_logit() - 0.05 * total_variation()

Each objective is a pure function of a `Context`: the input `x` (the clean image, before any
robustness transform), the model's `outputs` and hidden `activations` for the transformed
input, and this lane's `target`. Scores (`class_logit`, `unit`, ...) are to be maximised;
distances and priors (`cross_entropy`, `output_l2`, `l2`, `total_variation`, ...) are positive
and enter with a minus sign.

An objective built without a fixed target (`class_logit()` rather than `class_logit(8)`) reads
the target of its lane, so one objective serves all targets under `vmap`. Its `target_kind`
says what a target is, and the engine validates targets against it:
  class   an integer class index          (class_logit, class_log_prob, cross_entropy)
  vector  a full output vector            (cross_entropy_to, output_l1, output_l2)
  unit    an integer unit index of `layer` (unit)
  value   a regression output value       (output_error)
"""

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jinvert.errors import JinvertError

TARGET_KINDS = ("class", "vector", "unit", "value")


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
    target_kind: what the lane target is, or None when the objective reads no target.
    layer: the hidden layer a `unit` objective reads, or None.
  """
  fn: Callable[[Context], jax.Array]
  name: str
  target_kind: str | None = None
  layer: str | None = None

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
                   _merge(a.target_kind, b.target_kind, "target kind"),
                   _merge(a.layer, b.layer, "layer"))


def _target(fixed, ctx):
  return ctx.target if fixed is None else fixed


def _label(name, fixed):
  return f"{name}({'' if fixed is None else repr(fixed)})"


# Outputs --------------------------------------------------------------------------------------

def class_logit(c: int | None = None) -> Objective:
  """The logit of class `c` (or of the lane's target class)."""
  return Objective(lambda ctx: ctx.outputs[_target(c, ctx)], _label("class_logit", c),
                   "class" if c is None else None)


def class_log_prob(c: int | None = None) -> Objective:
  """log softmax(outputs)[c]: the class's log-probability."""
  return Objective(lambda ctx: jax.nn.log_softmax(ctx.outputs)[_target(c, ctx)],
                   _label("class_log_prob", c), "class" if c is None else None)


def class_log_prob_up_to(p: float, c: int | None = None) -> Objective:
  """min(log softmax(outputs)[c], log p): the log-probability, until it reaches p. Beside a
  distance penalty it finds the smallest change that makes the class probable (a
  counterfactual): once p is reached only the penalty pulls."""
  if not 0 < p < 1:
    raise JinvertError(f"class_log_prob_up_to: p must be in (0, 1), got {p}")
  return Objective(lambda ctx: jnp.minimum(jax.nn.log_softmax(ctx.outputs)[_target(c, ctx)],
                                           jnp.log(p)),
                   f"class_log_prob_up_to({p:g}{'' if c is None else f', {c}'})",
                   "class" if c is None else None)


def cross_entropy(c: int | None = None) -> Objective:
  """Cross-entropy from the one-hot target `c` to softmax(outputs); a distance (use with minus)."""
  return Objective(lambda ctx: -jax.nn.log_softmax(ctx.outputs)[_target(c, ctx)],
                   _label("cross_entropy", c), "class" if c is None else None)


def cross_entropy_to(distribution=None) -> Objective:
  """Cross-entropy from a target distribution to softmax(outputs); a distance."""
  def fn(ctx):
    return -jnp.sum(_target(distribution, ctx) * jax.nn.log_softmax(ctx.outputs))
  return Objective(fn, _label("cross_entropy_to", None if distribution is None else "p"),
                   "vector" if distribution is None else None)


def _output_distance(name, norm):
  def make(vector=None, space: str = "probs") -> Objective:
    if space not in ("probs", "logits"):
      raise JinvertError(f"{name}: space must be 'probs' or 'logits', got {space!r}")

    def fn(ctx):
      out = jax.nn.softmax(ctx.outputs) if space == "probs" else ctx.outputs
      return norm(out - _target(vector, ctx))
    return Objective(fn, f"{name}({space})", "vector" if vector is None else None)
  make.__name__ = name
  make.__doc__ = (f"{name.upper()[-2:]} distance from the outputs (softmax probabilities or "
                  "logits) to a target vector; a distance (use with minus).")
  return make


output_l1 = _output_distance("output_l1", lambda d: jnp.sum(jnp.abs(d)))
output_l2 = _output_distance("output_l2", lambda d: jnp.sum(d ** 2))


def output_error(value=None, index: int = 0) -> Objective:
  """Squared error (outputs[index] - value)^2 of a regression output; a distance."""
  return Objective(lambda ctx: (ctx.outputs[index] - _target(value, ctx)) ** 2,
                   _label("output_error", value), "value" if value is None else None)


# Hidden units ---------------------------------------------------------------------------------

def unit(layer: str, index: int | None = None) -> Objective:
  """The activation of one unit of a hidden layer: maximise it, or `-unit(...)` to shut it down."""
  def fn(ctx):
    return ctx.activations[layer][_target(index, ctx)]
  return Objective(fn, f"unit({layer!r}{'' if index is None else f', {index}'})",
                   "unit" if index is None else None, layer)


# Priors and penalties on the input ------------------------------------------------------------

def l2() -> Objective:
  """Mean squared pixel value; a penalty."""
  return Objective(lambda ctx: jnp.mean(ctx.x ** 2), "l2()")


def l1() -> Objective:
  """Mean absolute pixel value; a penalty."""
  return Objective(lambda ctx: jnp.mean(jnp.abs(ctx.x)), "l1()")


def total_variation(axes=(-2, -1)) -> Objective:
  """Mean absolute difference between neighbouring pixels along the two spatial `axes`
  (channels-last images: (-3, -2)); a penalty."""
  def fn(ctx):
    return sum(jnp.mean(jnp.abs(jnp.diff(ctx.x, axis=a))) for a in axes)
  return Objective(fn, "total_variation()")


def l2_distance_to(reference) -> Objective:
  """The Euclidean distance ||x - reference||_2 (smoothed at 0 so its gradient is finite);
  a penalty."""
  reference = jnp.asarray(reference)
  return Objective(lambda ctx: jnp.sqrt(jnp.sum((ctx.x - reference) ** 2) + 1e-12),
                   "l2_distance_to(start)")


def distance_to(reference) -> Objective:
  """Mean squared distance from the input to a reference image; a penalty."""
  reference = jnp.asarray(reference)
  return Objective(lambda ctx: jnp.mean((ctx.x - reference) ** 2), "distance_to(ref)")
