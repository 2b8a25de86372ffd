"""The inversion engine: find inputs a model maps to chosen outputs, all at once.

One compiled call: `vmap` over targets, `vmap` over restarts, `lax.scan` over optimiser steps.
It works for any model function `apply_fn(params, x)` taking a batch of inputs and returning a
batch of outputs, or `(outputs, {layer name: activations})` when objectives read hidden units.
With several devices the (target, restart) lanes split over them (`lane_sharding`); when the
call would not fit in memory the restarts run in equal chunks that do (`plan_restarts`). On a
CPU the restarts of one call run in blocks that stay in the caches, each block all its steps
(`cpu_restart_block`), unless the objective compares them.

>>> import jax, jax.numpy as jnp
>>> from jinvert import objectives as ob
>>> model = lambda params, x: x.reshape(len(x), -1) @ params  # any function of a batch
>>> weights = jax.random.normal(jax.random.key(0), (16, 3))
>>> result = invert(model, weights, ob.class_log_prob(), jnp.arange(3), key=jax.random.key(1),
...                 input_shape=(4, 4), restarts=5, steps=50)
>>> result.inputs.shape, result.outputs.shape
((3, 5, 4, 4), (3, 5, 3))
>>> bool(jnp.all(result.target_prob[-1] > result.target_prob[0]))
True
"""

import functools
import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinvert import distributed, memory, optimizers, parameterizations, target_kinds
from jinvert.errors import JinvertError
from jinvert.objectives import RESTARTS, TARGETS, Context, Objective
from jinvert.timing import time_calls


class InversionResult(NamedTuple):
  """Outputs of `invert`, T targets by R restarts.

  Attributes:
    inputs: the optimised inputs, (T, R, *input_shape).
    loss_history: -objective before each step, (S', T, R), S' = steps // record_every.
    target_prob: the target's probability before each step, (S', T, R)
      (`jinvert.target_kinds`: NaN for unit and value targets).
    outputs: the model's outputs for the final inputs, (T, R, n_outputs).
    input_history: with `record_inputs`, the input before each recorded step,
      (S', T, R, *input_shape); else None.
  """
  inputs: jax.Array
  loss_history: jax.Array
  target_prob: jax.Array
  outputs: jax.Array
  input_history: jax.Array | None = None


def keep_best(result: InversionResult, targets, keep: int, kind: str = "class",
              score: Objective | None = None) -> InversionResult:
  """The `keep` restarts of each target that score highest, best first; every field of
  `result` narrowed to them. The score is `score`, an objective of the final input and the
  model's outputs for it (no hidden layers), or else the target's probability
  (`target_kinds`: class and vector targets): the restarts the model is surest of. Drawing more
  restarts than wanted and keeping the best uses nothing but the model: a data-free recipe may
  (`Preset.draws`; what it buys: experiments/RESULTS.md, "Pen strokes")."""
  if score is None and not target_kinds.has_probability(kind):
    raise JinvertError(f"keeping the surest restarts ranks them by their target's probability; "
                       f"{kind} targets have none")
  if score is not None and (score.layer is not None or score.couples_restarts):
    raise JinvertError(f"a score reads one final input and the model's outputs for it, not a "
                       f"hidden layer or the other restarts: {score.name}")
  restarts = result.inputs.shape[1]
  targets = target_kinds.check(kind, targets,
                               target_kinds.Shapes(result.outputs.shape[-1], {}, None))
  if len(targets) != result.inputs.shape[0]:
    raise JinvertError(f"{len(targets)} targets given for a result of "
                       f"{result.inputs.shape[0]}")
  if not 1 <= keep <= restarts:
    raise JinvertError(f"keep must be from 1 to the {restarts} restarts, got {keep}")
  if score is None:
    value = target_kinds.final_probabilities(kind, result.outputs, targets)
  else:
    one = lambda x, out, target: score(Context(x, out, {}, target))
    value = jax.vmap(jax.vmap(one, (0, 0, None)))(result.inputs, result.outputs, targets)
  order = jnp.argsort(-value, axis=1)[:, :keep]

  def narrow(field, axis):
    if field is None:
      return None
    return jax.vmap(lambda x, o: jnp.take(x, o, axis=axis - 1), in_axes=(axis - 1, 0),
                    out_axes=axis - 1)(field, order)
  return InversionResult(*(narrow(f, a) for f, a in zip(result, _RESTART_AXIS)))


