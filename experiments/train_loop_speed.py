"""Times one training epoch two ways: a `lax.scan` over batches vs a Python loop over a jitted step.

    python experiments/train_loop_speed.py [--model mnist-mlp] [--repeats 3]

Prints a table (seconds per epoch after compilation, median of repeats) and the ratio.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from jinvert import data, models, train


def time_epochs(model, repeats):
  spec = models.get_model(model)
  recipe = spec.recipe
  ds = data.load_dataset(spec.dataset)
  x, y = jax.device_put(ds.train_images), jax.device_put(ds.train_labels)
  state0 = train.create_train_state(spec.module(), spec.init_params(jax.random.key(0)), recipe)
  indices = train.epoch_indices(jax.random.key(1), len(x), recipe.batch_size,
                                len(x) // recipe.batch_size)
  step = jax.jit(train.train_step, static_argnames="loss")

  def scanned(state):
    state, _ = train.train_steps_jit(state, x, y, indices, jax.random.key(2), loss=recipe.loss)
    return state

  def looped(state):
    for idx in indices:
      state, _ = step(state, (x[idx], y[idx]), loss=recipe.loss)
    return state

  results = {}
  for name, run in (("lax.scan epoch", scanned), ("jitted step loop", looped)):
    times = []
    for r in range(repeats + 1):  # the first run compiles
      state = jax.tree.map(jnp.copy, state0)  # train_steps_jit donates its input
      t0 = time.perf_counter()
      jax.block_until_ready(run(state))
      times.append(time.perf_counter() - t0)
    results[name] = (statistics.median(times[1:]), min(times[1:]), max(times[1:]), times[0])
  return results, len(indices)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="mnist-mlp", choices=("mnist-mlp", "fashion-mlp", "r2rt-mlp"))
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  results, steps = time_epochs(args.model, args.repeats)
  print(f"{args.model}: {steps} steps an epoch, backend {jax.default_backend()}, jax {jax.__version__}")
  print(f"{'method':<18} {'median s':>9} {'min':>7} {'max':>7} {'first (compile) s':>18}")
  for name, (med, lo, hi, first) in results.items():
    print(f"{name:<18} {med:9.3f} {lo:7.3f} {hi:7.3f} {first:18.3f}")
  ratio = results["jitted step loop"][0] / results["lax.scan epoch"][0]
  print(f"scan speed-up over the step loop: {ratio:.2f}x")


if __name__ == "__main__":
  main()
