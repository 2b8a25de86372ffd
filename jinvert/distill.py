"""Data-free knowledge distillation: how much of a model's knowledge its inversions carry.

A balanced transfer set is synthesised from the teacher alone (`synthesize`, with a preset:
`data_free` by default), a fresh student learns to match the teacher's outputs on it
(`train_student`), and the student is scored on the real test set: the one place real data is
used. Every image the student sees is labelled by the teacher at that moment, after the
augmentation, so the labels are always the teacher's outputs on exactly what the student sees.

The student must query the teacher many times around the synthesised images, not only at them:
each batch mixes pairs of images (mixup) and adds Gaussian noise (a recipe may first distort
each image elastically), so a student fitted to 6,000 images still learns the teacher's
response in the directions in which real digits differ from them. Adaptive rounds (`rounds` >
1: later images where the student still disagrees with the teacher, DeepInversion's
competition) are offered; what each ingredient is worth: experiments/RESULTS.md.

>>> import jax.numpy as jnp
>>> teacher = jnp.array([[4.0, 0.0, 0.0]])
>>> float(kd_loss(teacher, teacher, temperature=4.0))      # a student that matches: no loss
0.0
>>> float(kd_loss(jnp.zeros((1, 3)), teacher, temperature=4.0)) > 0
True
"""

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from flax.training import train_state

from jinvert import engine, input_space, memory, optimizers, presets, train, transforms
from jinvert.errors import JinvertError
from jinvert.objectives import wrap_objective


SAVE_EVERY = 3000  # student steps between the training states a work dir keeps
SYNTH_PIECES = 10  # a work dir keeps the transfer set in this many pieces a round


@dataclasses.dataclass(frozen=True)
class StudentRecipe:
  """How the student learns from the teacher.

  Attributes:
    steps: optimiser steps.
    batch_size: images per step.
    learning_rate: Adam's.
    temperature: of the softened distributions matched (Hinton et al.'s T).
    mixup: each image is mixed with another of its batch, with weight U(0, mixup).
    noise: standard deviation of the Gaussian noise added to every image.
    distortion: first, every image is distorted elastically with this strength (pixels:
      `transforms.elastic`'s alpha; 0: not at all), so that the teacher is asked about its
      images drawn by other hands.
  """
  steps: int = 36_000
  batch_size: int = 100
  learning_rate: float = 1e-3
  temperature: float = 4.0
  mixup: float = 0.5
  noise: float = 0.3
  distortion: float = 0.0