def pool(results) -> InversionResult:
  """Results of the same targets joined along the restart axis, in turn (one result: itself)."""
  if len(results) == 1:
    return results[0]

  def join(axis, *fields):
    return None if fields[0] is None else jnp.concatenate(fields, axis)
  return InversionResult(*(join(a, *f) for a, f in zip(_RESTART_AXIS, zip(*results))))


def split_outputs(result) -> tuple:
  """(outputs, activations) of what a model function returned: outputs alone, or the pair."""
  if isinstance(result, tuple):
    return result[0], result[1]
  return result, {}


def outputs_only(apply_fn: Callable) -> Callable:
  """`fn(params, x) -> outputs` of a model function that may also return activations."""
  return lambda params, x: split_outputs(apply_fn(params, x))[0]


class _Activations(dict):
  """{layer name: activation}; a name the model lacks is a JinvertError naming those it has
  (an objective may read layers besides the one `validate` checks)."""

  def __missing__(self, name):
    raise JinvertError(f"the model has no layer {name!r}; valid layer names: "
                       f"{', '.join(self) or 'none (apply_fn returns no activations)'}")


def _single(apply_fn):
  """Calls a batched model on one input; returns (outputs, activations) for that input."""
  def fn(params, x):
    out, acts = split_outputs(apply_fn(params, x[None]))
    return out[0], _Activations((name, a[0]) for name, a in acts.items())
  return fn


