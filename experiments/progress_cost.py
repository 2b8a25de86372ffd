"""What the progress bar costs the compiled loop: the benchmark's inversion with and without it.

    python experiments/progress_cost.py [--restarts 256] [--steps 500] [--rounds 5]

Compiles the benchmark's workload (mnist-mlp, class logit, SGD, box) twice at R and S, once with
a progress callback every 2% of the steps (`make_inversion(on_steps=...)`: a host callback
through `jax.debug.callback` inside the loop, as `jinvert invert` uses it) and once without,
then times them in alternating rounds and reports the median per-round cost. Like the command
line, it splits the lanes over a CPU device per core (`jinvert.devices`).
"""

import argparse
import statistics

import jax
import jax.numpy as jnp
import optax

from jinvert import devices, engine, models, objectives, parameterizations
from jinvert.bench.workload import LEARNING_RATE
from jinvert.timing import compile_timed, time_calls


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--restarts", type=int, default=256)
  parser.add_argument("--steps", type=int, default=500)
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()
  devices.use_every_core()  # as the command line does, before JAX starts
  spec = models.get_model("mnist-mlp")
  params = spec.init_params(jax.random.key(0))
  targets = jnp.arange(10)
  keys = engine.lane_keys(jax.random.key(0), 10, args.restarts,  # split as `jinvert invert` does
                          engine.lane_sharding(10, args.restarts))
  reports = []
  compiled = {}
  for name, on_steps in (("without", None), ("with progress", reports.append)):
    run = jax.jit(engine.make_inversion(spec.module().apply, objectives.class_logit(),
                                        optax.sgd(LEARNING_RATE), parameterizations.pixels(),
                                        args.steps, (28, 28), record_every=0, on_steps=on_steps))
    compiled[name], _ = compile_timed(run, (params, targets, keys))
    time_calls(compiled[name], (params, targets, keys))  # warm up
  seconds = {name: [] for name in compiled}
  for _ in range(args.rounds):
    for name, call in compiled.items():
      seconds[name].append(time_calls(call, (params, targets, keys))[1][0])
  cost = statistics.median(w / wo for w, wo in zip(seconds["with progress"], seconds["without"]))
  print(f"R={args.restarts}, S={args.steps}, {args.rounds} alternating rounds: without "
        f"{statistics.median(seconds['without']):.3f} s, with a report every "
        f"{max(1, args.steps // 50)} steps {statistics.median(seconds['with progress']):.3f} s "
        f"(median); cost {100 * (cost - 1):+.2f}% ({len(reports) // (args.rounds + 1)} reports "
        f"per call, {len(jax.devices())} devices)")


if __name__ == "__main__":
  main()