def kd_loss(student_logits, teacher_logits, temperature: float):
  """T^2 KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
  t = jax.nn.log_softmax(teacher_logits / temperature)
  s = jax.nn.log_softmax(student_logits / temperature)
  return temperature ** 2 * jnp.mean(jnp.sum(jnp.exp(t) * (t - s), axis=-1))


def augment(key, x, mixup: float, noise: float, distortion: float = 0.0):
  """Distorts each image of the batch `x` (`transforms.elastic` of strength `distortion`, if
  any), mixes it with another (weight U(0, mixup)) and adds noise."""
  if distortion:
    axes = input_space.layout(x.shape[1:]).spatial_axes
    if axes is None:
      raise JinvertError(f"a distortion needs images; these inputs are {x.shape[1:]} features")
    distort = transforms.elastic(distortion, axes=axes)
    x = jax.vmap(distort)(jax.random.split(jax.random.fold_in(key, 3), len(x)), x)
  k_weight, k_partner, k_noise = jax.random.split(key, 3)
  weight = jax.random.uniform(k_weight, (len(x),) + (1,) * (x.ndim - 1), maxval=mixup)
  x = (1 - weight) * x + weight * x[jax.random.permutation(k_partner, len(x))]
  return x + noise * jax.random.normal(k_noise, x.shape)


def distill_steps(state, images, teacher_fn, teacher_params, indices, key,
                  recipe: StudentRecipe, sharding=None):
  """Runs one student step per row of `indices` with `lax.scan`; returns (state, mean loss).

  With a `sharding` of the batch (`engine.lane_sharding`), each device takes its share of every
  batch and the gradients are summed across devices, and processes (data parallel)."""
  def step(state, idx):
    x = images[idx]
    if sharding is not None:
      x = jax.lax.with_sharding_constraint(x, sharding)
    x = augment(jax.random.fold_in(key, state.step), x, recipe.mixup, recipe.noise,
                recipe.distortion)
    target = teacher_fn(teacher_params, x)
    loss, grads = jax.value_and_grad(
        lambda p: kd_loss(state.apply_fn(p, x), target, recipe.temperature))(state.params)
    return optimizers.apply_gradients(state, grads), loss

  state, losses = jax.lax.scan(step, state, indices)
  return state, jnp.mean(losses)


def train_student(module, params, images, teacher_fn, teacher_params, key,
                  recipe: StudentRecipe = StudentRecipe(), on_steps=None, chunk_steps: int = 600,
                  work=None, name: str = "student", save_every: int = SAVE_EVERY):
  """Trains `params` of `module` to match the teacher on augmented transfer images.

  Args:
    module: the student's Flax module.
    params: its initial variables.
    images: the transfer set (N, ...).
    teacher_fn: `fn(params, x) -> logits` (see `engine.outputs_only`).
    teacher_params: the teacher's parameters.
    key: decides the batches and the augmentation.
    recipe: a StudentRecipe.
    on_steps: called with the number of steps done after each compiled chunk (progress).
    chunk_steps: steps per compiled call.
    work: a `jinvert.work_dir.WorkDir`: the training state is kept there as `name` every
      `save_every` steps (at the end of a chunk) and at the end, and training resumes from it.

  Returns:
    The student's parameters.
  """
  if recipe.batch_size > len(images):
    raise JinvertError(f"batch size {recipe.batch_size} exceeds the {len(images)} transfer images")
  # data parallel across processes only: within one, mnist-mlp's step split over 2 CPU devices
  # ran 1.2x slower than on one (experiments/BENCHMARKS.md)
  sharding = engine.lane_sharding(recipe.batch_size) if jax.process_count() > 1 else None
  if sharding is None:
    images = jnp.asarray(images)
  else:  # every process holds the transfer set: each device gets its own copy
    host = np.asarray(images)
    images = jax.make_array_from_callback(
        host.shape, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()),
        lambda index: host[index])
  # a copy: the compiled steps donate their state, and the caller keeps its own params
  state = train_state.TrainState.create(apply_fn=module.apply, params=jax.tree.map(jnp.array, params),
                                        tx=optax.adam(recipe.learning_rate))
  order_key, noise_key = jax.random.split(key)
  run = jax.jit(distill_steps, static_argnames=("teacher_fn", "recipe", "sharding"),
                donate_argnums=0)
  done = 0
  kept = work.load(name) if work is not None else None
  if kept is not None:  # every step after it depends on the state and the step count alone
    state = serialization.from_bytes(state, kept["state"].tobytes())
    done = int(kept["done"])
    if on_steps:
      on_steps(done)
  while done < recipe.steps:
    n = min(chunk_steps, recipe.steps - done)
    indices = train.epoch_indices(jax.random.fold_in(order_key, done), len(images),
                                  recipe.batch_size, n)
    state, _ = run(state, images, teacher_fn, teacher_params, indices, noise_key, recipe,
                   sharding)
    done += n
    if on_steps:
      on_steps(n)
    if work is not None and (done // save_every > (done - n) // save_every or done == recipe.steps):
      work.save(name, {"state": np.frombuffer(serialization.to_bytes(state), np.uint8),
                       "done": np.int64(done)})
  # waited for: the chunks are dispatched ahead, and a caller timing training must not stop the
  # clock while they still run; to the host when it spans processes (every process reads its
  # own replicated copy)
  params = jax.block_until_ready(state.params)
  return params if sharding is None else jax.device_get(params)


@wrap_objective()
def disagreement(temperature: float = 4.0):
  """KL(teacher || student) at temperature T, the student's logits read from the activation
  `student`: where the student has not yet learned the teacher (`with_student`)."""
  def fn(ctx):
    t = jax.nn.log_softmax(ctx.outputs / temperature)
    s = jax.nn.log_softmax(ctx.activations["student"] / temperature)
    return jnp.sum(jnp.exp(t) * (t - s))
  return fn


def with_student(teacher_apply: Callable, student_apply: Callable) -> Callable:
  """A model function over params (teacher, student): the teacher's outputs, and the student's
  logits as the activation `student` (for `disagreement`)."""
  def fn(params, x):
    outputs, acts = engine.split_outputs(teacher_apply(params[0], x))
    return outputs, dict(acts, student=student_apply(params[1], x))
  return fn


def synthesize(apply_fn: Callable, params, preset: presets.Preset | None, n_images: int,
               n_classes: int, input_shape, key, max_chunk: int | None = None, on_images=None,
               targets=None, cached=None, prefix: str = "images"):
  """A class-balanced transfer set: `n_images / n_classes` inversions of every class, or of
  each of `targets`' distributions (`soft_targets`) for a preset whose objective reads one.

  Args:
    apply_fn: the teacher's model function.
    params: its parameters.
    preset: the recipe (None: uniform noise, the baseline that uses no inversion at all);
      each image is the best of its `draws` (and `pooled` draws) by its `score`, else the
      surest.
    n_images: a multiple of `n_classes`.
    n_classes: the teacher's classes.
    input_shape: one input's shape.
    key: decides every image.
    max_chunk: at most this many images per class in one compiled call; the result is the
      same whatever the chunk (each image depends only on its own key).
    on_images: called with the number of images done after each call (progress).
    targets: (n_images, n_classes) target distributions, class-major, or None.
    cached: a `jinvert.work_dir.WorkDir`'s `cached`: the set is made in SYNTH_PIECES pieces (at
      most), each kept under `prefix` and read back when a killed run starts again.

  Returns:
    (images (n_images, *input_shape), class-major: every class's images in turn; seconds).
  """
  if n_images <= 0 or n_images % n_classes:
    raise JinvertError(f"the number of images must be a positive multiple of the {n_classes} "
                       f"classes, got {n_images}")
  per_class = n_images // n_classes
  shape = (n_images,) + tuple(input_shape)
  memory.require(4 * math.prod(shape), memory.host_available_bytes(),
                 f"{n_images:,} transfer images", "use fewer images")
  if preset is None:
    if on_images:
      on_images(n_images)
    return np.asarray(jax.random.uniform(key, shape)), 0.0
  def compiled(objective):
    return jax.jit(engine.make_inversion(apply_fn, objective, preset.optimizer,
                                         preset.parameterization, preset.steps,
                                         tuple(input_shape), preset.transform, record_every=0))
  recipes = ((preset.objective, preset.draws),) + tuple(preset.pooled)
  if targets is not None:
    if tuple(targets.shape) != (n_images, n_classes):
      raise JinvertError(f"soft targets shaped {tuple(targets.shape)}, expected "
                         f"({n_images}, {n_classes})")
    images, seconds = _synthesize_soft([(compiled(o), n) for o, n in recipes], params,
                                       jnp.asarray(targets), key, on_images, cached, prefix,
                                       preset.objective.target_kind, preset.score)
    return images.reshape(shape), seconds
  draws = sum(n for _, n in recipes)
  classes = jnp.arange(n_classes)
  results, seconds = [], 0.0
  for i, (objective, n) in enumerate(recipes):
    piece, drawn, most = None, per_class * n, max_chunk
    if cached is not None:
      most = min(max_chunk or drawn, -(-drawn // SYNTH_PIECES))
      piece = engine.chunk_cache(cached, prefix + (f"-pooled{i}" if i else ""))
    result, timing = engine.run_planned(
        compiled(objective), params, classes, engine.recipe_key(key, i),
        drawn, engine.lane_sharding(n_classes),  # classes over devices; restarts in chunks
        max_chunk=most, on_chunk=(lambda r: on_images(r * n_classes / draws)) if on_images
        else None, piece=piece)
    results.append(result)
    seconds += timing["seconds"]
  result = engine.pool(results)
  if draws > 1:
    result = engine.keep_best(result, classes, per_class, preset.objective.target_kind,
                              preset.score)
  return np.asarray(result.inputs).reshape(shape), seconds


# ZSKD (Nayak et al. 2019): Dirichlet targets at two concentrations, matched at temperature 20.
SOFT_BETAS, SOFT_TEMPERATURE = (1.0, 0.1), 20.0
# lanes of one compiled call when every image has its own target (no restarts to chunk)
SOFT_PIECE = 2000


def class_similarity(kernel) -> jax.Array:
  """ZSKD's class similarity from the teacher's final layer alone: the cosine between the
  classes' weight vectors (`kernel` (features, classes)), each row scaled to [0, 1]."""
  w = jnp.asarray(kernel) / jnp.linalg.norm(kernel, axis=0, keepdims=True)
  cos = w.T @ w
  low, high = cos.min(axis=1, keepdims=True), cos.max(axis=1, keepdims=True)
  return (cos - low) / (high - low)


def soft_targets(key, similarity, n_images: int, betas=SOFT_BETAS) -> jax.Array:
  """ZSKD's targets: `n_images / C` per class c, class-major, drawn from Dirichlet(beta x
  similarity[c]), the betas sharing each class's images (a large beta spreads the target over
  the classes like c, a small one keeps it near one of them).

  >>> import jax, jax.numpy as jnp
  >>> t = soft_targets(jax.random.key(0), jnp.eye(3) + 0.5, 6)
  >>> t.shape, bool(jnp.allclose(t.sum(axis=1), 1.0))
  ((6, 3), True)
  """
  classes = similarity.shape[0]
  per_class = n_images // classes
  sizes = [per_class // len(betas) + (i < per_class % len(betas)) for i in range(len(betas))]
  draws = [jax.random.dirichlet(jax.random.fold_in(key, c * len(betas) + i),
                                jnp.maximum(beta * similarity[c], 1e-3), (size,))
           for c in range(classes) for i, (beta, size) in enumerate(zip(betas, sizes))]
  return jnp.concatenate(draws)


def _synthesize_soft(runs, params, targets, key, on_images, cached=None, prefix="images",
                     kind="vector", score=None):
  """Every image its own target: the lanes are the targets, in pieces of SOFT_PIECE (each kept
  through `cached` under `prefix`, when given), each the best by `score` (else the surest, as
  targets of `kind` are ranked) of the draws of `runs`, (compiled inversion, draws) pairs."""
  n = len(targets)
  pieces = -(-n // SOFT_PIECE)
  size = -(-n // pieces)
  draws = sum(d for _, d in runs)
  images, seconds = [], [0.0]
  for i, start in enumerate(range(0, n, size)):
    piece = targets[start:start + size]

    def compute(i=i, piece=piece):
      results = []
      for j, (run, d) in enumerate(runs):
        lanes = engine.recipe_key(jax.random.fold_in(key, i), j)
        result, timing = engine.run_planned(run, params, piece, lanes, d,
                                            engine.lane_sharding(len(piece), d))
        results.append(result)
        seconds[0] += timing["seconds"]
      result = engine.pool(results)
      if draws > 1:
        result = engine.keep_best(result, piece, 1, kind, score)
      return {"inputs": np.asarray(result.inputs)[:, 0]}
    found = compute() if cached is None else cached(f"{prefix}-soft{size}-{i:06d}", compute)
    images.append(found["inputs"])
    if on_images:
      on_images(len(piece))
  return np.concatenate(images), seconds[0]


def round_sizes(n_images: int, n_classes: int, rounds: int) -> list:
  """Splits `n_images` into `rounds` parts, each a multiple of `n_classes`."""
  per_class = n_images // n_classes
  if not 1 <= rounds <= per_class:
    raise JinvertError(f"rounds must be from 1 to {per_class} (the images per class), got {rounds}")
  return [n_classes * (per_class // rounds + (r < per_class % rounds)) for r in range(rounds)]


def distill(teacher_apply: Callable, teacher_params, student_module, student_params,
            n_images: int, n_classes: int, input_shape, key, preset: presets.Preset | None,
            rounds: int = 1, recipe: StudentRecipe = StudentRecipe(), on_images=None,
            on_steps=None, similarity=None, work=None, save_every: int = SAVE_EVERY):
  """The whole data-free distillation: synthesise, train, and (rounds > 1) synthesise again
  where the student still disagrees with the teacher, retraining from the same start each round.

  Args:
    teacher_apply, teacher_params: the teacher's model function and parameters.
    student_module, student_params: the student's Flax module and initial variables.
    n_images: transfer images in all, a multiple of `n_classes`.
    n_classes, input_shape: the teacher's.
    key: decides everything; the same key gives the same student, bit for bit, on one backend.
    preset: how images are synthesised (None: uniform noise).
    rounds: 1, or more for adaptive rounds (`disagreement`).
    recipe: how the student learns.
    on_images, on_steps: progress callbacks (images synthesised, student steps done).
    similarity: the teacher's class similarity (`class_similarity`) for soft targets (every
      image matches its own `soft_targets` draw; `preset` must read one), or None.
    work: a `jinvert.work_dir.WorkDir` keeping every round's transfer set in pieces and its
      student every `save_every` steps: a killed run started again with it resumes, and ends
      with the same student, bit for bit on one backend.

  Returns:
    (student params, the transfer images, {"synth_seconds", "train_seconds"}).
  """
  import time

  sizes = round_sizes(n_images, n_classes, rounds)
  logits = engine.outputs_only(teacher_apply)
  pieces, params, seconds = [], None, {"synth_seconds": 0.0, "train_seconds": 0.0}
  for r, size in enumerate(sizes):
    synth_key, train_key = jax.random.split(jax.random.fold_in(key, r))
    t0 = time.perf_counter()
    targets = None if similarity is None or preset is None else soft_targets(
        jax.random.fold_in(synth_key, 1), similarity, size)
    keep = dict(cached=work.cached if work is not None else None, prefix=f"round{r}-images")
    if r == 0 or preset is None:
      images, _ = synthesize(teacher_apply, teacher_params, preset, size, n_classes, input_shape,
                             synth_key, on_images=on_images, targets=targets, **keep)
    else:
      competing = preset._replace(objective=preset.objective + disagreement(recipe.temperature))
      images, _ = synthesize(with_student(teacher_apply, student_module.apply),
                             (teacher_params, params), competing, size, n_classes, input_shape,
                             synth_key, on_images=on_images, targets=targets, **keep)
    pieces.append(images)
    t1 = time.perf_counter()
    params = train_student(student_module, student_params, np.concatenate(pieces), logits,
                           teacher_params, train_key, recipe, on_steps, work=work,
                           name=f"round{r}-student", save_every=save_every)
    seconds["synth_seconds"] += t1 - t0
    seconds["train_seconds"] += time.perf_counter() - t1
  return params, np.concatenate(pieces), seconds