def validate(apply_fn, params, objective: Objective, targets, input_shape, steps, restarts):
  """Checks every input against the model and the objective; returns targets as an array.

  Raises:
    JinvertError: naming the problem (input shape, target range, NaN, layer name, counts).
  """
  if steps <= 0:
    raise JinvertError(f"steps must be positive, got {steps}")
  if restarts <= 0:
    raise JinvertError(f"restarts must be positive, got {restarts}")
  try:
    probe = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jax.dtypes.canonicalize_dtype(float))
    out, acts = split_outputs(jax.eval_shape(apply_fn, params, probe))
  except Exception as e:  # flax and jax raise many types for a shape the model cannot take
    raise JinvertError(f"the model does not take inputs of shape {tuple(input_shape)} "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
  if objective.layer is not None:
    _Activations(acts)[objective.layer]  # a JinvertError naming the layers the model has
  shapes = target_kinds.Shapes(out.shape[-1], {k: v.shape[1:] for k, v in acts.items()},
                               objective.layer, objective.axis)
  return target_kinds.check(objective.target_kind, targets, shapes)


def _lane(apply_fn, objective, optimizer, parameterization, input_shape, transform,
          record_inputs):
  """One lane's `init(key) -> (carry, step key)` and `step(params, target, step key, carry,
  i) -> (carry, (loss, target probability, input or ()))`."""
  model = _single(apply_fn)
  report = target_kinds.probability(objective.target_kind)

  def init(key):
    init_key, step_key = jax.random.split(key)  # as `starting_inputs`
    latent = parameterization.init(init_key, tuple(input_shape))
    return (latent, optimizer.init(latent)), step_key

  def step(params, target, step_key, carry, i):
    latent, opt_state = carry

    def loss_fn(latent):
      x = parameterization.to_input(latent)
      seen = x if transform is None else transform(jax.random.fold_in(step_key, i), x)
      out, acts = model(params, seen)
      return -objective(Context(x, out, acts, target)), (out, x)

    (loss, (out, x)), grad = jax.value_and_grad(loss_fn, has_aux=True)(latent)
    latent, opt_state = optimizers.update(optimizer, grad, opt_state, latent)
    latent = parameterization.project(latent)
    return (latent, opt_state), (loss, report(out, target), x if record_inputs else ())

  return init, step


def _scan_recording(step, carry, steps: int, chunk: int):
  """Runs `step(carry, i)` for i < steps; keeps the history of every `chunk`-th step.

  The kept step's history rides in the carry: stacking all `chunk` steps' histories and
  keeping one would make memory grow with the steps even when nothing is recorded. The step is
  jitted so that learning its history's shape and running it share one trace (a deep model's
  trace is most of the time to its first result).
  """
  step = jax.jit(step)
  first = jax.eval_shape(step, carry, jnp.zeros((), jnp.int32))[1]  # i as the scan passes it
  empty = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first)

  def recorded(carry, i):  # runs `chunk` steps, keeps the first one's history
    def body(state, j):
      carry, kept = state
      carry, history = step(carry, i * chunk + j)
      kept = jax.tree.map(lambda new, old: jnp.where(j == 0, new, old), history, kept)
      return (carry, kept), None

    (carry, kept), _ = jax.lax.scan(body, (carry, empty), jnp.arange(chunk))
    return carry, kept

  return jax.lax.scan(recorded, carry, jnp.arange(steps // chunk))


def make_inversion(apply_fn: Callable, objective: Objective, optimizer: optax.GradientTransformation,
                   parameterization: parameterizations.Parameterization, steps: int,
                   input_shape: tuple, transform: Callable | None = None, record_every: int = 1,
                   record_inputs: bool = False, on_steps: Callable | None = None,
                   report_every: int | None = None):
  """Builds the pure function `run(params, targets, keys) -> InversionResult`.

  `targets` has a leading axis T and `keys` is a (T, R) array of keys. `run` scans over the
  steps; each step is one lane's step vmapped over restarts and targets (the order `vmap` of a
  scan would give, written out so that the loop can report progress once, not once per lane).
  On a CPU, the restarts run in blocks of `cpu_restart_block` in a `lax.map`, each block the
  whole scan, unless the objective compares them (`Objective.couples_restarts`): the same lanes,
  kept in the caches. Jit it (as `invert` does) to compile the whole search as one call.

  Args:
    apply_fn: batched model function `apply_fn(params, x)`.
    objective: the value to maximise.
    optimizer: an optax optimiser (it minimises -objective).
    parameterization: latent initialisation, mapping to the input, and constraint.
    steps: optimiser steps.
    input_shape: shape of one input.
    transform: optional robustness transform `fn(key, x) -> x` applied before the model.
    record_every: keep loss and probability every k-th step (0: keep only the first).
    record_inputs: also keep the input at each recorded step (memory: S' x T x R inputs).
    on_steps: called on the host with the number of steps done (a block's share of them),
      every `report_every` steps (through `jax.debug.callback`), for a progress bar.
    report_every: steps between `on_steps` calls (default: about 2% of the steps; what a
      report costs: experiments/RESULTS.md).
  """
  if record_every < 0 or (record_every and steps % record_every):
    raise JinvertError(f"record_every must divide steps ({steps}), got {record_every}")
  model = _single(apply_fn)
  lane_init, lane_step = _lane(apply_fn, objective, optimizer, parameterization, input_shape,
                               transform, record_inputs)
  every = report_every or max(1, steps // 50)
  # named axes: objectives that compare a target's restarts (diversity, alignment) gather over
  # RESTARTS; the BatchNorm prior's statistics over both
  over_restarts = jax.vmap(lane_step, in_axes=(None, None, 0, 0, None), axis_name=RESTARTS)
  all_lanes = jax.vmap(over_restarts, in_axes=(None, 0, 0, 0, None), axis_name=TARGETS)

  def whole(params, targets, keys, blocks=1):
    carry, step_keys = jax.vmap(jax.vmap(lane_init))(keys)

    def step(carry, i):
      carry, history = all_lanes(params, targets, step_keys, carry, i)
      if on_steps is not None:  # each of `blocks` runs every step: a block's share of them
        jax.lax.cond((i + 1) % every == 0,
                     lambda: jax.debug.callback(lambda: on_steps(every / blocks)), lambda: None)
      return carry, history

    (latent, _), (losses, probs, xs) = _scan_recording(step, carry, steps, record_every or steps)
    x = jax.vmap(jax.vmap(parameterization.to_input))(latent)
    outputs = jax.vmap(jax.vmap(lambda x: model(params, x)[0]))(x)
    return InversionResult(x, losses, probs, outputs, xs if record_inputs else None)

  def in_blocks(block, params, targets, keys):
    n_targets, restarts = keys.shape
    blocks = restarts // block
    keys = jnp.moveaxis(keys.reshape(n_targets, blocks, block), 1, 0)
    parts = jax.lax.map(lambda keys: whole(params, targets, keys, blocks), keys)

    def joined(field, axis):  # (blocks, ..., block at `axis`, ...) -> (..., restarts, ...)
      if field is None:
        return None
      field = jnp.moveaxis(field, 0, axis)
      return field.reshape(field.shape[:axis] + (restarts,) + field.shape[axis + 2:])
    return InversionResult(*(joined(f, a) for f, a in zip(parts, _RESTART_AXIS)))

  def run(params, targets, keys):
    restarts = keys.shape[1]
    block = restarts
    if not objective.couples_restarts:
      def first_step(keys):  # of restarts, each for every target
        carry, step_keys = jax.vmap(jax.vmap(lane_init))(keys.T)
        return all_lanes(params, targets, step_keys, carry, 0)
      block = cpu_restart_block(lane_bytes(first_step, keys.T), len(targets), restarts)
    if block == restarts:
      return whole(params, targets, keys)
    return jax.lax.platform_dependent(params, targets, keys,
                                      cpu=functools.partial(in_blocks, block), default=whole)

  return run


# On a CPU, the lanes of one call run in blocks of about this many bytes of the step's values
# (`lane_bytes`, an over-count) and at least this many lanes, each block all its steps before
# the next: such a block runs up to 2x faster than all the lanes stepping together, and a
# smaller one pays its loop's own cost. Calibrated on this project's CPUs
# (experiments/BENCHMARKS.md, "Lanes in blocks"); an accelerator runs all the lanes at once.
CPU_BLOCK_BYTES = 100 * 2 ** 20
CPU_BLOCK_LANES = 20


def nested_jaxprs(eqn):
  """The jaxprs held in the parameters of the equation `eqn`: a scan's or a call's body, each of
  a cond's branches."""
  for value in eqn.params.values():
    for sub in (value if isinstance(value, (tuple, list)) else [value]):
      inner = getattr(sub, "jaxpr", sub)
      if hasattr(inner, "eqns"):
        yield inner


def _value_sizes(jaxpr) -> list:
  found = []
  for eqn in jaxpr.eqns:
    for inner in nested_jaxprs(eqn):  # a cond: both branches (CPU_BLOCK_BYTES is calibrated so)
      found += _value_sizes(inner)
    found += [math.prod(v.aval.shape) * v.aval.dtype.itemsize for v in eqn.outvars
              if hasattr(v.aval, "shape")]
  return found


# `lane_bytes` traces this many lanes: a prime, so a value's size is a multiple of it only when
# the value holds a lane axis (or an axis of 1,021 x k, which no model here has); one trace,
# where comparing the sizes at 1 lane and at 2 took two, each as long as the search's own.
PROBE_LANES = 1021


def lane_bytes(fn: Callable, *lanes) -> int:
  """Bytes one more lane adds to the values of `fn`'s program: `fn(*lanes)` traced for
  `PROBE_LANES` lanes of every argument (its leading axis), the sizes of the values that hold
  them summed per lane; what all lanes share, such as weights, adds nothing. An over-count of
  what is live at once, as XLA fuses most values.

  >>> weights = jnp.ones((784, 256))
  >>> lane_bytes(lambda x: jnp.tanh(x @ weights), jnp.ones((8, 784)))  # 2 x 256 float32
  2048
  """
  given = jax.tree.map(lambda a: jax.ShapeDtypeStruct((PROBE_LANES,) + a.shape[1:], a.dtype),
                       lanes)
  return sum(size // PROBE_LANES for size in _value_sizes(jax.make_jaxpr(fn)(*given).jaxpr)
             if size % PROBE_LANES == 0)


def cpu_restart_block(restart_bytes: int, n_targets: int, restarts: int) -> int:
  """Restarts per block on a CPU: the most that divide `restarts` and whose step values
  (`restart_bytes` each: a restart of every target) fit in `CPU_BLOCK_BYTES`, or that make up
  `CPU_BLOCK_LANES` lanes when more; at least one."""
  fits = max(CPU_BLOCK_BYTES // max(1, restart_bytes), -(-CPU_BLOCK_LANES // n_targets))
  # divisors in pairs up to the square root: a billion restarts is refused at once, not after
  # a scan of every count below it
  divisors = (d for i in range(1, math.isqrt(restarts) + 1) if restarts % i == 0
              for d in (i, restarts // i))
  return max(d for d in divisors if d <= fits)


def starting_inputs(parameterization: parameterizations.Parameterization, keys, input_shape):
  """The inputs `make_inversion`'s lanes start from, (T, R, *input_shape), for (T, R) keys."""
  def start(key):
    return parameterization.to_input(parameterization.init(jax.random.split(key)[0],
                                                           tuple(input_shape)))
  return jax.vmap(jax.vmap(start))(keys)


def restart_sharding(restarts: int):
  """A NamedSharding that splits the restarts axis of (T, R, ...) arrays over every device.

  Put the (T, R) lane keys there (`jax.device_put(keys, restart_sharding(R))`) and the jitted
  inversion runs each device's restarts on that device: restarts are independent, so no
  device waits on another. R must be a multiple of the device count. Across hosts, call
  `jax.distributed.initialize()` first on every host; `jax.devices()` then lists all of them.
  """
  devices = jax.devices()
  if restarts % len(devices):
    raise JinvertError(f"restarts ({restarts}) must be a multiple of the {len(devices)} devices "
                       "to shard over them")
  return _split(devices, 1)


def lane_sharding(n_targets: int, restarts: int | None = None, devices=None):
  """How to split (T, R) lanes over several devices, or None to keep them on one.

  The targets axis when the device count divides T, else the restarts axis when it divides R
  (pass `restarts=None` when the restarts may run in chunks: then only targets are split).
  Lanes are independent, so each device runs its share without waiting on the others; with
  one device per CPU core (`jinvert.devices.use_every_core`) this keeps every core busy.

  Args:
    n_targets, restarts: T and R.
    devices: the devices to use (default `jax.devices()`).
  """
  devices = list(devices or jax.devices())
  if len(devices) == 1:
    return None
  if n_targets % len(devices) == 0:
    return _split(devices, 0)
  if restarts is not None and restarts % len(devices) == 0:
    return _split(devices, 1)
  return None


def _split(devices, axis: int):
  mesh = jax.sharding.Mesh(np.array(devices), ("lanes",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*[None] * axis, "lanes"))


def _splits_restarts(sharding) -> bool:
  return sharding is not None and len(sharding.spec) > 1 and sharding.spec[1] is not None


def recipe_key(key, place: int):
  """The key of the recipe at `place` among those pooled (`invert`'s `pooled`): the first
  recipe's is `key` itself, so that a preset of one recipe draws as before; the others' are
  `key` folded with their place."""
  return key if place == 0 else jax.random.fold_in(key, place)


def lane_keys(key, n_targets: int, restarts: int, sharding=None):
  """One key per (target, restart): the same key and sizes give the same images. With a
  `sharding` (`lane_sharding`, `restart_sharding`), the keys are put there, and the jitted
  inversion given them runs each device's lanes on that device."""
  def split(key):
    return jax.random.split(key, n_targets * restarts).reshape(n_targets, restarts)
  if sharding is None:
    return split(key)
  if sharding.is_fully_addressable:  # put there: compiling `split` for it cost 30-150 ms a call
    return jax.device_put(split(key), sharding)
  # a sharding that spans processes takes no host array: the keys are made where they live
  return jax.jit(split, out_shardings=sharding)(key)


def _abstract_keys(n_targets: int, restarts: int, sharding=None):
  return jax.ShapeDtypeStruct((n_targets, restarts), jax.random.key(0).dtype, sharding=sharding)


# The restart axis of each InversionResult field, for gathering chunks.
_RESTART_AXIS = InversionResult(inputs=1, loss_history=2, target_prob=2, outputs=1, input_history=2)
_HINT = "use fewer restarts, steps or targets (or record fewer steps)"


def result_bytes(n_targets: int, restarts: int, steps: int, input_shape, n_outputs: int,
                 record_every: int = 1, record_inputs: bool = False) -> int:
  """Bytes of the InversionResult (float32) and the lane keys, from the sizes alone: what must
  fit in host memory, known before anything is traced, compiled or allocated."""
  lanes, size = n_targets * restarts, math.prod(input_shape)
  recorded = steps // record_every if record_every else min(steps, 1)
  per_lane = size + n_outputs + 2 * recorded + (recorded * size if record_inputs else 0)
  return 4 * lanes * per_lane + 8 * lanes


def plan_restarts(run, params, targets, restarts: int, device_bytes=None, host_bytes=None,
                  sharding=None, max_chunk: int | None = None, chunkable: bool = True):
  """Compiles `run` for R = `restarts`, or for the largest chunk of restarts that fits.

  The results must fit in host memory (checked from their shapes before anything is compiled
  or allocated); the compiled call must fit in the device's memory by XLA's own estimate, else
  the restarts are split into equal chunks that do (unless the sharding splits the restarts).

  Args:
    run: the jitted inversion (`make_inversion`).
    params, targets: its arguments.
    restarts: R.
    device_bytes, host_bytes: memory free (default: `jinvert.memory`'s reading).
    sharding: the keys' sharding (`lane_sharding`, `restart_sharding`), if any.
    max_chunk: at most this many restarts per call (for progress, or a memory budget).
    chunkable: False when the objective compares a target's restarts
      (`Objective.couples_restarts`): they must then run in one call, or not at all.

  Returns:
    (compiled call for chunks of C restarts, C).

  Raises:
    JinvertError: when the results, or one restart per target, cannot fit.
  """
  device_bytes = memory.available_bytes() if device_bytes is None else device_bytes
  host_bytes = memory.host_available_bytes() if host_bytes is None else host_bytes
  n = len(targets)
  # the same abstract keys as the first compile below: one trace serves both
  results = jax.eval_shape(run, params, targets, _abstract_keys(n, restarts, sharding))
  memory.require(memory.tree_bytes(results) + 8 * n * restarts, host_bytes,
                 f"the results of {n} targets x {restarts:,} restarts", _HINT)
  chunk = min(restarts, max_chunk or restarts) if chunkable else restarts
  while True:
    compiled = run.lower(params, targets, _abstract_keys(n, chunk, sharding)).compile()
    need = memory.compiled_bytes(compiled)
    if need is None or device_bytes is None or need <= device_bytes:
      return compiled, chunk
    if not chunkable or _splits_restarts(sharding) or chunk == 1:
      memory.require(need, device_bytes, f"the inversion of {n} targets x {chunk:,} restarts",
                     _HINT)
    # restarts cost memory in proportion (plus a fixed part the next check catches)
    chunk = max(1, min(chunk - 1, int(device_bytes / (need / chunk))))


def run_chunks(compiled, params, targets, keys, chunk: int, on_chunk=None, piece=None):
  """Runs a compiled inversion over the (T, R) lane keys, `chunk` restarts per call.

  Every lane depends only on its own key, so the result equals one call over all R. Lanes
  that span several processes are gathered: every process gets the whole result.

  Args:
    compiled: the executable `plan_restarts` returned for chunks of `chunk` restarts.
    params, targets, keys: its arguments, keys for all R restarts.
    chunk: restarts per call.
    on_chunk: called with the number of restarts done after each call (for progress).
    piece: `piece(start, chunk, call) -> InversionResult` for the chunk from restart `start`,
      where `call()` computes it: a chunk kept by an earlier run is read instead (`chunk_cache`).

  Returns:
    (InversionResult over all R restarts, seconds spent in the calls, number of calls).
  """
  restarts = keys.shape[1]
  if chunk == restarts and piece is None:
    result, (seconds,) = time_calls(compiled, (params, targets, keys))
    if on_chunk:
      on_chunk(restarts)
    return distributed.gathered(result), seconds, 1
  pieces, seconds = [], [0.0]
  for start in range(0, restarts, chunk):
    def call(start=start):
      part = keys[:, start:start + chunk]
      if part.shape[1] < chunk:  # pad the last chunk: one executable serves every chunk
        part = jnp.concatenate([part, jnp.repeat(part[:, -1:], chunk - part.shape[1], 1)], 1)
      part = jax.device_put(part, keys.sharding)  # where the executable expects its keys
      result, (s,) = time_calls(compiled, (params, targets, part))
      seconds[0] += s
      return jax.device_get(distributed.gathered(result))
    pieces.append(call() if piece is None else piece(start, chunk, call))
    if on_chunk:
      on_chunk(min(chunk, restarts - start))
  return _gather(pieces, restarts), seconds[0], len(pieces)


def chunk_cache(cached: Callable, prefix: str) -> Callable:
  """A `piece` for `run_chunks` that keeps every chunk through `cached(name, compute)` (a
  `jinvert.work_dir.WorkDir`'s), named by `prefix`, the chunk size and its first restart."""
  def piece(start, chunk, call):
    def compute():
      return {k: v for k, v in call()._asdict().items() if v is not None}
    return InversionResult(**cached(f"{prefix}-chunk{chunk}-from{start:09d}", compute))
  return piece


def _gather(pieces, restarts: int) -> InversionResult:
  """Concatenates per-chunk results along the restart axis and trims the padding."""
  def join(axis, *arrays):
    if arrays[0] is None:
      return None
    return np.take(np.concatenate(arrays, axis), np.arange(restarts), axis)
  return InversionResult(*[join(axis, *field) for axis, field in
                           zip(_RESTART_AXIS, zip(*pieces))])


def run_planned(run, params, targets, key, restarts: int, sharding=None, *, fall_back=False,
                device_bytes=None, host_bytes=None, max_chunk: int | None = None,
                chunkable: bool = True, on_plan: Callable | None = None,
                on_chunk: Callable | None = None, piece: Callable | None = None):
  """Plans, keys and runs a jitted inversion (`make_inversion`) over T targets x R restarts.

  Compiled for all R restarts, or for the largest equal chunk that fits in memory
  (`plan_restarts`); the (T, R) lane keys are put on `sharding` (`lane_sharding`); the chunks
  run in turn (`run_chunks`), with the same results as one call.

  Args:
    run, params, targets: the jitted inversion and its arguments.
    key: decides every lane (`lane_keys`).
    restarts: R.
    sharding: how the lanes split over devices, or None.
    fall_back: when a sharding that splits the restarts (which cannot run in chunks) does not
      fit, run on one device in chunks instead of refusing.
    device_bytes, host_bytes, max_chunk, chunkable: as for `plan_restarts`.
    on_plan: called with the number of calls planned, before any runs.
    on_chunk: called with the number of restarts done after each call.
    piece: keeps each chunk (`run_chunks`, `chunk_cache`).

  Returns:
    (InversionResult, {"compile_seconds", "seconds", "chunks", "devices"}).
  """
  t0 = time.perf_counter()
  try:
    compiled, chunk = plan_restarts(run, params, targets, restarts, device_bytes, host_bytes,
                                    sharding, max_chunk, chunkable)
  except JinvertError:
    if not (fall_back and _splits_restarts(sharding)):
      raise
    sharding = None
    compiled, chunk = plan_restarts(run, params, targets, restarts, device_bytes, host_bytes,
                                    max_chunk=max_chunk, chunkable=chunkable)
  if on_plan is not None:
    on_plan(-(-restarts // chunk))
  compile_seconds = time.perf_counter() - t0
  keys = lane_keys(key, len(targets), restarts, sharding)
  result, seconds, chunks = run_chunks(compiled, params, targets, keys, chunk, on_chunk, piece)
  return result, {"compile_seconds": compile_seconds, "seconds": seconds, "chunks": chunks,
                  "devices": 1 if sharding is None else len(sharding.device_set)}


def timed_invert(apply_fn: Callable, params, objective: Objective, targets, *, key, input_shape,
                 restarts: int = 1, steps: int = 200,
                 optimizer: optax.GradientTransformation | None = None,
                 parameterization: parameterizations.Parameterization | None = None,
                 transform: Callable | None = None, record_every: int = 1,
                 record_inputs: bool = False, shard: bool | None = None, device_bytes=None,
                 host_bytes=None, on_steps: Callable | None = None,
                 piece: Callable | None = None, draws: int = 1, pooled=(),
                 score: Objective | None = None):
  """`invert`, timed: returns (InversionResult, {"compile_seconds", "seconds", "chunks",
  "devices"}).

  Compilation (`lower().compile()`) is timed apart from the compiled calls, each timed up to
  `block_until_ready`. Arguments as for `invert`. When the call does not fit in memory by XLA's
  estimate, the restarts run in chunks that do, with the same results (`plan_restarts`), unless
  the objective compares them (`Objective.couples_restarts`).
  `on_steps(n)` is called as the steps advance, `steps` in all over however many calls (a
  progress bar). `piece` keeps each chunk so that a killed run resumes (`chunk_cache`).
  """
  targets = validate(apply_fn, params, objective, targets, input_shape, steps, restarts)
  recipes = ((objective, draws),) + tuple(pooled)
  for other, _ in recipes[1:]:
    validate(apply_fn, params, other, targets, input_shape, steps, restarts)
    if other.target_kind != objective.target_kind:
      raise JinvertError(f"pooled objectives must read the same targets: {other.name} reads "
                         f"{other.target_kind} targets, {objective.name} {objective.target_kind}")
  if any(n < 1 for _, n in recipes):
    raise JinvertError(f"draws must be positive, got {', '.join(str(n) for _, n in recipes)}")
  drawn = sum(n for _, n in recipes)
  if drawn > 1 and score is None and not target_kinds.has_probability(objective.target_kind):
    raise JinvertError(f"drawing {drawn} restarts for each one kept ranks them by their "
                       f"target's probability; {objective.target_kind} targets have none: draw "
                       "one")
  if shard is None:
    sharding = lane_sharding(len(targets), restarts)
  else:
    sharding = restart_sharding(restarts) if shard else None
  results, timing, done = [], {}, 0
  for i, (recipe, n) in enumerate(recipes):
    calls = [1]  # known once planned; the compiled loop's reports are scaled by it
    # each recipe's share of the steps reported, by its share of the lanes
    report = (lambda k, calls=calls, n=n: on_steps(k * n / drawn / calls[0])) \
        if on_steps is not None else None
    run = jax.jit(make_inversion(apply_fn, recipe, optimizer or optax.adam(0.05),
                                 parameterization or parameterizations.pixels(), steps,
                                 tuple(input_shape), transform, record_every, record_inputs,
                                 on_steps=report))
    # a pooled recipe's chunks are kept after the earlier recipes' restarts
    kept = piece if piece is None or not done else \
        (lambda start, chunk, call, done=done: piece(done + start, chunk, call))
    result, spent = run_planned(run, params, targets, recipe_key(key, i), n * restarts,
                                sharding, fall_back=shard is None, device_bytes=device_bytes,
                                host_bytes=host_bytes, chunkable=not recipe.couples_restarts,
                                on_plan=lambda c, calls=calls: calls.__setitem__(0, c),
                                piece=kept)
    results.append(result)
    timing = spent if not timing else {k: timing[k] + v if k != "devices" else v
                                       for k, v in spent.items()}
    done += n * restarts
  result = pool(results)
  if drawn > 1:
    result = keep_best(result, targets, restarts, objective.target_kind, score)
  return result, timing


def invert(apply_fn: Callable, params, objective: Objective, targets, *, key, input_shape,
           restarts: int = 1, steps: int = 200, optimizer: optax.GradientTransformation | None = None,
           parameterization: parameterizations.Parameterization | None = None,
           transform: Callable | None = None, record_every: int = 1,
           record_inputs: bool = False, shard: bool | None = None, device_bytes=None,
           host_bytes=None, draws: int = 1, pooled=(),
           score: Objective | None = None) -> InversionResult:
  """Optimises inputs so that `apply_fn(params, x)` maximises `objective`, for every target.

  Args:
    apply_fn: batched model function; returns outputs, or (outputs, activations).
    params: the model's parameters (held fixed).
    objective: the value to maximise (see `jinvert.objectives`).
    targets: one entry per target, T in all (class indices, vectors, unit indices, values).
    key: `jax.random` key; it decides every restart's start and every random transform.
    input_shape: shape of one input.
    restarts: independent starts per target.
    steps: optimiser steps.
    optimizer: optax optimiser (default Adam 0.05).
    parameterization: default `pixels()`, box [0, 1] by projection.
    transform: optional robustness transform (see `jinvert.transforms`).
    record_every: keep the loss and probability history every k-th step (0: none but the first).
    record_inputs: also return the inputs at each recorded step (`input_history`).
    shard: None (default): split the lanes over every device when there are several and
      their count divides T or R (`lane_sharding`); True: split the restarts, which R must
      allow (`restart_sharding`); False: one device. The results are the same.
    device_bytes, host_bytes: memory free for the call and for its results (default: read
      from the device and the host, see `jinvert.memory`); over it, the restarts run in chunks.
    draws: restarts drawn for each one returned: `draws` x R run, and the R that score
      highest are kept, best first (`keep_best`).
    pooled: more (objective, draws) pairs, each drawn `draws` x R times with the same recipe
      (and the key folded with its place, 1, 2, ...), their draws pooled with these before
      the R are kept: a pick between recipes.
    score: the objective the kept restarts are ranked by, of the final input and the outputs
      (default: the target's probability, for class and vector targets).

  Returns:
    An InversionResult of arrays shaped (T, R, ...) and histories (S', T, R).

  Raises:
    JinvertError: bad targets, steps, input shape or layer name; results too large for memory.

  The maximiser of a linear unit over the box [0, 1] is known: 1 where the weight is positive.

  >>> import jax, jax.numpy as jnp, optax
  >>> from jinvert import objectives as ob
  >>> w = jnp.array([[1.0, -2.0], [-0.5, 3.0]])  # two units over two inputs
  >>> model = lambda params, x: (x @ params, {"units": x @ params})
  >>> result = invert(model, w, ob.unit("units"), jnp.arange(2), key=jax.random.key(0),
  ...                 input_shape=(2,), steps=20, optimizer=optax.sgd(1.0))
  >>> result.inputs[:, 0].tolist()
  [[1.0, 0.0], [0.0, 1.0]]
  """
  return timed_invert(apply_fn, params, objective, targets, key=key, input_shape=input_shape,
                      restarts=restarts, steps=steps, optimizer=optimizer,
                      parameterization=parameterization, transform=transform,
                      record_every=record_every, record_inputs=record_inputs, shard=shard,
                      device_bytes=device_bytes, host_bytes=host_bytes, draws=draws,
                      pooled=pooled, score=score)[0]
