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
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError


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
                   layer: str | None = None):
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
      given = signature.bind(*args, **kwargs).arguments
      fn = make(*args, **kwargs)
      shown = [_shown(a) for a in args] + [f"{k}={_shown(v)}" for k, v in kwargs.items()
                                           if not _is_default(signature, k, v)]
      name = f"{make.__name__}({', '.join(shown)})"
      reads = given.get(layer) if layer else None
      if kind is None:
        return Objective(fn, name, None, reads)
      fixed = given.get(target)
      if fixed is None:
        return Objective(lambda ctx: fn(ctx, ctx.target), name, kind, reads)
      return Objective(lambda ctx: fn(ctx, fixed), name, None, reads)
    return factory
  return decorate


# Outputs --------------------------------------------------------------------------------------

@wrap_objective("class", target="c")
def class_logit(c: int | None = None):
  """The logit of class `c` (or of the lane's target class)."""
  return lambda ctx, c: ctx.outputs[c]


@wrap_objective("class", target="c")
def class_log_prob(c: int | None = None):
  """log softmax(outputs)[c]: the class's log-probability."""
  return lambda ctx, c: jax.nn.log_softmax(ctx.outputs)[c]


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
def cross_entropy_to(distribution=None):
  """Cross-entropy from a target distribution to softmax(outputs); a distance."""
  return lambda ctx, p: -jnp.sum(p * jax.nn.log_softmax(ctx.outputs))


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
